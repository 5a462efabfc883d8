//! [`StepRecord`]: what one sparse step did, so that another replica of the
//! model can take the same step without a topology decision of its own.
//!
//! Data-parallel training in which every worker steps its own replica with its
//! own optimizer (burn-train's `DistributedDataParallel`) must take **one**
//! topology decision per step, from the all-reduced gradients, and apply it to
//! every replica. The first replica to reach step `t` runs the whole sparse
//! step ([`Sparsifier::step_with_record`]: schedule, method, step counter) and
//! gets a record; every other replica replays it
//! ([`Sparsifier::replay`]) on its own weights and its own optimizer:
//!
//! 1. the method's gradient terms at step `t`;
//! 2. the optimizer step with the gradients and weights masked by the masks
//!    *before* the update (unless the method skipped the optimizer);
//! 3. the weights the method wrote, if it wrote any (the deciding replica's
//!    values: given identical weights before, identical after);
//! 4. the optimizer state of dropped and regrown weights zeroed through the
//!    replica's optimizer record ([`crate::optim::burn_state`]);
//! 5. the weights masked by the masks *after* the update.
//!
//! These are exactly the operations of the deciding step on the same inputs, so
//! replicas with bit-identical weights, gradients and optimizer state before a
//! step (and a deterministic optimizer) are bit-identical after it.

use std::collections::HashMap;

use burn::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::module::{Module, ParamId};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;

use crate::error::{Result, SparseError};
use crate::mask::Mask;
use crate::optim::burn_state::{self, StateKeep};
use crate::sparsifier::Sparsifier;
use crate::traverse;

/// What one sparse step with a Burn optimizer did (see the module docs).
#[derive(Clone, Debug)]
pub struct StepRecord {
    /// The step counter the step ran at.
    pub(crate) step: u64,
    /// Whether the optimizer stepped (a method may skip it at its updates).
    pub(crate) optimizer_step: bool,
    /// The masks imposed on gradients and weights around the optimizer step
    /// (empty when the masks were soft).
    pub(crate) keep_before: HashMap<ParamId, Tensor<1>>,
    /// The topology change, if the masks or the weights changed.
    pub(crate) change: Option<TopologyChange>,
}

/// The part of a [`StepRecord`] that a topology update adds.
#[derive(Clone, Debug)]
pub(crate) struct TopologyChange {
    /// The sparse weights the method wrote (every layer), if it wrote any.
    pub(crate) weights: Option<Vec<Vec<f32>>>,
    /// Per changed layer: parameter, shape, positions whose optimizer state is
    /// kept (active before and after); the rest is zeroed.
    pub(crate) reset: Vec<(ParamId, Vec<usize>, Mask)>,
    /// The masks imposed on the weights after the update (`None`: soft masks).
    pub(crate) keep_after: Option<HashMap<ParamId, Tensor<1>>>,
}

impl StepRecord {
    /// The step counter the recorded step ran at.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Whether the recorded step changed the masks or the weights (a topology update).
    pub fn changed_topology(&self) -> bool {
        self.change.is_some()
    }
}

impl Sparsifier {
    /// Takes on `model` (another replica of the model that took the recorded
    /// step) and its own optimizer `optim` the step described by `record`,
    /// with `gradients` (the same all-reduced gradients). Leaves the sparsifier
    /// as it is: its masks and step counter already are the ones after the step.
    ///
    /// Errors when `model`'s parameter ids are not the ids the sparsifier is
    /// bound to (not a clone of the deciding replica), or when the optimizer's
    /// record cannot be rewritten.
    pub fn replay<M: Module>(
        &self,
        record: &StepRecord,
        optim: &mut ModuleOptimizer,
        model: M,
        grads: GradientsParams,
        lr: impl Into<ModuleLearningRate>,
    ) -> Result<M> {
        if traverse::count_ids(&model, &self.ids) != self.ids.len() {
            return Err(SparseError::InvalidConfig(format!(
                "replaying sparse step {}: the replica's parameter ids are not those of the replica that took the step; every replica must be a clone (or fork) of one wrapped model, as burn-train's DistributedDataParallel makes them",
                record.step
            )));
        }
        let grads = traverse::add_grad_terms(&model, grads, &self.ids, self.plan.layers(), &self.terms, record.step);
        let mut model = model;
        if record.optimizer_step {
            let grads = traverse::mask_grads(&model, grads, &record.keep_before);
            model = traverse::apply_masks(optim.step(lr.into(), model, grads), &record.keep_before);
        }
        let Some(change) = &record.change else {
            return Ok(model);
        };
        if let Some(weights) = &change.weights {
            model = traverse::write_weights(model, &self.ids, weights);
        }
        let reset: Vec<StateKeep<'_>> = change
            .reset
            .iter()
            .map(|(id, shape, keep)| StateKeep { id: *id, shape, keep })
            .collect();
        burn_state::zero_state(optim, &reset)?;
        Ok(match &change.keep_after {
            Some(keep) => traverse::apply_masks(model, keep),
            None => model,
        })
    }
}
