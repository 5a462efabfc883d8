//! SRigL (constant fan-in, ablation), SR-STE (N:M in the forward pass) and MEST.

#![allow(clippy::needless_range_loop)] // index loops mirror the formulas

use crate::common;

use common::{Data, Mlp, device, host};
use sparse_core::{
    Distribution, Mask, OptimizerConfig, Pattern, SparseError, SparseLayer, Sparsifier, SparsityConfig, UpdateSchedule,
    discover,
};
use sparse_methods::srigl::{AblationRules, update_layer};
use sparse_methods::{Mest, MestConfig, SRigL, SRigLConfig, SrSte, SrSteConfig};

fn linear(i: usize, o: usize) -> SparseLayer {
    SparseLayer::linear("fc.weight", i, o)
}

fn neuron_counts(layer: &SparseLayer, mask: &Mask) -> Vec<usize> {
    (0..layer.neurons())
        .map(|o| layer.neuron_indices(o).filter(|&f| mask.get(f)).count())
        .collect()
}

#[test]
fn srigl_ablates_a_neuron_without_salient_weights_and_keeps_k_elsewhere() {
    // 6 neurons, fan-in 8, budget 24 (k = 4); neuron 5 has tiny weights and gradients
    let layer = linear(8, 6);
    let mut rng = sparse_core::Rng::new(3);
    let mut mask = Mask::zeros(48);
    let mut w = vec![0.0f32; 48];
    let mut g = [0.0f32; 48];
    for o in 0..6 {
        for (j, f) in layer.neuron_indices(o).enumerate() {
            let scale = if o == 5 { 1e-4 } else { 1.0 };
            if j < 4 {
                mask.set(f, true);
                w[f] = scale * (0.5 + rng.next_f32());
            }
            g[f] = scale * (rng.next_f32() - 0.5);
        }
    }
    let grow: Vec<f32> = g.iter().map(|x| x.abs()).collect();
    let rules = AblationRules::of(&SRigLConfig::new());
    let out = update_layer(&layer, &mask, &w, &grow, 0.3, 24, &rules).unwrap().mask;
    let counts = neuron_counts(&layer, &out);
    assert_eq!(counts[5], 0, "neuron 5 ablated: {counts:?}");
    assert!(counts[..5].iter().all(|&c| c == 4), "{counts:?}");
    // without ablation (the last layer) every neuron keeps k
    let no_ablation = AblationRules {
        ablation: false,
        ..rules
    };
    let out = update_layer(&layer, &mask, &w, &grow, 0.3, 24, &no_ablation)
        .unwrap()
        .mask;
    assert!(neuron_counts(&layer, &out).iter().all(|&c| c == 4));
}

#[test]
fn srigl_through_the_hook_keeps_a_constant_fan_in() {
    let data = Data::new(64, 16, 4, 0.5, 1);
    let device = device();
    let mut model = Mlp::new(&[16, 24, 4], false, &device);
    let config = SparsityConfig::new()
        .with_sparsity(0.75)
        .with_pattern(Pattern::ConstantFanIn)
        .with_distribution(Distribution::Uniform {
            dense_first_layer: false,
        });
    let srigl = SRigL::with_schedule(
        &SRigLConfig::new().with_gamma_sal(0.9),
        UpdateSchedule::new(40).with_interval(4),
    )
    .unwrap();
    let mut sparse = Sparsifier::new(&model, config, srigl, &OptimizerConfig::sgd(0.9, 0.0)).unwrap();
    model = sparse.init(model).unwrap();
    let layers = sparse.layers().to_vec();
    let targets = sparse.plan().counts(0.75).unwrap();
    let mut ablated = 0;
    for t in 0..40 {
        let grads = model.grads(&data);
        model = sparse.step(model, grads, 0.1).unwrap();
        for (l, layer) in layers.iter().enumerate() {
            let counts = neuron_counts(layer, &sparse.masks()[l]);
            // k = ⌊d·N / active neurons⌋ (condensed-sparsity `get_fan_in_after_ablation`)
            let alive = counts.iter().filter(|&&c| c > 0).count();
            let k = targets[l] / alive;
            assert!(
                counts.iter().all(|&c| c == 0 || c == k),
                "layer {l} step {t}: want fan-in {k}, got {counts:?}"
            );
            ablated = ablated.max(layer.neurons() - alive);
            let w = model.weight(l);
            for o in (0..layer.neurons()).filter(|&o| counts[o] == 0) {
                assert!(
                    layer.neuron_indices(o).all(|f| w[f] == 0.0),
                    "ablated neuron {o} has weights"
                );
            }
            if l == layers.len() - 1 {
                assert!(
                    counts.iter().all(|&c| c == k),
                    "last layer ablated at step {t}: {counts:?}"
                );
            }
        }
    }
    assert!(ablated > 0, "no neuron was ablated (γ_sal = 0.9 should ablate some)");
}

#[test]
fn srigl_needs_constant_fan_in_and_a_nonzero_fan_in() {
    let model = Mlp::new(&[10, 20], false, &device());
    let srigl = || SRigL::with_schedule(&SRigLConfig::new(), UpdateSchedule::new(10)).unwrap();
    let mut s = Sparsifier::new(&model, SparsityConfig::new(), srigl(), &OptimizerConfig::sgd(0.0, 0.0)).unwrap();
    assert!(
        s.init(model.clone())
            .unwrap_err()
            .to_string()
            .contains("constant fan-in")
    );
    let config = SparsityConfig::new()
        .with_sparsity(0.97)
        .with_pattern(Pattern::ConstantFanIn)
        .with_distribution(Distribution::Uniform {
            dense_first_layer: false,
        });
    let err = Sparsifier::new(&model, config, srigl(), &OptimizerConfig::sgd(0.0, 0.0)).unwrap_err();
    assert!(matches!(err, SparseError::RoundsToZero { .. }));
    assert!(err.to_string().contains("layers.0.weight"), "{err}");
}

#[test]
fn srste_forward_weights_are_n_of_m_and_backward_adds_the_refined_term() {
    let device = device();
    let data = Data::new(32, 16, 4, 0.5, 1);
    let plain = Mlp::new(&[16, 8, 4], false, &device);
    let srste = SrSte::new(SrSteConfig::new().with_lambda(0.05));
    let config = SparsityConfig::new()
        .with_sparsity(0.5)
        .with_pattern(Pattern::NM { n: 2, m: 4 });
    let layers = discover(&plain, &config.filter).unwrap();
    // the Sparsifier attaches SR-STE's forward rule to the model in `init` (its masks
    // only report, so `init` leaves the weights as they are)
    let mut sparse = Sparsifier::new(&plain, config, srste, &OptimizerConfig::sgd(0.0, 0.0)).unwrap();
    let model = sparse.init(plain.clone()).unwrap();

    // forward weight: the 2 largest |w| of every 4 consecutive fan-in weights
    for (l, layer) in layers.iter().enumerate() {
        let base = host(model.layers[l].weight.base());
        let fwd = host(model.layers[l].weight.val());
        for o in 0..layer.neurons() {
            let idx: Vec<usize> = layer.neuron_indices(o).collect();
            for group in idx.chunks(4) {
                let nonzero = group.iter().filter(|&&f| fwd[f] != 0.0).count();
                assert_eq!(nonzero, 2, "layer {l} neuron {o}");
                let mut by_mag = group.to_vec();
                by_mag.sort_by(|&a, &b| base[b].abs().total_cmp(&base[a].abs()));
                for &f in &by_mag[..2] {
                    assert_eq!(fwd[f], base[f]);
                }
            }
        }
    }

    // gradient: straight-through (equal to the gradient w.r.t. the masked weight) ...
    let masked: Vec<Vec<f32>> = (0..2).map(|l| host(model.layers[l].weight.val())).collect();
    let mut twin = plain.clone();
    for (l, m) in masked.iter().enumerate() {
        twin = twin.with_weight(l, m.clone());
    }
    let g_ste = model.grads(&data);
    let g_twin = twin.grads(&data);
    for l in 0..2 {
        let a = host(g_ste.get::<2>(model.weight_id(l)).unwrap());
        let b = host(g_twin.get::<2>(twin.weight_id(l)).unwrap());
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-6 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }
    // ... plus λ(1 − M)⊙W, applied by the hook: one plain SGD step checks it
    let before: Vec<Vec<f32>> = (0..2).map(|l| host(model.layers[l].weight.base())).collect();
    let grads = model.grads(&data);
    let g: Vec<Vec<f32>> = (0..2)
        .map(|l| host(grads.get::<2>(model.weight_id(l)).unwrap()))
        .collect();
    let model = sparse.step(model, grads, 0.5).unwrap();
    for l in 0..2 {
        let after = host(model.layers[l].weight.base());
        for i in 0..after.len() {
            let pruned = masked[l][i] == 0.0;
            let term = if pruned { 0.05 * before[l][i] } else { 0.0 };
            let expected = before[l][i] - 0.5 * (g[l][i] + term);
            assert!(
                (after[i] - expected).abs() <= 1e-6,
                "layer {l} weight {i}: {} vs {expected}",
                after[i]
            );
        }
    }
}

#[test]
fn mest_mutations_hit_the_bounds_and_end_at_the_target() {
    let data = Data::new(64, 20, 4, 0.5, 1);
    let device = device();
    for soft in [false, true] {
        let mut model = Mlp::new(&[20, 30, 4], false, &device);
        let mest = Mest::with_schedule(
            &MestConfig::new().with_mutation(0.1).with_soft_bound(soft),
            UpdateSchedule::new(20).with_begin(4).with_interval(4),
            // the ratio reaches 0 only at the end of the updates (as with the CLI defaults)
            vec![8, 20],
        )
        .unwrap();
        let config = SparsityConfig::new()
            .with_sparsity(0.8)
            .with_distribution(Distribution::Uniform {
                dense_first_layer: false,
            });
        let mut sparse = Sparsifier::new(&model, config, mest, &OptimizerConfig::sgd(0.9, 0.0)).unwrap();
        model = sparse.init(model).unwrap();
        let total = 720.0;
        for t in 0..24u64 {
            let before = sparse.masks().to_vec();
            let grads = model.grads(&data);
            model = sparse.step(model, grads, 0.05).unwrap();
            let density = sparse.report().density();
            let r = if t < 8 {
                0.1
            } else if t < 20 {
                0.05
            } else {
                0.0
            };
            if [4, 8, 12, 16, 20].contains(&t) {
                let bound = if soft { 0.2 + r } else { 0.2 };
                assert!(
                    (density - bound).abs() <= 2.0 / total,
                    "soft={soft} step {t}: {density} vs {bound}"
                );
                if r > 0.0 && !soft {
                    assert_ne!(before, sparse.masks(), "mutation at step {t} changed nothing");
                }
            }
        }
        assert!((sparse.report().density() - 0.2).abs() <= 2.0 / total, "final density");
    }
}
