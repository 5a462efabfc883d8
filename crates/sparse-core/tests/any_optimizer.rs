//! Sparse training with any Burn optimizer (SGD with momentum, Adam, AdamW,
//! RMSProp, AdaGrad, Lion, Adan, LAMB, Adafactor and a user's own): pruned weights stay exactly 0 through
//! topology updates, dropped and regrown weights get zero optimizer state (read
//! back through Burn's own record, independently of the code under test), and
//! with all-dense masks the wrapped optimizer is the bare one bit for bit, and
//! a run resumed from Burn's optimizer record continues bit for bit.

use crate::common;

use std::collections::{BTreeSet, HashMap};

use burn::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::module::{Module, ParamId};
use burn::optim::MultiGradientsParams;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    AdaGradConfig, AdafactorConfig, AdamConfig, AdamWConfig, AdanConfig, LambConfig, LionConfig, ModuleOptimizer,
    Optimizer, RecordState, RmsPropConfig, SgdConfig, StateSink, StateSource,
};
use burn::tensor::{Device, Tensor};
use common::{Net, RandomSwap, device, values};
use sparse_core::method::{InitContext, Method, Needs, StepContext};
use sparse_core::{Mask, OptimizerConfig, SharedSparsifier, SparseError, SparseOptimizer, Sparsifier, SparsityConfig};

const LR: f64 = 0.05;

/// A user's optimizer: heavy-ball SGD whose velocity also takes a constant
/// push, so that without masking a pruned weight would move off 0 and its
/// velocity would not stay 0.
#[derive(Clone)]
struct PushSgd;

#[derive(Clone)]
struct PushState<const D: usize> {
    velocity: Tensor<D>,
}

impl<const D: usize> RecordState for PushState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        out.push_tensor(prefix, "velocity", self.velocity.clone().into_data());
    }
    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        let velocity = Tensor::from_data(src.take_tensor(prefix, "velocity")?, device);
        Some(Self { velocity })
    }
}

impl Optimizer for PushSgd {
    type State<const D: usize> = PushState<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<PushState<D>>,
    ) -> (Tensor<D>, Option<PushState<D>>) {
        let push = grad.add_scalar(0.01);
        let velocity = match state {
            Some(s) => s.velocity.mul_scalar(0.5).add(push),
            None => push,
        };
        let tensor = tensor - velocity.clone().mul_scalar(lr);
        (tensor, Some(PushState { velocity }))
    }

    fn to_device<const D: usize>(state: PushState<D>, device: &Device) -> PushState<D> {
        PushState {
            velocity: state.velocity.to_device(device),
        }
    }
}

/// Every optimizer under test, freshly built.
fn optimizers() -> Vec<(&'static str, ModuleOptimizer)> {
    let momentum = MomentumConfig {
        momentum: 0.9,
        dampening: 0.0,
        nesterov: false,
    };
    vec![
        (
            "sgd-momentum",
            SgdConfig::new()
                .with_momentum(Some(momentum))
                .with_weight_decay(Some(WeightDecayConfig::new(1e-3)))
                .init(),
        ),
        ("adam", AdamConfig::new().init()),
        ("adamw", AdamWConfig::new().with_weight_decay(1e-2).init()),
        ("rmsprop", RmsPropConfig::new().with_centered(true).init()),
        ("adagrad", AdaGradConfig::new().init()),
        ("lion", LionConfig::new().init()),
        ("adan", AdanConfig::new().init()),
        ("lamb", LambConfig::new().init()),
        // factored second moments only: no per-weight state to zero
        ("adafactor", AdafactorConfig::new().init()),
        ("user", PushSgd.into()),
    ]
}

fn model() -> Net {
    Net::new(&[(8, 6), (6, 4)], &[(2, 3, 3)], &device())
}

/// Every float parameter's values, in a fixed order.
fn all_params(model: &Net) -> Vec<f32> {
    let mut out = Vec::new();
    for l in &model.linears {
        out.extend(values(l.weight.val()));
        out.extend(values(l.bias.as_ref().expect("bias").val()));
    }
    for c in &model.convs {
        out.extend(values(c.weight.val()));
        out.extend(values(c.bias.as_ref().expect("bias").val()));
    }
    out
}

/// The optimizer's state tensors as `(param id, name) -> f32 values`, read
/// through Burn's record and the burnpack format only.
fn state_of(optim: &ModuleOptimizer) -> HashMap<(u64, String), Vec<f32>> {
    let bytes = optim.to_record().into_bytes().expect("record bytes");
    let reader = burn_pack::Reader::from_bytes(bytes).expect("burnpack");
    let mut out = HashMap::new();
    for t in reader.into_tensors().expect("tensors") {
        assert_eq!(t.dtype, burn_pack::DType::F32, "{}", t.name);
        let (name, _, _, id, bytes) = t.into_parts().expect("parts");
        let v: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        out.insert((id.expect("param id"), name), v);
    }
    out
}

/// The sparse weights' host values with their masks, checked: every pruned
/// weight is exactly 0. Returns the number of active weights that are not 0.
fn check_pruned_zero(sparse: &mut Sparsifier, model: &Net, what: &str) -> usize {
    let weights = sparse.read_weights(model).expect("weights");
    let mut active_nonzero = 0;
    for (l, (w, m)) in weights.iter().zip(sparse.masks()).enumerate() {
        for (i, &x) in w.iter().enumerate() {
            if m.get(i) {
                active_nonzero += usize::from(x != 0.0);
            } else {
                // masking multiplies by 0, so a negative weight becomes -0.0 (== 0.0)
                assert!(x == 0.0, "{what}: layer {l} pruned weight {i} = {x}");
            }
        }
    }
    active_nonzero
}

#[test]
fn pruned_weights_stay_exactly_zero_through_topology_updates() {
    for (name, optim) in optimizers() {
        let model = model();
        let swap = RandomSwap {
            every: 2,
            fraction: 0.3,
            updates: 0,
            skip: false,
        };
        let config = SparsityConfig::new().with_sparsity(0.6);
        let mut sparse = SparseOptimizer::new(&model, config, swap, optim).expect("sparse optimizer");
        let mut model = sparse.init(model).expect("init");
        let first = sparse.sparsifier().masks().to_vec();
        let start = all_params(&model);
        for t in 0..12 {
            let grads = model.grads(t);
            model = sparse.step(model, grads, LR).expect("step");
            let active = check_pruned_zero(sparse.sparsifier_mut(), &model, name);
            assert!(active > 0, "{name}: no active weight left");
        }
        assert_eq!(sparse.sparsifier().step_count(), 12);
        assert_ne!(
            sparse.sparsifier().masks(),
            &first[..],
            "{name}: the topology never changed"
        );
        assert_ne!(
            all_params(&model),
            start,
            "{name}: the optimizer did not move the weights"
        );
    }
}

/// Every third step, before the optimizer step (which it skips, so that the
/// state seen before and after the call differs only by the reset): drops the
/// weights at positions 1 mod 4 and regrows those at 0 mod 4, then the other
/// way round, so each update regrows exactly the weights the previous one
/// dropped, whose state would still be nonzero had it not been zeroed.
#[derive(Debug, Default)]
struct Rotate {
    updates: u64,
}

impl Method for Rotate {
    fn name(&self) -> &'static str {
        "rotate"
    }
    fn init(&mut self, ctx: &mut InitContext<'_>, masks: &mut [Mask]) -> sparse_core::Result<()> {
        for (l, m) in masks.iter_mut().enumerate() {
            *m = Mask::from_indices(
                ctx.layers()[l].numel(),
                (0..ctx.layers()[l].numel()).filter(|i| i % 4 != 0),
            );
        }
        Ok(())
    }
    fn needs(&self, step: u64) -> Needs {
        let update = step > 0 && step.is_multiple_of(3);
        Needs {
            grads: false,
            update,
            skip_optimizer: update,
        }
    }
    fn on_step(&mut self, ctx: &mut StepContext<'_>) -> sparse_core::Result<()> {
        self.updates += 1;
        let (drop, grow) = if self.updates % 2 == 1 { (1, 0) } else { (0, 1) };
        for m in ctx.masks_mut().iter_mut() {
            for i in 0..m.len() {
                if i % 4 == drop {
                    m.set(i, false);
                } else if i % 4 == grow {
                    m.set(i, true);
                }
            }
        }
        Ok(())
    }
}

#[test]
fn dropped_and_regrown_weights_start_from_zero_optimizer_state() {
    for (name, optim) in optimizers() {
        let model = model();
        let config = SparsityConfig::new().with_sparsity(0.25);
        let mut sparse = SparseOptimizer::new(&model, config, Rotate::default(), optim).expect("sparse optimizer");
        let mut model = sparse.init(model).expect("init");
        let ids: Vec<ParamId> = (0..sparse.sparsifier().layers().len())
            .map(|l| sparse.sparsifier().param_id(l))
            .collect();
        let (mut updates, mut reset_nonzero) = (0, 0);
        for t in 0..10 {
            let before = state_of(sparse.optimizer());
            let masks_before = sparse.sparsifier().masks().to_vec();
            let grads = model.grads(t);
            model = sparse.step(model, grads, LR).expect("step");
            let masks_after = sparse.sparsifier().masks().to_vec();
            if masks_after == masks_before {
                continue;
            }
            updates += 1;
            let after = state_of(sparse.optimizer());
            let keys = |s: &HashMap<(u64, String), Vec<f32>>| s.keys().cloned().collect::<BTreeSet<_>>();
            assert_eq!(keys(&before), keys(&after), "{name}: state entries changed");
            for (key, old) in &before {
                let new = &after[key];
                let layer = ids.iter().position(|id| id.val() == key.0);
                let numel = layer.map(|l| masks_before[l].len());
                if layer.is_none() || numel != Some(old.len()) {
                    // not a sparse weight, or not an element-wise state: untouched
                    assert_eq!(bits(old), bits(new), "{name}: {key:?} changed");
                    continue;
                }
                let l = layer.expect("layer");
                for i in 0..old.len() {
                    if masks_before[l].get(i) && masks_after[l].get(i) {
                        assert_eq!(old[i].to_bits(), new[i].to_bits(), "{name}: {key:?}[{i}] kept weight");
                    } else {
                        assert_eq!(new[i].to_bits(), 0, "{name}: {key:?}[{i}] dropped or regrown");
                        reset_nonzero += usize::from(old[i] != 0.0);
                    }
                }
            }
            check_pruned_zero(sparse.sparsifier_mut(), &model, name);
        }
        assert_eq!(updates, 3, "{name}: topology updates");
        if name == "adafactor" {
            // its state is row and column statistics, none shaped like the weight
            assert_eq!(reset_nonzero, 0, "{name}");
        } else {
            assert!(
                reset_nonzero > 0,
                "{name}: nothing needed zeroing, the test proves nothing"
            );
        }
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Keeps every weight.
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

#[test]
fn dense_masks_give_the_bare_optimizer_bit_for_bit() {
    let built: Vec<_> = optimizers().into_iter().zip(optimizers()).collect();
    for ((name, mut bare), (_, wrapped)) in built {
        let start = model();
        let config = SparsityConfig::new().with_sparsity(0.0);
        let mut sparse = SparseOptimizer::new(&start, config, KeepDense, wrapped).expect("sparse optimizer");
        let mut ours = sparse.init(start).expect("init");
        let start = ours.clone();
        let mut theirs = ours.clone();
        for t in 0..5 {
            let grads = ours.grads(t);
            ours = sparse.step(ours, grads, LR).expect("step");
            let grads = theirs.grads(t);
            theirs = bare.step(LR, theirs, grads);
        }
        assert_ne!(all_params(&theirs), all_params(&start), "{name}: nothing moved");
        assert_eq!(bits(&all_params(&ours)), bits(&all_params(&theirs)), "{name}");
    }
}

/// The wrapped Burn SGD and the built-in SGD (same settings) take the same
/// topology updates at the same steps and the same weights.
#[test]
fn burn_sgd_follows_the_builtin_sgd() {
    let swap = || RandomSwap {
        every: 3,
        fraction: 0.3,
        updates: 0,
        skip: false,
    };
    let config = || SparsityConfig::new().with_sparsity(0.5);
    let start = model();
    let mut builtin = Sparsifier::new(&start, config(), swap(), &OptimizerConfig::sgd(0.9, 0.0)).expect("builtin");
    let momentum = MomentumConfig {
        momentum: 0.9,
        dampening: 0.0,
        nesterov: false,
    };
    let burn_sgd = SgdConfig::new().with_momentum(Some(momentum)).init();
    let mut wrapped = SparseOptimizer::new(&start, config(), swap(), burn_sgd).expect("wrapped");
    let mut a = builtin.init(start.clone()).expect("init");
    let mut b = wrapped.init(start).expect("init");
    for t in 0..10 {
        let grads = a.grads(t);
        a = builtin.step(a, grads, LR).expect("step");
        let grads = b.grads(t);
        b = wrapped.step(b, grads, LR).expect("step");
        assert_eq!(builtin.masks(), wrapped.sparsifier().masks(), "masks at step {t}");
        let (pa, pb) = (all_params(&a), all_params(&b));
        let max = pa.iter().zip(&pb).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(max <= 1e-6, "step {t}: max weight difference {max}");
    }
    assert_eq!(builtin.step_count(), wrapped.sparsifier().step_count());
}

#[test]
fn a_model_of_other_shapes_is_an_error_not_a_panic() {
    let model = model();
    let config = SparsityConfig::new().with_sparsity(0.5);
    let swap = RandomSwap {
        every: 2,
        fraction: 0.3,
        updates: 0,
        skip: false,
    };
    let mut sparse = SparseOptimizer::new(&model, config, swap, AdamConfig::new().init()).expect("sparse optimizer");
    sparse.init(model).expect("init");
    let other = Net::new(&[(5, 6), (6, 4)], &[(2, 3, 3)], &device());
    let grads = other.grads(0);
    let err = sparse.step(other, grads, LR).expect_err("other shapes");
    assert!(matches!(err, SparseError::InvalidConfig(_)), "{err}");
}

/// Runs 10 steps with random drop/grow every 3 steps; with `interrupt_at`, saves
/// the model, the sparsifier and Burn's optimizer there and continues from them
/// in a fresh model, sparsifier and optimizer.
type MakeOptimizer = fn() -> ModuleOptimizer;

fn run_resumable(start: &Net, make: MakeOptimizer, interrupt_at: Option<u64>) -> (Vec<u32>, Vec<Mask>) {
    let swap = || RandomSwap {
        every: 3,
        fraction: 0.3,
        updates: 0,
        skip: false,
    };
    let config = || SparsityConfig::new().with_sparsity(0.6).with_seed(5);
    let mut model = start.clone();
    let mut sparse = SparseOptimizer::new(&model, config(), swap(), make()).expect("sparse optimizer");
    model = sparse.init(model).expect("init");
    let dir = tempfile::tempdir().expect("tempdir");
    for t in 0..10 {
        if Some(t) == interrupt_at {
            model.clone().save_file(dir.path().join("model")).expect("save model");
            sparse
                .sparsifier()
                .save(dir.path().join("sparse.safetensors"))
                .expect("save sparse");
            sparse.optimizer().save(dir.path().join("optim")).expect("save optim");
            let fresh = Net::new(&[(8, 6), (6, 4)], &[(2, 3, 3)], &device());
            model = fresh.try_load_file(dir.path().join("model")).expect("load model");
            let optim = make().load(dir.path().join("optim.bpk")).expect("load optim");
            sparse = SparseOptimizer::new(&model, config(), swap(), optim).expect("sparse optimizer");
            sparse
                .sparsifier_mut()
                .load(dir.path().join("sparse.safetensors"), &model)
                .expect("load sparse");
        }
        let grads = model.grads(t);
        model = sparse.step(model, grads, LR).expect("step");
    }
    (bits(&all_params(&model)), sparse.sparsifier().masks().to_vec())
}

#[test]
fn resume_through_burns_optimizer_record_is_bit_identical() {
    let makers: [(&str, MakeOptimizer); 3] = [
        ("adam", || AdamConfig::new().init()),
        ("rmsprop", || RmsPropConfig::new().with_centered(true).init()),
        ("user", || PushSgd.into()),
    ];
    for (name, make) in makers {
        let start = model();
        let (w, m) = run_resumable(&start, make, None);
        // 4: one step after an update (whose reset went through the record); 5: later
        for k in [4, 5] {
            let (w2, m2) = run_resumable(&start, make, Some(k));
            assert_eq!(m, m2, "{name}: masks after resuming at {k}");
            assert_eq!(w, w2, "{name}: weights after resuming at {k}");
        }
    }
}

/// burn-train's route: a `SharedSparsifier` stepping the `ModuleOptimizer` it
/// is handed (`step_with`, and `step_multi_with` for gradients from
/// several devices) takes the same steps as `SparseOptimizer`.
#[test]
fn shared_sparsifier_steps_the_optimizer_it_is_given() {
    let swap = || RandomSwap {
        every: 2,
        fraction: 0.3,
        updates: 0,
        skip: false,
    };
    let config = || SparsityConfig::new().with_sparsity(0.5);
    let start = model();
    let mut reference = SparseOptimizer::new(&start, config(), swap(), AdamConfig::new().init()).expect("reference");
    let mut a = reference.init(start.clone()).expect("init");
    let (sparsifier, mut optim) = SparseOptimizer::new(&start, config(), swap(), AdamConfig::new().init())
        .expect("shared")
        .into_parts();
    let shared = SharedSparsifier::new(sparsifier);
    let mut b = shared.lock().init(start).expect("init");
    for t in 0..6 {
        let grads = a.grads(t);
        a = reference.step(a, grads, LR).expect("step");
        let grads = b.grads(t);
        let lr = ModuleLearningRate::from(LR);
        b = if t % 2 == 0 {
            shared.step_with(&mut optim, b, grads, lr).expect("step")
        } else {
            let device = grads_device(&b);
            let multi = MultiGradientsParams {
                grads: vec![(grads, device)],
            };
            shared.step_multi_with(&mut optim, b, multi, lr).expect("step")
        };
    }
    assert_eq!(reference.sparsifier().masks(), shared.lock().masks());
    assert_eq!(shared.lock().step_count(), 6);
    assert_eq!(bits(&all_params(&a)), bits(&all_params(&b)));
}

fn grads_device(model: &Net) -> Device {
    model.linears[0].weight.val().device()
}
