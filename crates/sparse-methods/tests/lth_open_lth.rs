//! Lottery tickets as open_lth's `sparse_global` (issue 13): a level removes every
//! candidate with `|θ| ≤` the `n`-th smallest (0-based), `n = ⌈p·R⌉`, `R` counting
//! the ignored output layer too; the output layer is never a candidate.

use sparse_core::{Distribution, Mask, Plan, Rounds, SparseLayer, SparsityConfig};
use sparse_methods::{Lth, LthConfig, LthCount, OutputLayer};

/// L1 (12 weights), L2 (6), the output L3 (4) with the hand-picked |θ| of the spec.
fn setup() -> (Plan, Vec<Vec<f32>>) {
    let mut out = SparseLayer::linear("out", 2, 2);
    out.roles.last = true;
    let layers = vec![SparseLayer::linear("l1", 4, 3), SparseLayer::linear("l2", 3, 2), out];
    let config = SparsityConfig::new()
        .with_sparsity(0.5)
        .with_distribution(Distribution::Global);
    let weights = vec![
        vec![0.12, 0.55, 0.31, 0.07, 0.95, 0.44, 0.26, 0.61, 0.03, 0.78, 0.19, 0.50],
        vec![0.35, 0.09, 0.67, 0.15, 0.84, 0.22],
        vec![0.01, 0.02, 0.04, 0.05],
    ];
    (Plan::new(layers, config).unwrap(), weights)
}

/// The values that survive in each layer, sorted.
fn survivors(weights: &[Vec<f32>], masks: &[Mask]) -> Vec<Vec<f32>> {
    weights
        .iter()
        .zip(masks)
        .map(|(w, m)| {
            let mut v: Vec<f32> = m.iter_ones().map(|i| w[i]).collect();
            v.sort_by(f32::total_cmp);
            v
        })
        .collect()
}

/// open_lth's rule computed here: the sorted candidate values, `n = ⌈p·R⌉`, remove ≤ sorted[n].
fn reference_level(alive: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let remaining: usize = alive.iter().map(Vec::len).sum();
    let n = (0.2 * remaining as f64).ceil() as usize;
    let mut candidates: Vec<f32> = alive[..2].concat();
    candidates.sort_by(f32::total_cmp);
    let t = candidates[n];
    vec![
        alive[0].iter().copied().filter(|&v| v > t).collect(),
        alive[1].iter().copied().filter(|&v| v > t).collect(),
        alive[2].clone(),
    ]
}

#[test]
fn two_levels_remove_ceil_p_r_plus_one_and_spare_the_output_layer() {
    let (plan, weights) = setup();
    let config = LthConfig::new().with_output_layer(OutputLayer::Ignore);
    assert_eq!(config.prune_count, LthCount::OpenLth);
    let lth = Lth::new(&config).unwrap();
    let ones: Vec<Mask> = weights.iter().map(|w| Mask::ones(w.len())).collect();
    let level1 = lth.prune(1, &plan, &weights, &ones).unwrap();
    let alive0 = survivors(&weights, &ones);
    let want1 = reference_level(&alive0);
    assert_eq!(survivors(&weights, &level1), want1);
    // by hand: R = 22, n = 5, the 6th smallest candidate is 0.19 → 6 removed
    assert_eq!(level1.iter().map(Mask::count_ones).collect::<Vec<_>>(), vec![8, 4, 4]);
    let level2 = lth.prune(2, &plan, &weights, &level1).unwrap();
    assert_eq!(survivors(&weights, &level2), reference_level(&want1));
    // by hand: R = 16, n = 4, threshold 0.44 → 0.22, 0.26, 0.31, 0.35, 0.44 removed
    assert_eq!(
        survivors(&weights, &level2),
        vec![
            vec![0.50, 0.55, 0.61, 0.78, 0.95],
            vec![0.67, 0.84],
            vec![0.01, 0.02, 0.04, 0.05]
        ]
    );
}

#[test]
fn the_target_count_pruning_the_output_layer_is_the_earlier_rule() {
    let (plan, weights) = setup();
    let config = LthConfig::new()
        .with_prune_count(LthCount::Target)
        .with_output_layer(OutputLayer::Prune);
    let lth = Lth::new(&config).unwrap();
    let ones: Vec<Mask> = weights.iter().map(|w| Mask::ones(w.len())).collect();
    let level1 = lth.prune(1, &plan, &weights, &ones).unwrap();
    // keep round(0.8·22) = 18 over all layers: 0.01, 0.02, 0.03, 0.04 go
    assert_eq!(level1.iter().map(Mask::count_ones).sum::<usize>(), 18);
    assert_eq!(survivors(&weights, &level1)[2], vec![0.05]);
}

#[test]
fn rounds_zero_runs_the_levels_the_target_needs() {
    let config = LthConfig::new().with_rounds(0);
    // (1 − 0.2)^L ≤ 1 − s: L = 11 for 90% (0.8^10 = 0.107), 14 for 95% (0.8^13 = 0.055)
    for (s, levels) in [(0.9, 11), (0.95, 14)] {
        let lth = Lth::for_sparsity(&config, s).unwrap();
        assert_eq!(lth.count(), 1 + levels);
        assert!(0.8f64.powi(levels as i32) <= 1.0 - s && 0.8f64.powi(levels as i32 - 1) > 1.0 - s);
    }
    assert_eq!(LthConfig::new().rounds, 3);
    assert!(Lth::new(&config).is_err());
}
