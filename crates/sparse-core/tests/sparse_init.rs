//! Sparse-aware initialisation (issue 13): per-neuron standard deviation `2/k_o`
//! (condensed-sparsity's `grad_flow_init`) or `√(2/k_o)` (Evci et al. 2022), with
//! `k_o` the neuron's active fan-in; inactive entries 0; dense layers untouched.

use sparse_core::{Mask, SparseInit, SparseLayer};

/// Sample mean and standard deviation.
fn mean_std(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// A `4000 → 4` layer whose neurons have 2000, 1000, 400 and 0 active inputs,
/// and a second layer at density 1; returns both after `init`.
fn redraw(init: SparseInit) -> (SparseLayer, Mask, Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let layer = SparseLayer::linear("w", 4000, 4);
    let dense = SparseLayer::linear("d", 4, 3);
    let mut mask = Mask::zeros(layer.numel());
    for (o, k) in [2000, 1000, 400, 0].into_iter().enumerate() {
        for j in 0..k {
            mask.set(layer.flat(o, (j * 7) % 4000), true);
        }
    }
    let masks = vec![mask.clone(), Mask::ones(dense.numel())];
    let before = vec![vec![0.25f32; layer.numel()], (0..12).map(|i| i as f32 * 0.1).collect()];
    let mut after = before.clone();
    init.apply(&[layer.clone(), dense], &masks, &mut after, 3);
    (layer, mask, before, after)
}

fn check(init: SparseInit, std_of: impl Fn(f64) -> f64) {
    let (layer, mask, before, after) = redraw(init);
    for (o, k) in [2000usize, 1000, 400].into_iter().enumerate() {
        let active: Vec<f64> = layer
            .neuron_indices(o)
            .filter(|&f| mask.get(f))
            .map(|f| after[0][f] as f64)
            .collect();
        assert_eq!(active.len(), k);
        let (mean, std) = mean_std(&active);
        let want = std_of(k as f64);
        // the standard error of a sample std is ≈ 1/√(2k) ≤ 3.6%: 15% is over 4 SE
        assert!((std / want - 1.0).abs() < 0.15, "neuron {o}: std {std}, want {want}");
        assert!(mean.abs() < 4.0 * want / (k as f64).sqrt(), "neuron {o}: mean {mean}");
    }
    for f in (0..layer.numel()).filter(|&f| !mask.get(f)) {
        assert_eq!(after[0][f], 0.0, "inactive entry {f}");
    }
    assert!(layer.neuron_indices(3).all(|f| after[0][f] == 0.0));
    assert_eq!(after[1], before[1], "a dense layer is left alone");
}

#[test]
fn grad_flow_draws_std_two_over_the_sparse_fan_in() {
    check(SparseInit::GradFlow, |k| 2.0 / k);
}

#[test]
fn sparse_kaiming_draws_std_root_two_over_the_sparse_fan_in() {
    check(SparseInit::SparseKaiming, |k| (2.0 / k).sqrt());
}

#[test]
fn none_keeps_every_weight() {
    let (_, _, before, after) = redraw(SparseInit::None);
    assert_eq!(after, before);
}
