//! With all-dense masks, the mask-aware optimizers equal Burn's own SGD, Adam
//! and AdamW (max |difference| <= 1e-6 over several steps).

use crate::common;

use std::collections::HashMap;

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use common::{Net, device, values};
use sparse_core::method::{InitContext, Method};
use sparse_core::{AdamSettings, Mask, OptimizerConfig, SgdSettings, Sparsifier, SparsityConfig};

const STEPS: u64 = 6;
const LR: f64 = 0.05;

fn all_params(model: &Net) -> Vec<f32> {
    let mut out = Vec::new();
    for l in &model.linears {
        out.extend(values(l.weight.val()));
        out.extend(values(l.bias.as_ref().unwrap().val()));
    }
    for c in &model.convs {
        out.extend(values(c.weight.val()));
    }
    out
}

fn run_burn(model: Net, mut optim: ModuleOptimizer) -> Vec<f32> {
    let mut model = model;
    for t in 0..STEPS {
        let grads = model.grads(t);
        model = optim.step(LR, model, grads);
    }
    all_params(&model)
}

fn run_ours_direct(model: Net, config: &OptimizerConfig) -> Vec<f32> {
    let mut optim = config.init();
    let mut model = model;
    for t in 0..STEPS {
        let grads: GradientsParams = model.grads(t);
        model = optim.step(LR, model, grads, &HashMap::new());
    }
    all_params(&model)
}

/// Dense masks through the whole hook.
#[derive(Debug)]
struct KeepDense;
impl Method for KeepDense {
    fn name(&self) -> &'static str {
        "dense"
    }
    fn init(&mut self, _: &mut InitContext<'_>, _: &mut [Mask]) -> sparse_core::Result<()> {
        Ok(())
    }
}

fn run_ours_hook(model: Net, config: &OptimizerConfig) -> Vec<f32> {
    let mut sparse = Sparsifier::new(&model, SparsityConfig::new().with_sparsity(0.0), KeepDense, config).unwrap();
    let mut model = sparse.init(model).unwrap();
    assert_eq!(sparse.report().density(), 1.0);
    for t in 0..STEPS {
        let grads = model.grads(t);
        model = sparse.step(model, grads, LR).unwrap();
    }
    all_params(&model)
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len());
    let max = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(max <= 1e-6, "{what}: max difference {max}");
    // the run moved the weights, so equality is not trivial
    assert!(a.iter().zip(b).any(|(x, _)| *x != 0.0));
}

fn model() -> Net {
    Net::new(&[(8, 6), (12, 4)], &[(4, 2, 3)], &device())
}

fn check(burn: ModuleOptimizer, ours: OptimizerConfig, what: &str) {
    let m = model();
    let start = all_params(&m);
    let reference = run_burn(m.clone(), burn);
    assert!(
        reference.iter().zip(&start).any(|(a, b)| a != b),
        "{what}: training moved nothing"
    );
    assert_close(&run_ours_direct(m.clone(), &ours), &reference, what);
    assert_close(&run_ours_hook(m, &ours), &reference, &format!("{what} (hook)"));
}

#[test]
fn sgd_with_momentum_dampening_and_weight_decay_matches_burn() {
    let burn = SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum: 0.9,
            dampening: 0.1,
            nesterov: false,
        }))
        .with_weight_decay(Some(WeightDecayConfig { penalty: 1e-2 }))
        .init();
    let ours = OptimizerConfig::Sgd(
        SgdSettings::new()
            .with_momentum(0.9)
            .with_dampening(0.1)
            .with_weight_decay(1e-2),
    );
    check(burn, ours, "sgd");
}

#[test]
fn sgd_nesterov_matches_burn() {
    let burn = SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum: 0.8,
            dampening: 0.0,
            nesterov: true,
        }))
        .init();
    let ours = OptimizerConfig::Sgd(SgdSettings::new().with_momentum(0.8).with_nesterov(true));
    check(burn, ours, "nesterov");
}

#[test]
fn plain_sgd_matches_burn() {
    check(
        SgdConfig::new().init(),
        OptimizerConfig::Sgd(SgdSettings::new()),
        "plain sgd",
    );
}

#[test]
fn adam_with_l2_matches_burn() {
    let burn = AdamConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay(Some(WeightDecayConfig { penalty: 1e-2 }))
        .init();
    let ours = OptimizerConfig::Adam(AdamSettings::new().with_epsilon(1e-8).with_weight_decay(1e-2));
    check(burn, ours, "adam");
}

#[test]
fn adamw_matches_burn() {
    let burn = AdamWConfig::new().with_weight_decay(0.05).init();
    let ours = OptimizerConfig::Adam(
        AdamSettings::new()
            .with_epsilon(1e-5)
            .with_weight_decay(0.05)
            .with_decoupled(true),
    );
    check(burn, ours, "adamw");
}
