//! [`SparseModel`]: a user's burn-train model with its sparse training state.

use std::fmt;
use std::sync::{Arc, Mutex};

use burn::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::module::{Devices, Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{GradientsParams, ModuleOptimizer, MultiGradientsParams};
use burn::store::{ModuleRecord, RecordError};
use burn::tensor::{Device, Tensor};
use burn::train::{InferenceStep, Interrupter, TrainOutput, TrainStep};
use sparse_core::shared::sum_multi_grads;
use sparse_core::{SharedSparsifier, SparseError, StepRecord};

use super::record;

/// A model trained sparse by burn-train: `inner` is the user's model, unchanged
/// (same parameters, same paths, same `TrainStep::step`); the wrapper adds the
/// sparse step to `TrainStep::optimize` and the sparse state to the model's
/// record. Built by [`super::sparsify`].
///
/// - **Parameters.** Visiting and mapping go straight to `inner`, so parameter
///   paths and ids are the user's: Burn's optimizer, parameter groups and
///   gradient clipping see the user's model.
/// - **Step.** `optimize` and `optimize_multi` run
///   [`sparse_core::Sparsifier::step_with_record`] (or replay its record, see
///   "Devices") with the `ModuleOptimizer` burn-train passes (any Burn
///   optimizer). Changing the shared sparsifier's step counter after wrapping
///   (`set_step`, `restart`, loading it directly) makes the next step an
///   error: wrap the model again after such a change.
/// - **Checkpoints.** `into_record` adds the sparse state (masks, ITOP record,
///   method state, step counter) to the model's record, and `try_load_record`
///   restores it (see `record.rs`).
/// - **Errors.** A failed sparse step keeps the weights as they were (the
///   masks too when the method fails; Burn's optimizer state is not rolled
///   back), stops the run through burn-train's `Interrupter` with the error as
///   reason before any checkpoint of that epoch, and is kept for
///   [`SparseModel::take_error`].
/// - **Devices.** One device; burn-train's `MultiDevice` strategy with either
///   `MultiDeviceOptim` (burn-train 0.22.1 reduces the devices' gradients
///   first and steps its one model once per optimizer step: `optimize` on the
///   main device, or `optimize_multi`); and `DistributedDataParallel`, where
///   every worker steps its own replica with its own optimizer from the same
///   all-reduced gradients. Each value carries its replica's step; the first
///   replica to reach step t takes the sparse step (one topology decision, the
///   step counter advanced once) and keeps its [`StepRecord`]; every other
///   replica, one step behind the sparsifier, replays that record on its own
///   weights and optimizer ([`sparse_core::Sparsifier::replay`]), so the
///   replicas keep identical masks and weights. Only the last decision is
///   kept: a replica more than one step behind is an error. Design and limits:
///   docs/architecture.md#multi-device.
#[derive(Clone, Debug)]
pub struct SparseModel<M> {
    inner: M,
    sparse: SharedSparsifier,
    hooks: Hooks,
    /// The sparse step this replica takes next (the sparsifier's step counter
    /// after this replica's last step); each data-parallel replica carries its own.
    step: u64,
}

/// What every clone of a [`SparseModel`] shares besides the sparsifier.
#[derive(Clone, Default)]
struct Hooks {
    interrupter: Option<Interrupter>,
    error: Arc<Mutex<Option<SparseError>>>,
    /// The last topology decision, for the replicas that have not taken its
    /// step yet (see [`SparseModel::replica_step`]).
    last: Arc<Mutex<Option<StepRecord>>>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("interrupter", &self.interrupter.is_some())
            .finish()
    }
}

impl<M: Module> SparseModel<M> {
    /// Wraps `inner` (whose masks `sparse` has set) with `sparse`; a failed
    /// sparse step stops the run through `interrupter`, if given.
    pub fn new(inner: M, sparse: SharedSparsifier, interrupter: Option<Interrupter>) -> Self {
        let step = {
            let sparse = sparse.lock();
            sparse.warn_extra_decay();
            sparse.step_count()
        };
        Self {
            inner,
            sparse,
            hooks: Hooks {
                interrupter,
                error: Arc::default(),
                last: Arc::default(),
            },
            step,
        }
    }

    /// The user's model.
    pub fn inner(&self) -> &M {
        &self.inner
    }

    /// The user's model, unwrapped.
    pub fn into_inner(self) -> M {
        self.inner
    }

    /// The sparse state, shared by every clone (statistics, masks, saving).
    pub fn sparsifier(&self) -> &SharedSparsifier {
        &self.sparse
    }

    /// The error that stopped the run, if a sparse step failed (burn-train
    /// reports it as an interruption whose reason is the error's message).
    pub fn take_error(&self) -> Option<SparseError> {
        self.lock_error().take()
    }

    fn lock_error(&self) -> std::sync::MutexGuard<'_, Option<SparseError>> {
        self.hooks.error.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records `error`, stops the run and logs it.
    fn fail(&self, error: SparseError) {
        let reason = format!("sparse step failed: {error}");
        tracing::error!(%error, "sparse step failed; stopping the run");
        if let Some(interrupter) = &self.hooks.interrupter {
            interrupter.stop(Some(&reason));
        }
        self.lock_error().get_or_insert(error);
    }

    /// One sparse step of this replica at its step `self.step` (see the type's
    /// docs, "Devices"): the first replica to reach it decides, under the
    /// sparsifier's lock, and keeps the record; a replica one step behind the
    /// sparsifier replays that record on its own weights and optimizer.
    fn replica_step(self, optim: &mut ModuleOptimizer, lr: ModuleLearningRate, grads: GradientsParams) -> Self {
        if let Err(error) = self.wait_for_reduced_gradients() {
            self.fail(error);
            return self;
        }
        let outcome = {
            let mut sparse = self.sparse.lock();
            let mut last = self.lock_last();
            let shared = sparse.step_count();
            if self.step == shared {
                sparse
                    .step_with_record(optim, self.inner.clone(), grads, lr)
                    .map(|(inner, record)| {
                        *last = Some(record);
                        inner
                    })
            } else {
                match last.as_ref() {
                    Some(record) if self.step + 1 == shared && record.step() == self.step => {
                        sparse.replay(record, optim, self.inner.clone(), grads, lr)
                    }
                    _ => Err(self.out_of_step(shared)),
                }
            }
        };
        match outcome {
            Ok(inner) => Self {
                inner,
                step: self.step + 1,
                ..self
            },
            Err(error) => {
                self.fail(error);
                self
            }
        }
    }

    /// The error for a replica whose step is neither the sparsifier's step nor
    /// the one before it.
    fn out_of_step(&self, shared: u64) -> SparseError {
        let local = self.step;
        SparseError::InvalidConfig(match local > shared {
            true => format!(
                "this replica of the sparse model is at step {local}, ahead of its sparse state (step {shared}): the sparsifier was restored or reset (load, restart, set_step) without the model; wrap the model again (`sparseburn::burn_train::wrap`) after changing the sparsifier, or resume through burn-train's checkpoint"
            ),
            false => format!(
                "this replica of the sparse model is at step {local}, more than one step behind its sparse state (step {shared}), whose topology decision for step {local} is no longer kept: every data-parallel replica must take every optimizer step (burn-train's DistributedDataParallel keeps its workers within one step through the gradient all-reduce); step every replica once per step, or use ExecutionStrategy::MultiDevice"
            ),
        })
    }

    /// Under burn-train's `DistributedDataParallel` (parameters marked
    /// distributed by `Learner::grad_sharded`, burn-train-0.22.1
    /// `ddp/worker.rs:73`), waits for this replica's devices, so that its
    /// all-reduced gradients are complete before the sparsifier is locked. A
    /// complete all-reduce of step t holds every worker's step-t gradients,
    /// which a worker computes only after its `optimize` of step t-1 returned:
    /// so no worker is more than one step behind one that steps, and no worker
    /// holds the lock while it waits for another.
    fn wait_for_reduced_gradients(&self) -> Result<(), SparseError> {
        let mut visitor = FindDistributed::default();
        self.inner.visit(&mut visitor);
        if !visitor.found {
            return Ok(());
        }
        for device in self.inner.devices() {
            device.sync().map_err(|e| {
                SparseError::Backend(format!("waiting for the all-reduced gradients on {device:?}: {e:?}"))
            })?;
        }
        Ok(())
    }

    fn lock_last(&self) -> std::sync::MutexGuard<'_, Option<StepRecord>> {
        self.hooks.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn with_inner(&self, inner: M) -> Self {
        Self {
            inner,
            sparse: self.sparse.clone(),
            hooks: self.hooks.clone(),
            step: self.step,
        }
    }
}

/// Whether any parameter is marked distributed (burn-train's DDP replicas).
#[derive(Default)]
struct FindDistributed {
    found: bool,
}

impl ModuleVisitor for FindDistributed {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let tensor = param.val();
        // `is_distributed` panics on a tensor without autodiff (burn-dispatch 0.22.1)
        self.found |= tensor.is_autodiff() && tensor.is_distributed();
    }
}

impl<M: Module> Module for SparseModel<M> {
    fn collect_devices(&self, devices: Devices) -> Devices {
        self.inner.collect_devices(devices)
    }

    fn fork(self, device: &Device) -> Self {
        let inner = self.inner.clone().fork(device);
        self.with_inner(inner)
    }

    fn to_device(self, device: &Device) -> Self {
        let inner = self.inner.clone().to_device(device);
        self.with_inner(inner)
    }

    fn train(self) -> Self {
        let inner = self.inner.clone().train();
        self.with_inner(inner)
    }

    fn valid(&self) -> Self {
        self.with_inner(self.inner.valid())
    }

    fn materialize(self) -> Self {
        let inner = self.inner.clone().materialize();
        self.with_inner(inner)
    }

    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        self.inner.visit(visitor);
    }

    fn map<Mp: ModuleMapper>(self, mapper: &mut Mp) -> Self {
        let inner = self.inner.clone().map(mapper);
        self.with_inner(inner)
    }

    /// The user's model's record plus the sparse state. Should the state fail
    /// to serialize, the run is stopped ([`SparseModel::take_error`]) and the
    /// record goes without it; loading that checkpoint then fails with an error
    /// that says so.
    fn into_record(self) -> ModuleRecord {
        let state = self.sparse.lock().to_bytes();
        let result = state.and_then(|bytes| {
            record::embed(self.inner.clone().into_record(), bytes)
                .map_err(|e| SparseError::Backend(format!("adding the sparse state to the model record: {e}")))
        });
        match result {
            Ok(with_state) => with_state,
            Err(error) => {
                self.fail(error);
                self.inner.into_record()
            }
        }
    }

    /// Loads the user's model's part into `inner` and restores the sparse state
    /// saved with it (rebinding the sparse weights to the loaded parameter ids).
    fn try_load_record(self, record: ModuleRecord) -> Result<Self, RecordError> {
        let (model, state) = record::extract(record)?;
        let state = state.ok_or_else(|| {
            RecordError::Validation(format!(
                "the record has no sparse state (`{}`): it was not saved from a `SparseModel`; load it into the bare model, or train from it with `sparsify` instead of resuming",
                record::STATE_TENSOR
            ))
        })?;
        let inner = self.inner.clone().try_load_record(model)?;
        let step = {
            let mut sparse = self.sparse.lock();
            sparse
                .load_bytes(&state, "model checkpoint", &inner)
                .map_err(|e| RecordError::Validation(format!("sparse state: {e}")))?;
            sparse.step_count()
        };
        *self.lock_last() = None; // a decision of the timeline left behind
        Ok(Self {
            step,
            ..self.with_inner(inner)
        })
    }
}

impl<M: Module + fmt::Display> fmt::Display for SparseModel<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sparse = self.sparse.lock();
        writeln!(
            f,
            "SparseModel ({}, {} sparse layers, sparsity {:.2}%)",
            sparse.method().name(),
            sparse.layers().len(),
            100.0 * sparse.report().sparsity()
        )?;
        write!(f, "{}", self.inner)
    }
}

impl<M: TrainStep + Module> TrainStep for SparseModel<M> {
    type Input = M::Input;
    type Output = M::Output;

    fn step(&self, item: Self::Input) -> TrainOutput<Self::Output> {
        self.inner.step(item)
    }

    fn optimize(self, optim: &mut ModuleOptimizer, lr: ModuleLearningRate, grads: GradientsParams) -> Self {
        self.replica_step(optim, lr, grads)
    }

    fn optimize_multi(self, optim: &mut ModuleOptimizer, lr: ModuleLearningRate, grads: MultiGradientsParams) -> Self {
        let grads = sum_multi_grads(&self.inner, grads);
        self.replica_step(optim, lr, grads)
    }
}

impl<M: InferenceStep + Module> InferenceStep for SparseModel<M> {
    type Input = M::Input;
    type Output = M::Output;

    fn step(&self, item: Self::Input) -> Self::Output {
        self.inner.step(item)
    }
}
