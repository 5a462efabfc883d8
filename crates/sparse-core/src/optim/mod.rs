//! Mask-aware SGD and Adam/AdamW.
//!
//! Burn's `ModuleOptimizer` keeps its state private, so it cannot zero the
//! momentum of pruned weights or reset it for regrown ones. [`MaskedOptimizer`]
//! is a module-level optimizer whose state is ours: for a masked weight it
//! masks the gradient, takes the step, and re-masks the weight, so the weight,
//! its gradient and every optimizer moment are exactly 0 where the mask is 0
//! (a zero gradient keeps a zero moment at zero). After a topology update
//! [`MaskedOptimizer::reset_inactive`] zeroes the moments of dropped weights;
//! grown weights were inactive, so theirs are already 0 (rigl `reset_momentum`,
//! jaxpruner `restart_inner_state`).
//!
//! With all-dense masks the arithmetic is Burn 0.22's `Sgd`, `Adam` and `AdamW`
//! operation for operation (same first-step momentum rule, same bias-correction
//! form), so results match Burn's optimizers.
//!
//! Any Burn optimizer can be used instead, through
//! [`crate::Sparsifier::step_with`] or [`crate::SparseOptimizer`]: [`burn_state`]
//! zeroes the state of changed weights in Burn's `ModuleOptimizer` through its
//! record. The optimizers here stay the fast path: their state is on the device
//! and reset with one multiply, with no host round trip.
//!
//! Files: [`config`] (settings and their validation), `state` (the per-parameter
//! store, its reset, export and import), `rules` (the two update rules); this
//! file holds the optimizer and the walk over a module's parameters.

pub mod burn_state;
mod config;
mod rules;
mod state;

use std::collections::HashMap;

use burn::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::module::{Module, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};

pub use config::{AdamSettings, OptimizerConfig, SgdSettings};
pub use state::SavedParamState;

use crate::param_value::{ParamContext, detached, on_device};
use crate::walk::{self, ParamPath, PathMapper};
use rules::{adam_update, sgd_update};
use state::ParamState;

/// A module-level optimizer whose state is zero wherever a mask is zero.
#[derive(Clone, Debug)]
pub struct MaskedOptimizer {
    config: OptimizerConfig,
    states: HashMap<ParamId, ParamState>,
    pending: HashMap<String, SavedParamState>,
    decay_overrides: Vec<(String, f64)>,
}

impl MaskedOptimizer {
    /// An optimizer with no state yet.
    pub(crate) fn new(config: OptimizerConfig) -> Self {
        Self {
            config,
            states: HashMap::new(),
            pending: HashMap::new(),
            decay_overrides: Vec::new(),
        }
    }
}

impl MaskedOptimizer {
    /// Uses `weight_decay` instead of the configured one for parameters whose path
    /// matches the glob `pattern` (0 exempts them; e.g. AutoSparse's thresholds).
    /// The first matching override wins.
    pub fn override_decay(&mut self, pattern: impl Into<String>, weight_decay: f64) {
        self.decay_overrides.push((pattern.into(), weight_decay));
    }

    /// The configuration.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// One step over every parameter of `module` that has a gradient.
    ///
    /// `keep` maps a parameter to its flattened mask (1.0 = active, 0.0 = pruned);
    /// for those parameters the gradient is multiplied by the mask before the step
    /// (a multiply is the fastest masking op on every backend). Pruned weights
    /// must be 0 already (the hook guarantees it); they then stay exactly 0.
    pub fn step<M: Module>(
        &mut self,
        lr: impl Into<ModuleLearningRate>,
        module: M,
        grads: GradientsParams,
        keep: &HashMap<ParamId, Tensor<1>>,
    ) -> M {
        let mut mapper = StepMapper {
            optim: self,
            lr: lr.into(),
            grads,
            keep,
        };
        walk::map(module, &mut mapper)
    }
}

/// One update of `config`'s rule: the new weights from weights `w`, their
/// gradient `g`, the state `slots` (`config.slots()` tensors shaped like `w`:
/// SGD's velocity, Adam's first and second moment; updated in place) and the
/// number of steps taken before this one (`time`). `decay` overrides the
/// configured weight decay. An empty `slots` starts from zero state; any
/// other length than `config.slots()` is a caller's bug and panics.
///
/// The one implementation of the rules: [`MaskedOptimizer`] applies it to the
/// dense (masked) tensors, the sparse execution path to vectors of active
/// values, so both do the same f32 operations in the same order.
pub fn update_values<const D: usize>(
    config: &OptimizerConfig,
    lr: f64,
    decay: Option<f64>,
    w: Tensor<D>,
    g: Tensor<D>,
    slots: &mut Vec<Tensor<D>>,
    time: u64,
) -> Tensor<D> {
    if slots.is_empty() {
        slots.extend((0..config.slots()).map(|_| w.zeros_like()));
    }
    assert_eq!(
        slots.len(),
        config.slots(),
        "optimizer state has {} tensors, the rule keeps {}",
        slots.len(),
        config.slots()
    );
    match config {
        OptimizerConfig::Sgd(s) => sgd_update(s, lr, decay, w, g, slots, time),
        OptimizerConfig::Adam(s) => adam_update(s, lr, decay, w, g, slots, time),
    }
}

struct StepMapper<'a> {
    optim: &'a mut MaskedOptimizer,
    lr: ModuleLearningRate,
    grads: GradientsParams,
    keep: &'a HashMap<ParamId, Tensor<1>>,
}

impl PathMapper for StepMapper<'_> {
    fn map<const D: usize>(&mut self, path: &ParamPath, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let context = ParamContext::capture(&tensor);
        let weight = detached(tensor);
        let device = weight.device();
        let dims = weight.dims();
        let grad = on_device(grad, &device);
        let path = path.dotted();
        let lr = self.lr.lr_from_param(id, Some(&path));
        let grad = match self.keep.get(&id) {
            Some(m) => grad * on_device(m.clone(), &device).reshape(dims),
            None => grad,
        };

        let optim = &mut *self.optim;
        let numel: usize = dims.iter().product();
        let mut state = optim.states.remove(&id).or_else(|| {
            optim.pending.remove(&path).map(|s| ParamState {
                path: path.clone(),
                time: s.time,
                slots: s
                    .slots
                    .into_iter()
                    .map(|v| Tensor::from_data(TensorData::new(v, [numel]), &device))
                    .collect(),
            })
        });
        let state = state.get_or_insert_with(|| ParamState {
            path: path.clone(),
            time: 0,
            slots: (0..optim.config.slots())
                .map(|_| Tensor::zeros([numel], &device))
                .collect(),
        });
        let mut slots: Vec<Tensor<D>> = state
            .slots
            .drain(..)
            .map(|s| on_device(s, &device).reshape(dims))
            .collect();

        let decay = optim
            .decay_overrides
            .iter()
            .find(|(p, _)| crate::discovery::glob_match(p, &path))
            .map(|(_, d)| *d);
        let updated = update_values(&optim.config, lr, decay, weight, grad, &mut slots, state.time);
        state.time += 1;
        state.slots = slots.into_iter().map(|s| s.reshape([numel])).collect();
        let state = state.clone();
        optim.states.insert(id, state);
        Param::from_mapped_value(id, context.restore(updated, id), mapper)
    }
}
