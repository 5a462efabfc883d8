//! MEST's initial mask and mutation interval as its reference (issue 13): the
//! fresh weights pruned by magnitude (`np.percentile(|w|, 100·s)`, keep above), a
//! mutation every 5 epochs from epoch 0.

use crate::common;

use common::{Mlp, device};
use sparse_core::{Distribution, Mask, OptimizerConfig, Sparsifier, SparsityConfig};
use sparse_methods::mest::MestInitMask;
use sparse_methods::{Mest, MestConfig, MethodSpec};

/// The reference's percentile rule: keep `|w| >` the linearly interpolated
/// `100·s`-th percentile of `|w|`.
fn percentile_keep(w: &[f32], s: f64) -> Vec<usize> {
    let mut a: Vec<f64> = w.iter().map(|x| x.abs() as f64).collect();
    a.sort_by(f64::total_cmp);
    let pos = s * (a.len() - 1) as f64;
    let (lo, frac) = (pos.floor() as usize, pos - pos.floor());
    let t = a[lo] + frac * (a[(lo + 1).min(a.len() - 1)] - a[lo]);
    (0..w.len()).filter(|&i| w[i].abs() as f64 > t).collect()
}

#[test]
fn the_initial_mask_keeps_the_largest_initial_weights() {
    let values = vec![0.1, -0.5, 0.3, -0.2, 0.05, 0.4, -0.6, 0.25];
    let want = percentile_keep(&values, 0.5);
    assert_eq!(want, vec![1, 2, 5, 6]);
    let model = Mlp::new(&[8, 1], false, &device()).with_weight(0, values);
    let config = SparsityConfig::new()
        .with_sparsity(0.5)
        .with_distribution(Distribution::Uniform {
            dense_first_layer: false,
        });
    let masks = |init_mask: MestInitMask| -> Mask {
        let mest = Mest::new(&MestConfig::new().with_init_mask(init_mask), 1000).unwrap();
        let mut sparse = Sparsifier::new(&model, config.clone(), mest, &OptimizerConfig::sgd(0.0, 0.0)).unwrap();
        sparse.init(model.clone()).unwrap();
        sparse.masks()[0].clone()
    };
    assert_eq!(masks(MestInitMask::Magnitude).iter_ones().collect::<Vec<_>>(), want);
    assert_eq!(MestConfig::new().init_mask, MestInitMask::Magnitude);
    assert_eq!(masks(MestInitMask::Random).count_ones(), 4);
}

#[test]
fn mutations_run_every_five_epochs_from_step_zero() {
    let config = MestConfig::new();
    assert_eq!(config.delta_epochs, 5.0);
    assert_eq!(config.resolved(469).unwrap().delta_t, 5 * 469);
    let mest = config.build(&sparse_methods::BuildContext {
        steps_per_epoch: 469,
        total_steps: 469 * 100,
        ..sparse_methods::BuildContext::new(469 * 100)
    });
    let mest = mest.unwrap();
    let updates: Vec<u64> = (0..3 * 2345 + 1).filter(|&t| mest.needs(t).update).collect();
    assert_eq!(updates, vec![0, 2345, 4690, 7035]);
    // delta_epochs = 0 keeps delta_t steps
    assert_eq!(config.with_delta_epochs(0.0).resolved(469).unwrap().delta_t, 100);
}
