//! burn-train integration: a [`Sparsifier`] shared by every clone of a model.
//!
//! The first-class route is `sparseburn::burn_train::sparsify`, which wraps the
//! model (no changes to it, any Burn optimizer, the sparse state in burn-train's
//! checkpoints, sparsity metrics); it is built on [`SharedSparsifier::step_with`].
//! The hand-written glue below remains for models that must stay unwrapped.
//!
//! burn-train owns the model and calls `TrainStep::optimize` once per optimizer
//! step (after gradient accumulation), with Burn's `ModuleOptimizer`. Keep a
//! [`SharedSparsifier`] in the model as a `#[module(skip)]` field and route
//! `optimize` / `optimize_multi` to it; Burn's optimizer is then unused:
//!
//! ```ignore
//! #[derive(Module, Debug)]
//! struct SparseNet { net: Net, #[module(skip)] sparse: SharedSparsifier }
//!
//! impl TrainStep for SparseNet {
//!     // type Input, type Output, fn step(..) as usual
//!     fn optimize(self, _: &mut ModuleOptimizer, lr: ModuleLearningRate, grads: GradientsParams) -> Self {
//!         let sparse = self.sparse.clone();
//!         sparse.optimize(self, grads, lr)
//!     }
//!     fn optimize_multi(self, _: &mut ModuleOptimizer, lr: ModuleLearningRate, grads: MultiGradientsParams) -> Self {
//!         let sparse = self.sparse.clone();
//!         sparse.optimize_multi(self, grads, lr)
//!     }
//! }
//! ```
//!
//! To keep Burn's optimizer instead (any of them, with its state in burn-train's
//! optimizer checkpoints), use `sparseburn::burn_train::sparsify`, which wraps
//! the model and routes to [`SharedSparsifier::step_with`] and
//! [`SharedSparsifier::step_multi_with`] without any glue in the user's model.
//!
//! Clones (burn-train clones the model for validation and per device) share one
//! state through an `Arc<Mutex<_>>`. With this glue the sparse state is not in
//! Burn's checkpoints: save it with [`Sparsifier::save`] next to them.

use std::sync::{Arc, Mutex, MutexGuard};

use burn::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer, MultiGradientsParams};

use crate::error::Result;
use crate::sparsifier::Sparsifier;
use crate::traverse;

/// A [`Sparsifier`] shared by a model and its clones.
#[derive(Clone, Debug)]
pub struct SharedSparsifier(Arc<Mutex<Sparsifier>>);

impl SharedSparsifier {
    /// Shares `sparsifier`.
    pub fn new(sparsifier: Sparsifier) -> Self {
        Self(Arc::new(Mutex::new(sparsifier)))
    }

    /// Locks the sparsifier (e.g. to read statistics or save it).
    pub fn lock(&self) -> MutexGuard<'_, Sparsifier> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The step for `TrainStep::optimize`.
    pub fn optimize<M: Module>(&self, model: M, grads: GradientsParams, lr: ModuleLearningRate) -> M {
        self.lock().optimize(model, grads, lr)
    }

    /// The step for `TrainStep::optimize_multi` (`ExecutionStrategy::MultiDevice`):
    /// gradients from every device are summed on the weight's device first, as
    /// Burn's `ModuleOptimizer::step_multi` does.
    pub fn optimize_multi<M: Module>(&self, model: M, grads: MultiGradientsParams, lr: ModuleLearningRate) -> M {
        let grads = traverse::merge_multi(&model, grads);
        self.optimize(model, grads, lr)
    }

    /// [`Sparsifier::step_with`] on the shared state: the step for
    /// `TrainStep::optimize` with burn-train's own optimizer (any Burn
    /// optimizer; its state is then in burn-train's optimizer checkpoints).
    /// Returns its error: `sparseburn::burn_train::SparseModel` turns it into
    /// a stopped run instead of a panic.
    pub fn step_with<M: Module>(
        &self,
        optim: &mut ModuleOptimizer,
        model: M,
        grads: GradientsParams,
        lr: ModuleLearningRate,
    ) -> Result<M> {
        self.lock().step_with(optim, model, grads, lr)
    }

    /// [`SharedSparsifier::step_with`] for `TrainStep::optimize_multi`: gradients
    /// from every device are summed on the weight's device first.
    pub fn step_multi_with<M: Module>(
        &self,
        optim: &mut ModuleOptimizer,
        model: M,
        grads: MultiGradientsParams,
        lr: ModuleLearningRate,
    ) -> Result<M> {
        let grads = sum_multi_grads(&model, grads);
        self.step_with(optim, model, grads, lr)
    }
}

/// Sums each parameter's gradients from every device on the parameter's device
/// (the gradients `ModuleOptimizer::step_multi` would step with), for a
/// sparse step that takes `GradientsParams`.
pub fn sum_multi_grads<M: Module>(model: &M, grads: MultiGradientsParams) -> GradientsParams {
    traverse::merge_multi(model, grads)
}
