//! AutoSparse (learnable thresholds, gradient annealing) and sparsity regularization.

#![allow(clippy::needless_range_loop)] // index loops mirror the formulas

use crate::common;

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use common::{Data, Mlp, accuracy, device, host};
use sparse_core::reparam::MethodReparam;
use sparse_core::{OptimizerConfig, Sparsifier, SparsityConfig, discover};
use sparse_methods::autosparse::soft_threshold;
use sparse_methods::regularization::{penalty_gradient, penalty_value};
use sparse_methods::{AutoSparse, AutoSparseConfig, Penalty, RegularizationConfig, StaticRandom};

#[test]
fn annealed_gradient_of_sub_threshold_weights_is_alpha_times_theirs() {
    let device = device();
    let w = vec![0.5f32, -0.004, 0.003, -0.8, 0.0001, 0.2];
    let tau = 0.01f32;
    let alpha = 0.37f32;
    let c = Tensor::<1>::from_data(TensorData::new(vec![1.5f32, -2.0, 0.7, 3.0, -1.1, 0.4], [6]), &device);
    // L = Σ c ⊙ Ŵ, so ∂L/∂Ŵ = c; ∂L/∂W = c where |W| > τ and α·c below
    let weight = Param::from_tensor(Tensor::<1>::from_data(TensorData::new(w.clone(), [6]), &device));
    let taus = Tensor::<1>::from_data(TensorData::new(vec![tau; 6], [6]), &device);
    let effective = soft_threshold(weight.val(), taus, alpha);
    let fwd = host(effective.clone());
    let grads = (effective * c.clone()).sum().backward();
    let g = host(weight.val().grad(&grads).unwrap());
    let c = host(c);
    for i in 0..6 {
        if w[i].abs() > tau {
            assert_eq!(g[i], c[i], "weight {i}");
            assert_eq!(fwd[i], w[i].signum() * (w[i].abs() - tau));
        } else {
            assert_eq!(g[i], alpha * c[i], "weight {i}");
            assert_eq!(fwd[i], 0.0);
        }
    }
}

#[test]
fn alpha_follows_its_schedule() {
    let a = AutoSparse::new(AutoSparseConfig::new(), 1000).unwrap();
    for step in [0u64, 100, 250, 500, 750, 899] {
        let p = step as f64 / 1000.0;
        let cosine = (1.0 + (std::f64::consts::PI * p).cos()) / 2.0;
        let sigmoid = 1.0 / (1.0 + (-(-6.0 + 12.0 * p)).exp());
        let expected = 0.5 * cosine.max(1.0 - sigmoid);
        assert!((a.alpha_at(step) - expected).abs() < 1e-12, "step {step}");
    }
    assert_eq!(a.alpha_at(900), 0.0);
    assert_eq!(a.alpha_at(999), 0.0);
    assert!((a.alpha_at(0) - 0.5).abs() < 1e-12);
}

fn thresholds(model: &Mlp) -> Vec<f32> {
    model
        .layers
        .iter()
        .map(|l| host(l.weight.reparameterization::<MethodReparam>().unwrap().extra[0].val())[0])
        .collect()
}

fn autosparse_run(freeze: bool, steps: u64) -> (Vec<f64>, f64, Sparsifier, Vec<f32>) {
    let data = Data::new(256, 20, 4, 0.6, 1);
    let device = device();
    let plain = Mlp::new(&[20, 64, 4], true, &device);
    let config = SparsityConfig::new().with_sparsity(0.8);
    let auto = AutoSparse::new(
        AutoSparseConfig::new()
            .with_freeze_at_target(freeze)
            .with_report_interval(20)
            .with_threshold_init(-4.0),
        steps,
    )
    .unwrap();
    let mut sparse = Sparsifier::new(&plain, config, auto, &OptimizerConfig::sgd(0.9, 5e-3)).unwrap();
    // `init` attaches the learnable thresholds itself
    let mut model = sparse.init(plain).unwrap();
    let mut history = Vec::new();
    for t in 0..steps {
        let grads = model.grads(&data);
        model = sparse.step(model, grads, 0.1).unwrap();
        if t % 20 == 0 {
            history.push(sparse.report().sparsity());
        }
    }
    history.push(sparse.report().sparsity());
    (history, accuracy(&model, &data), sparse, thresholds(&model))
}

#[test]
fn sparsity_grows_as_thresholds_are_learned() {
    let (history, acc, _, s) = autosparse_run(false, 400);
    let (first, last) = (history[0], *history.last().unwrap());
    let early = history[..history.len() / 4].iter().cloned().fold(1.0, f64::min);
    assert!(last > early + 0.1, "sparsity {first} -> {last}: {history:?}");
    assert!(s.iter().all(|s| *s != -4.0), "the thresholds were learned: {s:?}");
    assert!(acc > 0.6, "accuracy {acc}");
}

#[test]
fn freezing_reaches_the_target_with_hard_masks() {
    let (_, acc, sparse, _) = autosparse_run(true, 200);
    assert!(
        (sparse.report().sparsity() - 0.8).abs() < 0.01,
        "{}",
        sparse.report().sparsity()
    );
    assert!(sparse.method().reparameterization().unwrap().hard_masks());
    assert!(acc > 0.6, "accuracy {acc}");
}

#[test]
fn penalties_and_gradients_on_a_fixed_tensor() {
    // Linear [in=3, out=2]: neuron 0 = (w0, w2, w4), neuron 1 = (w1, w3, w5)
    let layer = discover(&Mlp::new(&[3, 2], false, &device()), &Default::default())
        .unwrap()
        .remove(0);
    let w = [3.0f32, 0.0, -4.0, 1.0, 0.0, -2.0];
    assert_eq!(penalty_value(Penalty::L1, &layer, &w), 10.0);
    assert_eq!(
        penalty_gradient(Penalty::L1, &layer, &w),
        vec![1.0, 0.0, -1.0, 1.0, 0.0, -1.0]
    );
    let n1 = (1.0f64 + 4.0).sqrt();
    assert!((penalty_value(Penalty::GroupLasso, &layer, &w) - (5.0 + n1)).abs() < 1e-12);
    let g = penalty_gradient(Penalty::GroupLasso, &layer, &w);
    let expected = [0.6, 0.0, -0.8, 1.0 / n1 as f32, 0.0, -2.0 / n1 as f32];
    for (a, b) in g.iter().zip(expected) {
        assert!((a - b).abs() < 1e-6);
    }
}

#[test]
fn the_hook_adds_the_penalty_gradient() {
    let device = device();
    let data = Data::new(32, 6, 3, 0.5, 1);
    for penalty in [Penalty::L1, Penalty::GroupLasso] {
        let model = Mlp::new(&[6, 5, 3], false, &device);
        let term = RegularizationConfig::new(penalty).with_strength(0.1).term().unwrap();
        let config = SparsityConfig::new().with_sparsity(0.0);
        let mut sparse = Sparsifier::new(&model, config, StaticRandom, &OptimizerConfig::sgd(0.0, 0.0))
            .unwrap()
            .with_grad_term(term);
        let model = sparse.init(model).unwrap();
        let layers = sparse.layers().to_vec();
        let before: Vec<Vec<f32>> = (0..2).map(|l| model.weight(l)).collect();
        let grads: GradientsParams = model.grads(&data);
        let g: Vec<Vec<f32>> = (0..2)
            .map(|l| host(grads.get::<2>(model.weight_id(l)).unwrap()))
            .collect();
        let model = sparse.step(model, grads, 0.5).unwrap();
        for l in 0..2 {
            let r = penalty_gradient(penalty, &layers[l], &before[l]);
            let after = model.weight(l);
            for i in 0..after.len() {
                let expected = before[l][i] - 0.5 * (g[l][i] + 0.1 * r[i]);
                assert!((after[i] - expected).abs() < 1e-6, "{penalty:?} layer {l} weight {i}");
            }
        }
    }
}

#[test]
fn group_lasso_zeroes_whole_neurons() {
    let device = device();
    let data = Data::new(128, 10, 4, 0.5, 1);
    let mut model = Mlp::new(&[10, 32, 4], true, &device);
    let term = RegularizationConfig::new(Penalty::GroupLasso)
        .with_strength(0.02)
        .term()
        .unwrap();
    let config = SparsityConfig::new()
        .with_sparsity(0.0)
        .with_filter(sparse_core::LayerFilter::new().with_include(vec!["layers.0.weight".into()]));
    let mut sparse = Sparsifier::new(&model, config, StaticRandom, &OptimizerConfig::sgd(0.0, 0.0))
        .unwrap()
        .with_grad_term(term);
    model = sparse.init(model).unwrap();
    let layer = sparse.layers()[0].clone();
    let norms = |w: &[f32]| -> Vec<f32> {
        (0..layer.neurons())
            .map(|o| layer.neuron_indices(o).map(|f| w[f] * w[f]).sum::<f32>().sqrt())
            .collect()
    };
    let start = norms(&model.weight(0));
    for _ in 0..600 {
        let grads = model.grads(&data);
        model = sparse.step(model, grads, 0.1).unwrap();
    }
    let end = norms(&model.weight(0));
    let dead = end.iter().zip(&start).filter(|(e, s)| **e < 0.05 * **s).count();
    assert!(dead >= 8, "neurons near zero: {dead} of 32 ({end:?})");
    assert!(accuracy(&model, &data) > 0.6);
    let _ = Module::num_params(&model);
}

#[test]
fn the_sparsifier_attaches_the_thresholds_and_refuses_a_model_without_them() {
    let device = device();
    let plain = Mlp::new(&[6, 5, 3], false, &device);
    let auto = || AutoSparse::new(AutoSparseConfig::new(), 10).unwrap();
    let config = || SparsityConfig::new().with_sparsity(0.5);
    let mut sparse = Sparsifier::new(&plain, config(), auto(), &OptimizerConfig::sgd(0.0, 0.0)).unwrap();
    let model = sparse.init(plain.clone()).unwrap();
    // one learnable threshold per sparse weight, at its initial logit
    assert_eq!(thresholds(&model), vec![-5.0, -5.0]);
    // attaching again changes nothing
    let again = sparse.attach(model.clone()).unwrap();
    assert_eq!(again.num_params(), model.num_params());
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("state.safetensors");
    sparse.save(&path).unwrap();
    // a fresh sparsifier refuses to restore onto the plain model
    let mut other = Sparsifier::new(&plain, config(), auto(), &OptimizerConfig::sgd(0.0, 0.0)).unwrap();
    let err = other.load(&path, &plain).unwrap_err();
    assert!(err.to_string().contains("attach"), "{err}");
    let attached = other.attach(plain).unwrap();
    other.load(&path, &attached).unwrap();
}
