//! RigL's drop-score noise as rigl's TF1 code (`generic_mask_update(...,
//! noise_std=1e-5)`): `N(0, 1e-5²)` on the drop scores `|θ|` only, none on the
//! grow scores (issue 13).

use sparse_core::method::{Method, StepContext};
use sparse_core::{Distribution, DropSchedule, Mask, Pattern, Plan, SparseLayer, SparsityConfig, UpdateSchedule};
use sparse_methods::{RigL, RigLConfig};

/// The mask after one update of a `4 × 1` layer with `{0, 1}` active and one
/// weight dropped, for run seed `seed`.
fn update(config: RigLConfig, seed: u64, w: [f32; 4], g: [f32; 4]) -> Vec<usize> {
    let config = config
        .with_drop_fraction(0.5) // ⌊0.5·2⌋ = 1
        .with_drop_schedule(DropSchedule::Constant);
    let mut rigl = RigL::with_schedule(&config, UpdateSchedule::new(100).with_interval(10)).unwrap();
    let sparsity = SparsityConfig::new()
        .with_sparsity(0.5)
        .with_pattern(Pattern::Unstructured)
        .with_distribution(Distribution::Uniform {
            dense_first_layer: false,
        });
    let plan = Plan::new(vec![SparseLayer::linear("w", 4, 1)], sparsity).unwrap();
    let mut masks = vec![Mask::from_indices(4, [0, 1])];
    let mut weights = vec![w.to_vec()];
    let grads = vec![g.to_vec()];
    let mut ctx = StepContext::new(0, &plan, seed, &mut masks)
        .with_weights(&mut weights)
        .with_grads(&grads);
    rigl.on_step(&mut ctx).unwrap();
    masks[0].iter_ones().collect()
}

#[test]
fn the_default_noise_is_on_the_drop_scores_only() {
    assert_eq!(RigLConfig::new().drop_noise, 1e-5);
    assert_eq!(RigLConfig::new().grow_noise, 0.0);
    // inactive 2 and 3 tie exactly on the grow score: without grow noise the
    // lower index grows for every seed (index 1, the smaller weight, is dropped)
    let (w, g) = ([0.5, 0.3, 0.0, 0.0], [0.0, 0.1, 0.7, 0.7]);
    for seed in 0..64 {
        assert_eq!(update(RigLConfig::new(), seed, w, g), vec![0, 2], "seed {seed}");
    }
    // the extra variant: noise on the grow scores breaks that tie at random
    let noisy = || RigLConfig::new().with_grow_noise(1e-5);
    assert!((0..64).any(|seed| update(noisy(), seed, w, g) == vec![0, 3]));
}

#[test]
fn the_drop_noise_breaks_exact_ties_but_not_gaps_of_a_hundred_sigma() {
    let g = [0.0, 0.0, 0.7, 0.0];
    let outcomes: Vec<Vec<usize>> = (0..64)
        .map(|seed| update(RigLConfig::new(), seed, [0.3, 0.3, 0.0, 0.0], g))
        .collect();
    assert!(
        outcomes.contains(&vec![0, 2]) && outcomes.contains(&vec![1, 2]),
        "{outcomes:?}"
    );
    // 0.3 vs 0.301: a gap of 100σ, the larger weight stays for every seed
    for seed in 0..64 {
        assert_eq!(update(RigLConfig::new(), seed, [0.3, 0.301, 0.0, 0.0], g), vec![1, 2]);
    }
}
