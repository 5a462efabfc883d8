//! `SparseModel` under burn-train's `DistributedDataParallel` call pattern,
//! driven in-process (Burn 0.22.1 has no distributed ops on the CPU backends,
//! so the strategy itself cannot start here; see `tests/burn_train_multi.rs`).
//!
//! What burn-train-0.22.1 does (`learner/supervised/strategies/ddp/`): the
//! strategy clones the `Learner` once per device (`strategy.rs`), each worker
//! forks its clone to its device (`worker.rs`, `Learner::fork`) and, per step,
//! runs `TrainStep::step` on its own batch, gets gradients all-reduced in
//! backward, and calls `TrainStep::optimize` on its own replica with its own
//! optimizer (`epoch.rs`, `Learner::optimizer_step`). Here: two replicas cloned
//! and forked from one wrapped model, one Burn optimizer each, per step each
//! replica's `TrainStep::step` on its own batch, the mean of the two gradients
//! (the all-reduce) handed to both replicas' `optimize` from two threads, in
//! turn worker 0 first, worker 1 first, and concurrently.

use std::collections::HashMap;
use std::sync::Barrier;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig, momentum::MomentumConfig};
use burn::tensor::{Device, Tensor};
use burn::train::{InferenceStep, RegressionOutput, TrainOutput, TrainStep};
use sparseburn::burn_train::SparseModel;
use sparseburn::prelude::*;
use sparseburn::sparse_core::{IntoMethod, host};
use sparseburn::sparse_models::{Classifier, Mlp, MlpConfig};

/// Optimizer steps per run.
const STEPS: usize = 9;
/// Topology update period (ΔT): updates at steps 2, 4, 6 (and 8 for RigL/SET
/// while within their end fraction).
const DELTA_T: u64 = 2;
const BATCH: usize = 8;
const LR: f64 = 0.05;

#[derive(Module, Debug)]
struct Net {
    mlp: Mlp,
}

/// A batch: images `[b, 1, 4, 4]` and regression targets `[b, 4]`.
type Batch = (Tensor<4>, Tensor<2>);

impl Net {
    fn new(device: &Device) -> Self {
        let config = MlpConfig::new()
            .with_input(16)
            .with_hidden(vec![32, 16])
            .with_classes(4);
        Self {
            mlp: config.init(device),
        }
    }

    fn regress(&self, (images, targets): Batch) -> RegressionOutput {
        let output = self.mlp.forward(images);
        let loss = (output.clone() - targets.clone()).powi_scalar(2).mean();
        RegressionOutput::new(loss, output, targets)
    }
}

impl TrainStep for Net {
    type Input = Batch;
    type Output = RegressionOutput;

    fn step(&self, batch: Batch) -> TrainOutput<RegressionOutput> {
        let output = self.regress(batch);
        TrainOutput::new(self, output.loss.backward(), output)
    }
}

impl InferenceStep for Net {
    type Input = Batch;
    type Output = RegressionOutput;

    fn step(&self, batch: Batch) -> RegressionOutput {
        self.regress(batch)
    }
}

fn device() -> Device {
    let name = std::env::var("SPARSEBURN_DEVICE").unwrap_or_else(|_| "flex".into());
    sparseburn::sparse_core::device(&name).expect("test device").autodiff()
}

/// Worker `worker`'s batch at `step`: deterministic values, different per worker and step.
fn batch(step: usize, worker: usize, device: &Device) -> Batch {
    let seed = (step * 2 + worker) as f32;
    let images = (0..BATCH * 16)
        .map(|i| ((i as f32 + 1.0) * (seed + 1.3)).sin())
        .collect();
    let targets = (0..BATCH * 4).map(|i| ((i as f32) * 0.7 + seed).cos()).collect();
    (
        host::from_vec(images, [BATCH, 1, 4, 4], device),
        host::from_vec(targets, [BATCH, 4], device),
    )
}

/// The all-reduce with `Mean`: per parameter, (a + b) / 2, in `copies` copies
/// (one per worker and one for the single-worker reference).
struct MeanGrads {
    a: GradientsParams,
    b: GradientsParams,
    out: Vec<GradientsParams>,
}

impl ModuleVisitor for MeanGrads {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let (Some(a), Some(b)) = (self.a.remove::<D>(param.id), self.b.remove::<D>(param.id)) else {
            return;
        };
        let mean = (a + b) / 2.0;
        for out in &mut self.out {
            out.register::<D>(param.id, mean.clone());
        }
    }
}

fn mean_grads(model: &Net, a: GradientsParams, b: GradientsParams, copies: usize) -> Vec<GradientsParams> {
    let mut visitor = MeanGrads {
        a,
        b,
        out: (0..copies).map(|_| GradientsParams::new()).collect(),
    };
    model.visit(&mut visitor);
    visitor.out
}

/// The order in which the two workers call `optimize` at a step.
#[derive(Clone, Copy, Debug)]
enum Order {
    ZeroFirst,
    OneFirst,
    Concurrent,
}

/// One worker: its replica and its optimizer.
struct Worker {
    model: SparseModel<Net>,
    optim: ModuleOptimizer,
}

impl Worker {
    fn optimize(self, grads: GradientsParams) -> Self {
        let Worker { model, mut optim } = self;
        let model = model.optimize(&mut optim, LR.into(), grads);
        Worker { model, optim }
    }
}

/// Both workers' `optimize` with their copy of the reduced gradients, each on
/// its own thread, in `order`.
fn step_workers(workers: [Worker; 2], grads: [GradientsParams; 2], order: Order) -> [Worker; 2] {
    let [w0, w1] = workers;
    let [g0, g1] = grads;
    let barrier = Barrier::new(2);
    std::thread::scope(|s| match order {
        Order::ZeroFirst => {
            let w0 = s.spawn(|| w0.optimize(g0)).join().expect("worker 0");
            let w1 = s.spawn(|| w1.optimize(g1)).join().expect("worker 1");
            [w0, w1]
        }
        Order::OneFirst => {
            let w1 = s.spawn(|| w1.optimize(g1)).join().expect("worker 1");
            let w0 = s.spawn(|| w0.optimize(g0)).join().expect("worker 0");
            [w0, w1]
        }
        Order::Concurrent => {
            let h0 = s.spawn(|| {
                barrier.wait();
                w0.optimize(g0)
            });
            let h1 = s.spawn(|| {
                barrier.wait();
                w1.optimize(g1)
            });
            [h0.join().expect("worker 0"), h1.join().expect("worker 1")]
        }
    })
}

/// The linear weights of a replica: (path, row-major values).
fn weights(model: &SparseModel<Net>) -> Vec<(String, Vec<f32>)> {
    model
        .inner()
        .mlp
        .layers
        .iter()
        .enumerate()
        .map(|(i, layer)| {
            let values = host::to_vec(layer.weight.val()).expect("read a weight");
            (format!("mlp.layers.{i}.weight"), values)
        })
        .collect()
}

/// Every float parameter's values (weights and biases), for bit-identity.
fn all_params(model: &SparseModel<Net>) -> Vec<Vec<f32>> {
    struct Collect(Vec<Vec<f32>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(host::to_vec(param.val()).expect("read a parameter"));
        }
    }
    let mut collect = Collect(Vec::new());
    model.visit(&mut collect);
    collect.0
}

/// The optimizer's state tensors as `(param id, name) -> values`, read through
/// Burn's record and the burnpack format only.
fn state_of(optim: &ModuleOptimizer) -> HashMap<(u64, String), Vec<f32>> {
    let bytes = optim.to_record().into_bytes().expect("record bytes");
    let reader = burn_pack::Reader::from_bytes(bytes).expect("burnpack");
    let mut out = HashMap::new();
    for t in reader.into_tensors().expect("tensors") {
        if t.dtype != burn_pack::DType::F32 {
            continue; // e.g. Adam's time step
        }
        let (name, _, _, id, bytes) = t.into_parts().expect("parts");
        let values = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        out.insert((id.expect("param id"), name), values);
    }
    out
}

/// A fresh wrapped model: the same initial weights (`record`) and the same
/// seeded sparsifier every time.
fn wrapped(record: &burn::store::ModuleRecord, method: impl IntoMethod) -> SparseModel<Net> {
    let net = Net::new(&device()).load_record(record.clone());
    let config = SparsityConfig::new().with_sparsity(0.75);
    let mut sparsifier = Sparsifier::for_burn_optimizer(&net, config, method).expect("sparsifier");
    let net = sparsifier.init(net).expect("initial masks");
    SparseModel::new(net, SharedSparsifier::new(sparsifier), None)
}

fn rigl() -> RigL {
    RigL::new(&RigLConfig::new().with_delta_t(DELTA_T), STEPS as u64).expect("RigL")
}

fn set() -> Set {
    Set::new(&SetConfig::new().with_delta_t(DELTA_T), STEPS as u64).expect("SET")
}

fn sgd() -> ModuleOptimizer {
    SgdConfig::new()
        .with_momentum(Some(MomentumConfig::new().with_momentum(0.9)))
        .init()
}

fn adam() -> ModuleOptimizer {
    AdamConfig::new().init()
}

/// The weights a mask prunes are exactly 0.
fn assert_pruned_zero(masks: &[Mask], paths: &[String], weights: &[(String, Vec<f32>)], what: &str) {
    for (mask, path) in masks.iter().zip(paths) {
        let (_, values) = weights.iter().find(|(p, _)| p == path).expect("a sparse weight");
        let bad = (0..mask.len()).filter(|&i| !mask.get(i) && values[i] != 0.0).count();
        assert_eq!(bad, 0, "{what}: {bad} pruned weights of {path} are not 0");
    }
}

/// The optimizer state of every position grown at this step (inactive
/// `before`, active `after`) is 0, in every state tensor of that weight.
/// Returns the number of state tensors with grown positions that were checked.
fn assert_grown_state_zero(
    optim: &ModuleOptimizer,
    layers: &[(ParamId, usize)],
    before: &[Mask],
    after: &[Mask],
    what: &str,
) -> usize {
    let state = state_of(optim);
    let mut checked = 0;
    for ((id, numel), (b, a)) in layers.iter().zip(before.iter().zip(after)) {
        let grown: Vec<usize> = (0..*numel).filter(|&i| a.get(i) && !b.get(i)).collect();
        let tensors: Vec<_> = state
            .iter()
            .filter(|((pid, _), v)| *pid == id.val() && v.len() == *numel)
            .collect();
        // no state yet (the optimizer has not stepped): nothing to check for this weight
        checked += usize::from(!grown.is_empty()) * tensors.len();
        for ((_, name), values) in tensors {
            let bad = grown.iter().filter(|&&i| values[i] != 0.0).count();
            assert_eq!(bad, 0, "{what}: state `{name}` of {bad} grown positions is not 0");
        }
    }
    checked
}

/// Runs two DDP workers and a single-worker reference on the same reduced
/// gradients for [`STEPS`] steps and checks every claim at every step. With
/// `resume_at`, the workers are rebuilt before that step as burn-train resumes
/// DDP: a fresh model (other random weights, fresh sparsifier) loads replica
/// 0's record (`into_record`, what its checkpointer saves) and is cloned per
/// worker, each with a fresh optimizer loaded from its saved record.
fn ddp_matches_single_worker(
    method: fn() -> Box<dyn sparseburn::sparse_core::Method>,
    optim: fn() -> ModuleOptimizer,
    resume_at: Option<usize>,
) {
    let device = device();
    let initial = Net::new(&device).into_record();
    // burn-train's DDP: the learner (model and optimizer) cloned per device, then forked
    let wrapped_model = wrapped(&initial, method());
    let mut workers = [0, 1].map(|_| Worker {
        model: wrapped_model.clone().fork(&device),
        optim: optim(),
    });
    let mut sparse = wrapped_model.sparsifier().clone();
    let mut single = Worker {
        model: wrapped(&initial, method()),
        optim: optim(),
    };
    let (paths, layers): (Vec<String>, Vec<(ParamId, usize)>) = {
        let s = sparse.lock();
        s.layers()
            .iter()
            .map(|l| (l.path.clone(), (l.param_id, l.numel())))
            .unzip()
    };
    let orders = [Order::ZeroFirst, Order::OneFirst, Order::Concurrent];
    let (mut updates, mut grown) = (0, 0);
    for step in 0..STEPS {
        if resume_at == Some(step) {
            let saved = workers[0].model.clone().into_record();
            let other = Net::new(&device).into_record();
            let resumed = wrapped(&other, method()).load_record(saved);
            assert_eq!(resumed.sparsifier().lock().step_count(), step as u64, "resumed step");
            sparse = resumed.sparsifier().clone();
            workers = workers.map(|w| Worker {
                model: resumed.clone().fork(&device),
                optim: optim().load_record(w.optim.to_record()),
            });
        }
        let before = sparse.lock().masks().to_vec();
        // each worker's own batch through its own replica; then the all-reduce
        let g0 = TrainStep::step(workers[0].model.inner(), batch(step, 0, &device)).grads;
        let g1 = TrainStep::step(workers[1].model.inner(), batch(step, 1, &device)).grads;
        let [r0, r1, r2]: [GradientsParams; 3] = mean_grads(workers[0].model.inner(), g0, g1, 3)
            .try_into()
            .expect("three copies");
        let order = orders[step % orders.len()];
        workers = step_workers(workers, [r0, r1], order);
        single = single.optimize(r2);
        let what = format!("step {step} ({order:?})");
        for w in &workers {
            assert!(w.model.take_error().is_none(), "{what}: a worker's sparse step failed");
        }
        assert!(single.model.take_error().is_none(), "{what}: the reference failed");
        // one topology decision and one count per step
        assert_eq!(sparse.lock().step_count(), step as u64 + 1, "{what}: step counter");
        let after = sparse.lock().masks().to_vec();
        let reference = single.model.sparsifier().lock().masks().to_vec();
        assert!(after == reference, "{what}: masks differ from the single-worker run");
        // bit-identical replicas, equal to the single worker
        let (p0, p1, ps) = (
            all_params(&workers[0].model),
            all_params(&workers[1].model),
            all_params(&single.model),
        );
        assert!(p0 == p1, "{what}: the replicas' parameters differ");
        assert!(p0 == ps, "{what}: the replicas differ from the single-worker run");
        for w in &workers {
            assert_pruned_zero(&after, &paths, &weights(&w.model), &what);
        }
        assert!(
            state_of(&workers[0].optim) == state_of(&workers[1].optim),
            "{what}: the workers' optimizer states differ"
        );
        assert!(
            state_of(&workers[0].optim) == state_of(&single.optim),
            "{what}: the optimizer state differs from the single-worker run"
        );
        if after != before {
            updates += 1;
            for w in &workers {
                grown += assert_grown_state_zero(&w.optim, &layers, &before, &after, &what);
            }
        }
    }
    assert!(updates >= 3, "only {updates} topology updates changed the masks");
    assert!(grown > 0, "no grown weight's optimizer state was checked");
}

#[test]
fn ddp_rigl_sgd_momentum_one_decision_per_step_identical_replicas() {
    ddp_matches_single_worker(|| Box::new(rigl()), sgd, None);
}

#[test]
fn ddp_set_adam_one_decision_per_step_identical_replicas() {
    ddp_matches_single_worker(|| Box::new(set()), adam, None);
}

/// DDP resumed from replica 0's record (burn-train's checkpoint of the main
/// worker) in the middle of the run, between two topology updates, continues
/// exactly: still equal to the uninterrupted single-worker run at every step.
#[test]
fn ddp_resumed_from_a_checkpoint_continues_exactly() {
    ddp_matches_single_worker(|| Box::new(rigl()), adam, Some(5));
}

/// A replica that skipped a step (two behind the sparse state) is refused with
/// an error naming the fix, and keeps its weights.
#[test]
fn a_replica_two_steps_behind_is_an_error() {
    let device = device();
    let initial = Net::new(&device).into_record();
    let wrapped_model = wrapped(&initial, rigl());
    let lagging = wrapped_model.clone().fork(&device);
    let mut ahead = Worker {
        model: wrapped_model.fork(&device),
        optim: sgd(),
    };
    for step in 0..2 {
        let grads = TrainStep::step(ahead.model.inner(), batch(step, 0, &device)).grads;
        ahead = ahead.optimize(grads);
    }
    let weights_before = all_params(&lagging);
    let mut optim = sgd();
    let grads = TrainStep::step(lagging.inner(), batch(0, 1, &device)).grads;
    let lagging = lagging.optimize(&mut optim, LR.into(), grads);
    let error = lagging.take_error().expect("the lagging replica's step is refused");
    let message = error.to_string();
    assert!(
        message.contains("more than one step behind") && message.contains("MultiDevice"),
        "{message}"
    );
    assert!(
        all_params(&lagging) == weights_before,
        "the refused step changed the weights"
    );
    assert_eq!(
        lagging.sparsifier().lock().step_count(),
        2,
        "the refused step was counted"
    );
}
