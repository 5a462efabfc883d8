//! Benchmarks of the step hook (run: `cargo bench --bench hook`).
//!
//! 1. Bookkeeping overhead: a training step through `Sparsifier::step` (RigL,
//!    90% sparse ERK, ΔT = 100, update cost included) against the same step with
//!    Burn's own SGD on the dense model, for the LeNet-300-100 MLP and the small CNN
//!    (batch 128, random data): `(sparse step − dense step) / dense step`.
//! 2. One RigL topology update over ResNet-50's 25.5M sparse weights (gradients
//!    given), i.e. reading weights and gradients, ranking, drop/grow, uploading masks.
//!
//! Environment: `SPARSEBURN_DEVICE` (default flex), `BENCH_STEPS` (default 300).

use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Distribution, Int, Tensor};
use sparseburn::prelude::*;
use sparseburn::sparse_models::{Classifier, MlpConfig, ResNetConfig, ResNetDepth, SmallCnnConfig};

fn batch(device: &Device, input: [usize; 3]) -> (Tensor<4>, Tensor<1, Int>) {
    let x = Tensor::<4>::random(
        [128, input[0], input[1], input[2]],
        Distribution::Normal(0.0, 1.0),
        device,
    );
    let y = Tensor::<1>::random([128], Distribution::Uniform(0.0, 10.0), device).int();
    (x, y)
}

fn grads<M: Classifier>(model: &M, x: &Tensor<4>, y: &Tensor<1, Int>) -> GradientsParams {
    let loss = CrossEntropyLossConfig::new()
        .init(&x.device())
        .forward(model.forward(x.clone()), y.clone());
    GradientsParams::from_grads(loss.backward(), model)
}

fn sync(device: &Device) {
    let _ = device.sync();
}

/// Seconds per step: dense (Burn SGD) and sparse (the hook), interleaved in rounds.
fn overhead<M: Classifier + Clone>(model: M, input: [usize; 3], device: &Device, steps: usize) -> (f64, f64) {
    let (x, y) = batch(device, input);
    let mut dense = model.clone();
    let mut optim = SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
        }))
        .init();
    let rigl = RigL::new(RigLConfig::new(UpdateSchedule::new(u64::MAX).with_interval(100)));
    let mut sparse = Sparsifier::new(
        &model,
        SparsityConfig::new().with_sparsity(0.9),
        rigl,
        &OptimizerConfig::sgd(0.9, 0.0),
    )
    .expect("sparsifier");
    let mut model = sparse.init(model).expect("init");
    // warm-up: both paths, including one topology update
    for _ in 0..5 {
        let g = grads(&dense, &x, &y);
        dense = optim.step(0.01, dense, g);
        let g = grads(&model, &x, &y);
        model = sparse.step(model, g, 0.01).expect("step");
    }
    let (mut t_dense, mut t_sparse) = (0.0, 0.0);
    let rounds = steps / 100;
    for _ in 0..rounds.max(1) {
        sync(device);
        let start = Instant::now();
        for _ in 0..100 {
            let g = grads(&dense, &x, &y);
            dense = optim.step(0.01, dense, g);
        }
        sync(device);
        t_dense += start.elapsed().as_secs_f64();
        let start = Instant::now();
        for _ in 0..100 {
            let g = grads(&model, &x, &y);
            model = sparse.step(model, g, 0.01).expect("step");
        }
        sync(device);
        t_sparse += start.elapsed().as_secs_f64();
    }
    let n = (rounds.max(1) * 100) as f64;
    (t_dense / n, t_sparse / n)
}

struct RandomGrads {
    out: GradientsParams,
}

impl ModuleVisitor for RandomGrads {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let g = Tensor::<D>::random(t.shape(), Distribution::Normal(0.0, 1e-3), &t.device().inner());
        self.out.register::<D>(param.id, g);
    }
}

/// Seconds of one topology update over ResNet-50's sparse weights.
fn resnet50_update(device: &Device) -> (usize, f64) {
    let model = ResNetConfig::new(ResNetDepth::R50).init(device);
    let mut config = RigLConfig::new(UpdateSchedule::new(1_000).with_interval(100));
    config.skip_weight_update = true; // the update step runs no optimizer step: pure update cost
    let mut sparse = Sparsifier::new(
        &model,
        SparsityConfig::new().with_sparsity(0.9),
        RigL::new(config),
        &OptimizerConfig::sgd(0.9, 0.0),
    )
    .expect("sparsifier");
    let weights = sparse.report().numel();
    let mut model = sparse.init(model).expect("init");
    let mut times = Vec::new();
    for round in 0..3u64 {
        // step 100 * round is an update step
        while sparse.step_count() < 100 * round {
            let mut g = RandomGrads {
                out: GradientsParams::new(),
            };
            model.visit(&mut g);
            model = sparse.step(model, g.out, 0.0).expect("step");
        }
        let mut g = RandomGrads {
            out: GradientsParams::new(),
        };
        model.visit(&mut g);
        sync(device);
        let start = Instant::now();
        model = sparse.step(model, g.out, 0.0).expect("update");
        sync(device);
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    (weights, times[times.len() / 2])
}

fn main() {
    let backend = BackendKind::from_env().expect("SPARSEBURN_DEVICE");
    let device = backend.device().expect("backend").autodiff();
    let steps: usize = std::env::var("BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    println!(
        "backend: {backend}, threads: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!("| model | dense step (ms) | sparse step (ms) | overhead |");
    println!("|---|---|---|---|");
    let (d, s) = overhead(MlpConfig::new().init(&device), [1, 28, 28], &device, steps);
    println!(
        "| MLP 784-300-100-10 | {:.2} | {:.2} | {:+.1}% |",
        d * 1e3,
        s * 1e3,
        100.0 * (s - d) / d
    );
    let (d, s) = overhead(SmallCnnConfig::new().init(&device), [1, 28, 28], &device, steps);
    println!(
        "| small CNN | {:.2} | {:.2} | {:+.1}% |",
        d * 1e3,
        s * 1e3,
        100.0 * (s - d) / d
    );
    println!();
    let (n, t) = resnet50_update(&device);
    println!("| topology update | weights | seconds |");
    println!("|---|---|---|");
    println!("| RigL, ResNet-50 sparse weights, 90% | {n} | {t:.3} |");
}
