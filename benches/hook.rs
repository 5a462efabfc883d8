//! Benchmarks of the step hook (run: `cargo bench --bench hook`).
//!
//! 1. Bookkeeping overhead: a training step through `Sparsifier::step` (RigL,
//!    90% sparse ERK, ΔT = 100, update cost included) against the same step with
//!    Burn's own SGD on the dense model, for the LeNet-300-100 MLP and the small CNN
//!    (batch 128, random data): `(sparse step − dense step) / dense step`.
//! 2. One RigL topology update over ResNet-50's 25.5M sparse weights (gradients
//!    given), i.e. reading weights and gradients, ranking, drop/grow, uploading masks.
//!
//! Environment: `SPARSEBURN_DEVICE` (default flex), `BENCH_ROUNDS` (default 60
//! rounds of 100 + 100 steps for the MLP, a tenth of that for the CNN).

use std::time::Instant;

// the allocator of the `sparseburn` binary, so the numbers match the CLI
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// Seconds that `f` takes, the device synchronised before and after.
fn timed(device: &Device, f: impl FnOnce()) -> f64 {
    sync(device);
    let start = Instant::now();
    f();
    sync(device);
    start.elapsed().as_secs_f64()
}

/// Per-step seconds of the dense (Burn SGD) and sparse (the hook) steps, and the
/// median over rounds of `sparse/dense − 1`. Each round is 100 dense steps and
/// 100 sparse steps (one RigL update), in alternating order, so both see the
/// same machine state.
fn overhead<M: Classifier + Clone>(
    model: M,
    input: [usize; 3],
    device: &Device,
    rounds: usize,
    method: Box<dyn sparseburn::sparse_core::Method>,
) -> (f64, f64, [f64; 3]) {
    let (x, y) = batch(device, input);
    let mut dense = model.clone();
    let mut optim = SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
        }))
        .init();
    let mut sparse = Sparsifier::new(
        &model,
        SparsityConfig::new().with_sparsity(0.9),
        method,
        &OptimizerConfig::sgd(0.9, 0.0),
    )
    .expect("sparsifier");
    let mut model = sparse.init(model).expect("init");
    for _ in 0..5 {
        let g = grads(&dense, &x, &y);
        dense = optim.step(0.01, dense, g);
        let g = grads(&model, &x, &y);
        model = sparse.step(model, g, 0.01).expect("step");
    }
    // in `Option`s so the closures below can move the models through each step
    let (mut dense, mut model) = (Some(dense), Some(model));
    let (mut t_dense, mut t_sparse, mut ratios) = (0.0, 0.0, Vec::new());
    for round in 0..rounds.max(1) {
        let mut dense_steps = || {
            timed(device, || {
                for _ in 0..100 {
                    let m = dense.take().expect("model");
                    let g = grads(&m, &x, &y);
                    dense = Some(optim.step(0.01, m, g));
                }
            })
        };
        let mut sparse_steps = || {
            timed(device, || {
                for _ in 0..100 {
                    let m = model.take().expect("model");
                    let g = grads(&m, &x, &y);
                    model = Some(sparse.step(m, g, 0.01).expect("step"));
                }
            })
        };
        // alternate which runs first, so neither always inherits the other's machine state
        let (d, s) = if round % 2 == 0 {
            let d = dense_steps();
            (d, sparse_steps())
        } else {
            let s = sparse_steps();
            (dense_steps(), s)
        };
        t_dense += d;
        t_sparse += s;
        ratios.push(s / d - 1.0);
    }
    ratios.sort_by(f64::total_cmp);
    let n = (rounds.max(1) * 100) as f64;
    let quantile = |q: f64| ratios[((ratios.len() - 1) as f64 * q).round() as usize];
    (
        t_dense / n,
        t_sparse / n,
        [quantile(0.25), quantile(0.5), quantile(0.75)],
    )
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
    // the update step runs no optimizer step: pure update cost
    let config = RigLConfig::new().with_skip_weight_update(true);
    let rigl = RigL::with_schedule(&config, UpdateSchedule::new(1_000).with_interval(100)).expect("rigl");
    let mut sparse = Sparsifier::new(
        &model,
        SparsityConfig::new().with_sparsity(0.9),
        rigl,
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
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let threads = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("backend: {backend}, threads: {threads}\n");
    println!("| model | method | dense step (ms) | sparse step (ms) | overhead: median of rounds (quartiles) |");
    println!("|---|---|---|---|---|");
    let rigl = || -> Box<dyn sparseburn::sparse_core::Method> {
        Box::new(
            RigL::with_schedule(&RigLConfig::new(), UpdateSchedule::new(u64::MAX).with_interval(100)).expect("rigl"),
        )
    };
    let fixed = || -> Box<dyn sparseburn::sparse_core::Method> { Box::new(StaticRandom) };
    let row = |model: &str, name: &str, (d, s, [q1, q2, q3]): (f64, f64, [f64; 3])| {
        println!(
            "| {model} | {name} | {:.3} | {:.3} | {:+.1}% ({:+.1}% … {:+.1}%) |",
            d * 1e3,
            s * 1e3,
            100.0 * q2,
            100.0 * q1,
            100.0 * q3
        );
    };
    for (name, method) in [("RigL, ΔT = 100", rigl()), ("static mask", fixed())] {
        let mlp = MlpConfig::new().init(&device);
        row(
            "MLP 784-300-100-10",
            name,
            overhead(mlp, [1, 28, 28], &device, rounds, method),
        );
    }
    for (name, method) in [("RigL, ΔT = 100", rigl()), ("static mask", fixed())] {
        let cnn = SmallCnnConfig::new().init(&device);
        let cnn_rounds = rounds.div_ceil(10);
        row(
            "small CNN",
            name,
            overhead(cnn, [1, 28, 28], &device, cnn_rounds, method),
        );
    }
    println!();
    let (n, t) = resnet50_update(&device);
    println!("| topology update | weights | seconds |");
    println!("|---|---|---|");
    println!("| RigL, ResNet-50 sparse weights, 90% | {n} | {t:.3} |");
}
