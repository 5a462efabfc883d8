//! A full training step of the MLP, the small CNN, ResNet-18 (CIFAR stem) or
//! MobileNetV1 (stride-1 stem, its depthwise convolutions dense on both sides),
//! in sparse execution (the model's compact twin, `compact_step`: what
//! `sparseburn train --execution sparse` runs) against the masked-dense step
//! (the model, `Sparsifier::step`), side by side in one
//! process, alternating which side goes first each round; or the peak memory
//! of one side's training steps.
//!
//! ```text
//! cargo bench -p sparse-models --bench train_step -- [--quick] [--method rigl|set|static]
//!     [--delta-t 100] [--batch 128] [--sparsity 0.9] [--widths 784,4096,4096,10]
//!     [--model mlp|cnn|resnet18|mobilenet] [--crossover 1.0] [--memory dense|sparse|compact]
//! ```
//!
//! Step: forward, cross-entropy, backward, optimizer step (SGD, momentum
//! 0.9), and the method's topology update on its steps. Masks: ERK at the
//! given sparsity (the run's default distribution) over the model's default
//! sparse layers. Inputs: random images of the model's shape (`--widths`'
//! first entry for the MLP, 1×28×28 for the CNN, 3×32×32 for ResNet-18).
//! `--crossover D`: on the sparse side, layers of density above `D` multiply
//! densely, as `--execution auto` does at its crossover (default 1: every
//! layer on the sparse kernels, as `--execution sparse`). The method
//! updates every 5 steps here so that each round of 5 steps per side holds
//! one update step; regular and update steps are timed apart, and the step at
//! `--delta-t` is their amortised mean: `((ΔT − 1)·regular + update) / ΔT`
//! (medians). Quartiles over the rounds.
//!
//! The allocator is the binary's, with its settings (`sparseburn::allocator`):
//! arenas commit on demand, and the sparse side's freed memory goes back to
//! the OS at once (the purge delay is switched before each side's step).
//!
//! `--memory SIDE` builds one side only, returns what the setup freed to the
//! OS (`mi_collect`), resets the process's peak resident memory (`VmHWM`,
//! through `/proc/self/clear_refs`), runs 10 steps (two topology updates) and
//! prints the peak of those steps and the peak of the setup; run it once per
//! side (any `--model`). `compact` is the MLP's sparse side without a dense model at any moment:
//! `CompactMlp::random` and the compact rules of SET and RigL
//! (`compact_rule_step`, as `examples/truly_sparse.rs` trains).

use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use sparse_core::{IntoMethod, Method, OptimizerConfig, Rng, Sparsifier, SparsityConfig, UpdateSchedule};
use sparse_kernels::timing::quartiles;
use sparse_kernels::train::CompactUpdate;
use sparse_kernels::train::{CompactModel, compact_prepare, compact_step};
use sparse_methods::{RigL, RigLConfig, Set, SetConfig, StaticRandom};
use sparse_models::{
    Classifier, CompactMlp, CompactTwin, MlpConfig, MobileNetV1Config, ResNetConfig, ResNetDepth, SmallCnnConfig, Stem,
    compact_rule_step, rigl_rule, set_rule,
};

// The allocator of the `sparseburn` binary with its settings
// (`sparseburn::allocator`), so both sides allocate as a run does: arenas commit
// on demand, and freed memory goes back to the OS at once on the sparse side.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc 3's `mi_option_arena_eager_commit` and `mi_option_purge_delay`,
/// as `src/allocator.rs` (the binary's settings) numbers them; keep the two
/// in step (a bench of this crate cannot depend on the `sparseburn` crate).
const ARENA_EAGER_COMMIT: std::ffi::c_int = 4;
const PURGE_DELAY: std::ffi::c_int = 15;

#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static COMMIT_ON_DEMAND: extern "C" fn() = commit_on_demand;

extern "C" fn commit_on_demand() {
    // SAFETY: sets an integer in mimalloc's option table.
    unsafe { libmimalloc_sys::mi_option_set_default(ARENA_EAGER_COMMIT, 0) }
}

/// Sets the purge delay as the binary runs a side: 0 for sparse execution,
/// mimalloc's own delay (`default`) for masked-dense.
fn purge_for(sparse: bool, default: std::ffi::c_long) {
    // SAFETY: sets an integer in mimalloc's option table.
    unsafe { libmimalloc_sys::mi_option_set_default(PURGE_DELAY, if sparse { 0 } else { default }) }
}

/// Steps between topology updates while timing (one update per round).
const EVERY: u64 = 5;

struct Args {
    quick: bool,
    method: String,
    delta_t: f64,
    batch: usize,
    sparsity: f64,
    widths: Vec<usize>,
    memory: Option<String>,
    model: String,
    crossover: f64,
}

fn args() -> Args {
    let mut a = Args {
        quick: false,
        method: "rigl".into(),
        delta_t: 100.0,
        batch: 128,
        sparsity: 0.9,
        widths: vec![784, 4096, 4096, 10],
        memory: None,
        model: "mlp".into(),
        crossover: 1.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(s) = it.next() {
        let mut value = || it.next().unwrap_or_default();
        match s.as_str() {
            "--quick" => a.quick = true,
            "--method" => a.method = value(),
            "--delta-t" => a.delta_t = value().parse().unwrap_or(a.delta_t),
            "--batch" => a.batch = value().parse().unwrap_or(a.batch),
            "--sparsity" => a.sparsity = value().parse().unwrap_or(a.sparsity),
            "--widths" => a.widths = value().split(',').filter_map(|v| v.parse().ok()).collect(),
            "--memory" => a.memory = Some(value()),
            "--model" => a.model = value(),
            "--crossover" => a.crossover = value().parse().unwrap_or(a.crossover),
            _ => {}
        }
    }
    a
}

fn method(name: &str) -> Box<dyn Method> {
    let schedule = || UpdateSchedule::new(1_000_000).with_interval(EVERY);
    match name {
        "rigl" => RigL::with_schedule(&RigLConfig::new(), schedule())
            .expect("rigl")
            .into_method(),
        "set" => Set::with_schedule(&SetConfig::new(), schedule())
            .expect("set")
            .into_method(),
        "static" => StaticRandom.into_method(),
        other => panic!("--method {other}: expected rigl, set or static"),
    }
}

/// One image's shape `[C, H, W]` and the classes of `--model`.
fn input(a: &Args) -> ([usize; 3], usize) {
    match a.model.as_str() {
        "mlp" => ([1, 1, a.widths[0]], *a.widths.last().unwrap_or(&1)),
        "cnn" => ([1, 28, 28], 10),
        "resnet18" | "mobilenet" => ([3, 32, 32], 10),
        other => panic!("--model {other}: expected mlp, cnn, resnet18 or mobilenet"),
    }
}

fn batch(a: &Args, t: u64, dev: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let mut rng = Rng::for_stream(1, "bench", t, "data");
    let ([c, h, w], classes) = input(a);
    let x: Vec<f32> = (0..a.batch * c * h * w).map(|_| rng.next_f32()).collect();
    let y: Vec<i32> = (0..a.batch).map(|_| rng.below(classes as u64) as i32).collect();
    (
        Tensor::from_data(TensorData::new(x, [a.batch, c, h, w]), dev),
        Tensor::from_data(TensorData::new(y, [a.batch]), dev),
    )
}

fn grads<M: Classifier>(a: &Args, model: &M, t: u64, dev: &Device) -> GradientsParams {
    let (x, y) = batch(a, t, dev);
    let loss = CrossEntropyLossConfig::new().init(dev).forward(model.forward(x), y);
    GradientsParams::from_grads(loss.backward(), model)
}

/// The masked-dense side: the model and its sparsifier.
struct Dense<D>(Option<D>, Sparsifier);

/// The sparse side: the model's compact twin and its sparsifier.
struct Sparse<C>(Option<C>, Sparsifier);

trait Side {
    /// One step at `t`; whether it was a topology-update step.
    fn step(&mut self, a: &Args, t: u64, dev: &Device) -> bool;

    /// The density of the sparse layers (NaN for a side without a sparsifier).
    fn density(&self) -> f64 {
        f64::NAN
    }
}

impl<D: CompactTwin> Side for Dense<D> {
    fn step(&mut self, a: &Args, t: u64, dev: &Device) -> bool {
        let update = self.1.needs().update;
        let m = self.0.take().expect("model");
        let g = grads(a, &m, t, dev);
        // moved into the step (no second reference), so flex may update in place
        self.0 = Some(self.1.step(m, g, 0.01).expect("dense step"));
        update
    }
}

impl<C: CompactModel + Classifier> Side for Sparse<C> {
    fn step(&mut self, a: &Args, t: u64, dev: &Device) -> bool {
        let update = self.1.needs().update;
        let m = compact_prepare(self.0.take().expect("model"), &self.1, Some(a.batch)).expect("prepare");
        let g = grads(a, &m, t, dev);
        self.0 = Some(compact_step(m, &mut self.1, g, 0.01).expect("sparse step"));
        update
    }

    fn density(&self) -> f64 {
        self.1.report().density()
    }
}

/// The sparse side with no dense model: the model, its rule and optimizer.
struct Compact(Option<CompactMlp>, CompactUpdate, sparse_core::MaskedOptimizer);

impl Side for Compact {
    fn step(&mut self, a: &Args, t: u64, dev: &Device) -> bool {
        let m = self.0.take().expect("model");
        let (m, _) = compact_rule_step(m, &self.1, &mut self.2, t, 0.01, batch(a, t, dev)).expect("compact step");
        self.0 = Some(m);
        self.1.is_update_step(t)
    }
}

fn compact_side(a: &Args, dev: &Device) -> Compact {
    let sparsity = SparsityConfig::new().with_sparsity(a.sparsity).with_seed(3);
    let model = CompactMlp::random(&a.widths, &sparsity, dev).expect("compact model");
    let mut rule = match a.method.as_str() {
        "rigl" => rigl_rule(&RigLConfig::new(), 1, 3).expect("rigl"),
        _ => set_rule(&SetConfig::new(), 1, 3).expect("set"),
    };
    rule.updates = match a.method.as_str() {
        "static" => UpdateSchedule::new(0),
        _ => UpdateSchedule::new(1_000_000).with_interval(EVERY),
    };
    Compact(Some(model), rule, OptimizerConfig::sgd(0.9, 0.0).init())
}

fn setup<D: CompactTwin>(a: &Args, model: D) -> (D, Sparsifier) {
    let sparsity = SparsityConfig::new()
        .with_sparsity(a.sparsity)
        .with_seed(3)
        .with_filter(model.sparsity_filter());
    let optimizer = OptimizerConfig::sgd(0.9, 0.0);
    let mut sparse = Sparsifier::new(&model, sparsity, method(&a.method), &optimizer).expect("sparsifier");
    let model = sparse.init(model).expect("init");
    (model, sparse)
}

fn dense_side<D: CompactTwin>(a: &Args, model: D) -> Dense<D> {
    let (model, sparse) = setup(a, model);
    Dense(Some(model), sparse)
}

fn sparse_side<D: CompactTwin>(a: &Args, model: D) -> Sparse<D::Compact> {
    let (model, mut sparse) = setup(a, model);
    let compact = model.to_compact(&sparse).expect("compact");
    drop(model);
    // layers denser than the crossover multiply densely (`--execution auto`)
    let density: std::collections::HashMap<String, f64> = sparse
        .layers()
        .iter()
        .zip(sparse.masks())
        .map(|(l, m)| (l.path.clone(), m.count_ones() as f64 / m.len() as f64))
        .collect();
    let compact = compact
        .try_map_compact(&mut |_, layer| {
            let d = density.get(&layer.layer().path).copied().unwrap_or(1.0);
            Ok(layer.with_dense_product(d > a.crossover))
        })
        .expect("crossover");
    sparse.release_device_masks();
    Sparse(Some(compact), sparse)
}

/// The masked-dense (`dense`) or the sparse side of `--model`, and a description.
fn side(a: &Args, dev: &Device, dense: bool) -> (Box<dyn Side>, String) {
    fn of<D: CompactTwin>(a: &Args, model: D, dense: bool) -> Box<dyn Side> {
        match dense {
            true => Box::new(dense_side(a, model)),
            false => Box::new(sparse_side(a, model)),
        }
    }
    match a.model.as_str() {
        "mlp" => (of(a, mlp_config(a).init(dev), dense), format!("MLP {:?}", a.widths)),
        "cnn" => (
            of(a, SmallCnnConfig::new().init(dev), dense),
            "small CNN (28×28)".into(),
        ),
        "resnet18" => {
            let config = ResNetConfig::new(ResNetDepth::R18)
                .with_stem(Stem::Cifar)
                .with_classes(10);
            (of(a, config.init(dev), dense), "ResNet-18, CIFAR stem (3×32×32)".into())
        }
        "mobilenet" => {
            let config = MobileNetV1Config::new().with_classes(10).with_small_input(true);
            let model = config.init(dev).expect("MobileNetV1");
            (
                of(a, model, dense),
                "MobileNetV1 (width 1, stride-1 stem, 3×32×32)".into(),
            )
        }
        other => panic!("--model {other}: expected mlp, cnn, resnet18 or mobilenet"),
    }
}

/// Both sides of `--model`, and a description.
fn sides(a: &Args, dev: &Device) -> (Box<dyn Side>, Box<dyn Side>, String) {
    let (dense, what) = side(a, dev, true);
    let (sparse, _) = side(a, dev, false);
    (dense, sparse, what)
}

fn mlp_config(a: &Args) -> MlpConfig {
    MlpConfig::new()
        .with_input(a.widths[0])
        .with_hidden(a.widths[1..a.widths.len() - 1].to_vec())
        .with_classes(*a.widths.last().expect("widths"))
}

fn vm_hwm() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

fn memory(a: &Args, which: &str, dev: &Device) {
    let (mut model, what): (Box<dyn Side>, String) = match which {
        "dense" | "sparse" => side(a, dev, which == "dense"),
        "compact" if a.model == "mlp" => (Box::new(compact_side(a, dev)), format!("MLP {:?}", a.widths)),
        "compact" => panic!("--memory compact: only the MLP is built without a dense model; use --model mlp"),
        other => panic!("--memory {other}: expected dense, sparse or compact"),
    };
    let setup = vm_hwm();
    // return what the setup freed to the OS (mimalloc keeps it otherwise), then
    // count from here
    // SAFETY: a plain call into the allocator, no pointers involved.
    unsafe { libmimalloc_sys::mi_collect(true) };
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM (Linux only)");
    let mut updates = 0;
    for t in 0..2 * EVERY {
        updates += usize::from(model.step(a, t, dev));
    }
    let mib = |b: Option<u64>| b.map_or(f64::NAN, |b| b as f64 / (1 << 20) as f64);
    println!(
        "{which}: {what} batch {} sparsity {} {} ({updates} updates in {} steps): peak of the steps {:.1} MiB, peak of setup {:.1} MiB",
        a.batch,
        a.sparsity,
        a.method,
        2 * EVERY,
        mib(vm_hwm()),
        mib(setup)
    );
}

fn main() {
    // SAFETY: reads an integer from mimalloc's option table.
    let delay = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
    let a = args();
    let dev = Device::flex().autodiff();
    if let Some(side) = &a.memory {
        purge_for(side != "dense", delay);
        return memory(&a, side, &dev);
    }
    let (mut dense, mut sparse, what) = sides(&a, &dev);
    let density = sparse.density();
    // warm-up: one update and one regular step each
    let mut t = 0;
    while t < EVERY + 1 {
        purge_for(false, delay);
        dense.step(&a, t, &dev);
        purge_for(true, delay);
        sparse.step(&a, t, &dev);
        t += 1;
    }
    let rounds = if a.quick { 3 } else { 7 };
    let (mut times, mut kinds): ([Vec<f64>; 2], [Vec<bool>; 2]) = Default::default();
    for r in 0..rounds {
        for _ in 0..EVERY {
            let order: [usize; 2] = if r % 2 == 0 { [0, 1] } else { [1, 0] };
            for side in order {
                let start = Instant::now();
                let update = match side {
                    0 => {
                        purge_for(false, delay);
                        dense.step(&a, t, &dev)
                    }
                    _ => {
                        purge_for(true, delay);
                        sparse.step(&a, t, &dev)
                    }
                };
                times[side].push(start.elapsed().as_secs_f64() * 1e3);
                kinds[side].push(update);
            }
            t += 1;
        }
    }
    println!(
        "{what} batch {} density {density:.4} (ERK), {} updating every {EVERY} steps, SGD momentum 0.9, {rounds} rounds",
        a.batch, a.method
    );
    let mut amortised = [0.0; 2];
    for (side, name) in ["masked-dense", "sparse"].iter().enumerate() {
        let pick = |want: bool| -> Vec<f64> {
            times[side]
                .iter()
                .zip(&kinds[side])
                .filter(|(_, k)| **k == want)
                .map(|(t, _)| *t)
                .collect()
        };
        let (regular, update) = (quartiles(pick(false)), quartiles(pick(true)));
        let update_median = if update[1].is_nan() { regular[1] } else { update[1] };
        amortised[side] = ((a.delta_t - 1.0) * regular[1] + update_median) / a.delta_t;
        println!(
            "{name:>12}: regular step {:.1} ms [{:.1}, {:.1}], update step {:.1} ms [{:.1}, {:.1}], amortised at ΔT = {} {:.1} ms",
            regular[1], regular[0], regular[2], update[1], update[0], update[2], a.delta_t, amortised[side]
        );
    }
    println!(
        "dense/sparse (amortised full step): {:.2}x",
        amortised[0] / amortised[1]
    );
}
