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

use std::collections::HashMap;

use burn::config::Config;
use burn::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::module::{Module, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{GradientCheckpointingStrategy, Tensor, TensorData};

use crate::error::{Result, SparseError};
use crate::walk::{self, ParamPath, PathMapper};

/// SGD settings (PyTorch semantics: dampening 0 by default, unlike Burn's 0.1).
#[derive(Config, Debug, PartialEq)]
pub struct SgdSettings {
    /// Momentum μ (0 disables momentum).
    #[config(default = 0.0)]
    pub momentum: f64,
    /// Dampening applied to the gradient in the velocity update (not on the first step).
    #[config(default = 0.0)]
    pub dampening: f64,
    /// Nesterov momentum.
    #[config(default = false)]
    pub nesterov: bool,
    /// L2 penalty added to the gradient.
    #[config(default = 0.0)]
    pub weight_decay: f64,
}

/// Adam / AdamW settings.
#[derive(Config, Debug, PartialEq)]
pub struct AdamSettings {
    /// β1.
    #[config(default = 0.9)]
    pub beta_1: f32,
    /// β2.
    #[config(default = 0.999)]
    pub beta_2: f32,
    /// ε (PyTorch's 1e-8; Burn's default is 1e-5).
    #[config(default = 1e-8)]
    pub epsilon: f32,
    /// Weight decay: an L2 term in the gradient (Adam) or decoupled (AdamW).
    #[config(default = 0.0)]
    pub weight_decay: f32,
    /// Decoupled weight decay (AdamW, Loshchilov & Hutter 2019).
    #[config(default = false)]
    pub decoupled: bool,
}

/// Which optimizer.
#[derive(Config, Debug, PartialEq)]
pub enum OptimizerConfig {
    /// Stochastic gradient descent with optional momentum.
    Sgd(SgdSettings),
    /// Adam or AdamW.
    Adam(AdamSettings),
}

impl OptimizerConfig {
    /// SGD with momentum `μ` (PyTorch semantics) and L2 weight decay.
    pub fn sgd(momentum: f64, weight_decay: f64) -> Self {
        Self::Sgd(
            SgdSettings::new()
                .with_momentum(momentum)
                .with_weight_decay(weight_decay),
        )
    }

    /// Adam with PyTorch defaults.
    pub fn adam() -> Self {
        Self::Adam(AdamSettings::new())
    }

    /// Number of state tensors per parameter.
    fn slots(&self) -> usize {
        match self {
            Self::Sgd(s) if s.momentum == 0.0 => 0,
            Self::Sgd(_) => 1,
            Self::Adam(_) => 2,
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(SparseError::InvalidConfig(m));
        match self {
            Self::Sgd(s) if !(0.0..1.0).contains(&s.momentum) || !(0.0..=1.0).contains(&s.dampening) => bad(format!(
                "SGD momentum {} must be in [0, 1) and dampening {} in [0, 1]",
                s.momentum, s.dampening
            )),
            Self::Sgd(s) if s.weight_decay.is_nan() || s.weight_decay < 0.0 => {
                bad(format!("weight decay {} must be >= 0", s.weight_decay))
            }
            Self::Adam(a) if a.epsilon.is_nan() || a.epsilon <= 0.0 => {
                bad(format!("Adam epsilon {} must be > 0 (1e-8 is usual)", a.epsilon))
            }
            Self::Adam(a) if !(0.0..1.0).contains(&a.beta_1) || !(0.0..1.0).contains(&a.beta_2) => {
                bad(format!("Adam betas ({}, {}) must be in [0, 1)", a.beta_1, a.beta_2))
            }
            Self::Adam(a) if a.weight_decay.is_nan() || a.weight_decay < 0.0 => {
                bad(format!("weight decay {} must be >= 0", a.weight_decay))
            }
            _ => Ok(()),
        }
    }

    /// Builds the optimizer.
    pub fn init(&self) -> MaskedOptimizer {
        MaskedOptimizer {
            config: self.clone(),
            states: HashMap::new(),
            pending: HashMap::new(),
            decay_overrides: Vec::new(),
        }
    }
}

/// The optimizer state of one parameter.
#[derive(Clone, Debug)]
struct ParamState {
    path: String,
    time: u64,
    slots: Vec<Tensor<1>>,
}

/// A parameter's state copied to the host, keyed by its path (for saving).
#[derive(Clone, Debug, PartialEq)]
pub struct SavedParamState {
    /// Dotted parameter path.
    pub path: String,
    /// Steps taken.
    pub time: u64,
    /// Flattened state tensors (SGD: velocity; Adam: first, second moment).
    pub slots: Vec<Vec<f32>>,
}

/// A module-level optimizer whose state is zero wherever a mask is zero.
#[derive(Clone, Debug)]
pub struct MaskedOptimizer {
    config: OptimizerConfig,
    states: HashMap<ParamId, ParamState>,
    pending: HashMap<String, SavedParamState>,
    decay_overrides: Vec<(String, f64)>,
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

    /// Zeroes the state of every pruned position of the given weights (call after a
    /// topology update): `(parameter id, path, host mask, device mask)` each. State
    /// restored from a checkpoint and not yet moved to its device is masked on the host.
    pub fn reset_inactive(&mut self, changed: &[(ParamId, &str, &crate::mask::Mask, Tensor<1>)]) {
        for (id, path, mask, keep) in changed {
            if let Some(state) = self.states.get_mut(id) {
                // moved out first, so a backend may multiply in place
                let slots = std::mem::take(&mut state.slots);
                state.slots = slots.into_iter().map(|s| s * keep.clone()).collect();
            } else if let Some(saved) = self.pending.get_mut(*path) {
                for slot in &mut saved.slots {
                    mask.apply(slot);
                }
            }
        }
    }

    /// Forgets every parameter's state (a new training run).
    pub fn clear_state(&mut self) {
        self.states.clear();
        self.pending.clear();
    }

    /// Re-keys the state of parameters that got new ids (a rebuilt or reloaded
    /// model), by path.
    pub fn rekey(&mut self, ids_by_path: &HashMap<String, ParamId>) {
        let states = std::mem::take(&mut self.states);
        for (old, state) in states {
            let id = ids_by_path.get(&state.path).copied().unwrap_or(old);
            self.states.insert(id, state);
        }
    }

    /// The current state tensors of a parameter (flattened), if it has taken a step.
    pub fn state_of(&self, id: ParamId) -> Option<Vec<Tensor<1>>> {
        self.states.get(&id).map(|s| s.slots.clone())
    }

    /// Copies every parameter's state to the host, sorted by path.
    pub fn export(&self) -> Result<Vec<SavedParamState>> {
        let mut out: Vec<SavedParamState> = self
            .states
            .values()
            .map(|s| {
                Ok(SavedParamState {
                    path: s.path.clone(),
                    time: s.time,
                    slots: s
                        .slots
                        .iter()
                        .map(|t| crate::host::to_vec(t.clone()))
                        .collect::<Result<_>>()?,
                })
            })
            .collect::<Result<_>>()?;
        out.extend(self.pending.values().cloned());
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Replaces the state by saved state; each entry is moved to its parameter's
    /// device when that parameter next steps. `numels` gives every parameter's size
    /// by path, to reject state from another model.
    pub fn import(&mut self, saved: Vec<SavedParamState>, numels: &HashMap<String, usize>) -> Result<()> {
        let slots = self.config.slots();
        for s in &saved {
            let numel = numels.get(&s.path).ok_or_else(|| {
                SparseError::InvalidConfig(format!(
                    "optimizer state for `{}`, which this model does not have",
                    s.path
                ))
            })?;
            if s.slots.len() != slots || s.slots.iter().any(|v| v.len() != *numel) {
                return Err(SparseError::InvalidConfig(format!(
                    "optimizer state for `{}` does not fit: {} slots of {:?} values, expected {slots} of {numel}",
                    s.path,
                    s.slots.len(),
                    s.slots.iter().map(Vec::len).collect::<Vec<_>>()
                )));
            }
        }
        self.states.clear();
        self.pending = saved.into_iter().map(|s| (s.path.clone(), s)).collect();
        Ok(())
    }
}

struct StepMapper<'a> {
    optim: &'a mut MaskedOptimizer,
    lr: ModuleLearningRate,
    grads: GradientsParams,
    keep: &'a HashMap<ParamId, Tensor<1>>,
}

/// What a parameter tensor carries besides its value, restored after an update
/// (like Burn's private `ParameterContext`).
pub(crate) struct ParamContext {
    autodiff: bool,
    require_grad: bool,
    distributed: bool,
    checkpointing: Option<GradientCheckpointingStrategy>,
}

impl ParamContext {
    pub(crate) fn capture<const D: usize>(t: &Tensor<D>) -> Self {
        Self {
            autodiff: t.is_autodiff(),
            require_grad: t.is_require_grad(),
            distributed: t.is_distributed(),
            checkpointing: t.gradient_checkpointing_strategy(),
        }
    }

    pub(crate) fn restore<const D: usize>(self, value: Tensor<D>, id: ParamId) -> Tensor<D> {
        if !self.autodiff {
            return value;
        }
        let mut t = Tensor::from_inner(value);
        if let Some(s) = self.checkpointing {
            t = t.with_gradient_checkpointing_strategy(s);
        }
        if self.require_grad {
            t = t.require_grad();
        }
        if self.distributed {
            t = t.set_distributed(id);
        }
        t
    }
}

/// Detached value of a parameter tensor (the inner tensor on autodiff devices).
pub(crate) fn detached<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    if t.is_autodiff() { t.inner() } else { t }
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
        let updated = match &optim.config {
            OptimizerConfig::Sgd(s) => sgd_update(s, lr, decay, weight, grad, &mut slots, state.time),
            OptimizerConfig::Adam(s) => adam_update(s, lr, decay, weight, grad, &mut slots, state.time),
        };
        state.time += 1;
        state.slots = slots.into_iter().map(|s| s.reshape([numel])).collect();
        let state = state.clone();
        optim.states.insert(id, state);
        Param::from_mapped_value(id, context.restore(updated, id), mapper)
    }
}

/// Moves `t` to `device` unless it is there already.
pub(crate) fn on_device<const D: usize>(t: Tensor<D>, device: &burn::tensor::Device) -> Tensor<D> {
    if &t.device() == device { t } else { t.to_device(device) }
}

/// Burn 0.22 `Sgd::step` with momentum state in `slots[0]` (a zero dampening
/// skips its multiplication by 1, which changes no bit; operand order as Burn's,
/// so every value is bit-identical).
fn sgd_update<const D: usize>(
    s: &SgdSettings,
    lr: f64,
    decay: Option<f64>,
    w: Tensor<D>,
    mut g: Tensor<D>,
    slots: &mut Vec<Tensor<D>>,
    time: u64,
) -> Tensor<D> {
    let weight_decay = decay.unwrap_or(s.weight_decay);
    if weight_decay != 0.0 {
        g = w.clone().mul_scalar(weight_decay as f32).add(g);
    }
    if s.momentum != 0.0 {
        let mu = s.momentum as f32;
        // moved out, not cloned, so the backend may update the buffers in place
        let previous = std::mem::take(slots).pop().expect("SGD keeps one momentum slot");
        let original = s.nesterov.then(|| g.clone());
        let velocity = if time == 0 {
            g
        } else if s.dampening == 0.0 {
            // g·1 is g bit for bit: skip Burn's pass
            g.add(previous.mul_scalar(mu))
        } else {
            g.mul_scalar(1.0 - s.dampening).add(previous.mul_scalar(mu))
        };
        g = match original {
            Some(original) => velocity.clone().mul_scalar(mu).add(original),
            None => velocity.clone(),
        };
        slots.push(velocity);
    }
    w - g.mul_scalar(lr)
}

/// Burn 0.22 `Adam::step` / `AdamW::step` with moments in `slots[0..2]`.
fn adam_update<const D: usize>(
    s: &AdamSettings,
    lr: f64,
    decay: Option<f64>,
    w: Tensor<D>,
    mut g: Tensor<D>,
    slots: &mut [Tensor<D>],
    time: u64,
) -> Tensor<D> {
    let weight_decay = decay.map_or(s.weight_decay, |d| d as f32);
    if !s.decoupled && weight_decay != 0.0 {
        g = w.clone().mul_scalar(weight_decay).add(g);
    }
    let m = slots[0]
        .clone()
        .mul_scalar(s.beta_1)
        .add(g.clone().mul_scalar(1.0 - s.beta_1));
    let v = slots[1]
        .clone()
        .mul_scalar(s.beta_2)
        .add(g.square().mul_scalar(1.0 - s.beta_2));
    slots[0] = m.clone();
    slots[1] = v.clone();
    let t = (time + 1) as i32;
    if s.decoupled {
        let m_hat = m.div_scalar(1f32 - s.beta_1.powi(t));
        let v_hat = v.div_scalar(1f32 - s.beta_2.powi(t));
        let delta = m_hat.div(v_hat.sqrt().add_scalar(s.epsilon));
        let rate = lr * f64::from(weight_decay);
        let decayed = if rate == 0.0 { w } else { w.mul_scalar(1.0 - rate) };
        decayed - delta.mul_scalar(lr)
    } else {
        let bc2_sqrt = (1.0 - s.beta_2.powi(t)).sqrt();
        let factor = bc2_sqrt / (1.0 - s.beta_1.powi(t));
        let delta = m.mul_scalar(factor).div(v.sqrt().add_scalar(s.epsilon * bc2_sqrt));
        w - delta.mul_scalar(lr)
    }
}
