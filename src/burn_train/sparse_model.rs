//! [`SparseModel`]: a user's burn-train model with its sparse training state.

use std::fmt;
use std::sync::{Arc, Mutex};

use burn::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::module::{Devices, Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{GradientsParams, ModuleOptimizer, MultiGradientsParams};
use burn::store::{ModuleRecord, RecordError};
use burn::tensor::{Device, Tensor};
use burn::train::{InferenceStep, Interrupter, TrainOutput, TrainStep};
use sparse_core::{SharedSparsifier, SparseError};

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
///   [`sparse_core::Sparsifier::step_with`] with the `ModuleOptimizer` burn-train
///   passes (any Burn optimizer).
/// - **Checkpoints.** `into_record` adds the sparse state (masks, ITOP record,
///   method state, step counter) to the model's record, and `try_load_record`
///   restores it (see `record.rs`).
/// - **Errors.** A failed sparse step keeps the weights as they were (the
///   masks too when the method fails; Burn's optimizer state is not rolled
///   back), stops the run through burn-train's `Interrupter` with the error as
///   reason before any checkpoint of that epoch, and is kept for
///   [`SparseModel::take_error`].
/// - **Devices.** One device, or burn-train's `MultiDevice` strategy with
///   either `MultiDeviceOptim`: burn-train 0.22.1 reduces the devices'
///   gradients first and steps its one model once per optimizer step
///   (`optimize` on the main device for `OptimMainDevice`, `optimize_multi`
///   for `OptimSharded`), so there is one topology decision per step and every
///   replica is forked from the stepped model. `DistributedDataParallel`,
///   where every worker steps its own replica, is refused with an error before
///   any replica steps (see `check_not_distributed`); why it is not supported,
///   in docs/architecture.md#multi-device.
#[derive(Clone, Debug)]
pub struct SparseModel<M> {
    inner: M,
    sparse: SharedSparsifier,
    hooks: Hooks,
}

/// What every clone of a [`SparseModel`] shares besides the sparsifier.
#[derive(Clone, Default)]
struct Hooks {
    interrupter: Option<Interrupter>,
    error: Arc<Mutex<Option<SparseError>>>,
    /// The device of the first `optimize` call (see [`SparseModel::check_stepping_device`]).
    stepping_device: Arc<Mutex<Option<Device>>>,
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
        sparse.lock().warn_extra_decay();
        Self {
            inner,
            sparse,
            hooks: Hooks {
                interrupter,
                error: Arc::default(),
                stepping_device: Arc::default(),
            },
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

    /// Runs `step` on `inner`; on error keeps `inner` as it was.
    fn sparse_step(self, step: impl FnOnce(&SharedSparsifier, M) -> sparse_core::Result<M>) -> Self {
        let before = self.inner.clone();
        match step(&self.sparse, self.inner.clone()) {
            Ok(inner) => Self { inner, ..self },
            Err(error) => {
                self.fail(error);
                Self { inner: before, ..self }
            }
        }
    }

    /// Refuses a replica of burn-train's `DistributedDataParallel` strategy:
    /// each DDP worker marks its replica's parameters distributed
    /// (`Learner::grad_sharded`, burn-train-0.22.1
    /// `learner/supervised/strategies/ddp/worker.rs:73`) and then calls
    /// `optimize` on it once per step (`ddp/epoch.rs`), which would advance the
    /// shared sparse schedule once per worker. Checked before any replica
    /// steps, so no worker changes its masks.
    fn check_not_distributed(&self) -> Result<(), SparseError> {
        let mut visitor = FindDistributed::default();
        self.inner.visit(&mut visitor);
        match visitor.found {
            false => Ok(()),
            true => Err(SparseError::InvalidConfig(
                "burn-train's DistributedDataParallel strategy is not supported: each worker steps its own replica, which would advance the shared sparse schedule once per worker and let each replica decide the topology; use ExecutionStrategy::MultiDevice (one step from the reduced gradients) or a single device".to_string(),
            )),
        }
    }

    /// Refuses a second device stepping its own replica, the fallback for
    /// replicas not marked distributed (a custom strategy that steps one
    /// replica per device). burn-train's `MultiDevice` always steps on its
    /// main device (`optimize`) or through `optimize_multi`, which this does
    /// not check.
    fn check_stepping_device(&self) -> Result<(), SparseError> {
        let Some(device) = self.inner.devices().into_iter().next() else {
            return Ok(());
        };
        let mut first = self
            .hooks
            .stepping_device
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match first.as_ref() {
            None => {
                *first = Some(device);
                Ok(())
            }
            Some(seen) if *seen == device => Ok(()),
            Some(seen) => Err(SparseError::InvalidConfig(format!(
                "the sparse model was stepped on {device:?} after {seen:?}: burn-train's DistributedDataParallel strategy (one optimizer step per device) is not supported; use ExecutionStrategy::MultiDevice, which steps once from the reduced gradients, or a single device"
            ))),
        }
    }

    fn with_inner(&self, inner: M) -> Self {
        Self {
            inner,
            sparse: self.sparse.clone(),
            hooks: self.hooks.clone(),
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
        self.sparse
            .lock()
            .load_bytes(&state, "model checkpoint", &inner)
            .map_err(|e| RecordError::Validation(format!("sparse state: {e}")))?;
        Ok(self.with_inner(inner))
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
        if let Err(error) = self.check_not_distributed().and_then(|()| self.check_stepping_device()) {
            self.fail(error);
            return self;
        }
        self.sparse_step(|sparse, inner| sparse.step_with(optim, inner, grads, lr))
    }

    fn optimize_multi(self, optim: &mut ModuleOptimizer, lr: ModuleLearningRate, grads: MultiGradientsParams) -> Self {
        if let Err(error) = self.check_not_distributed() {
            self.fail(error);
            return self;
        }
        self.sparse_step(|sparse, inner| sparse.step_multi_with(optim, inner, grads, lr))
    }
}

impl<M: InferenceStep + Module> InferenceStep for SparseModel<M> {
    type Input = M::Input;
    type Output = M::Output;

    fn step(&self, item: Self::Input) -> Self::Output {
        self.inner.step(item)
    }
}
