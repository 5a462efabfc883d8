//! The `Method` trait: what a sparse-training algorithm implements.
//!
//! A method decides masks: once at initialisation (possibly from data or
//! gradients) and then at the steps it asks for, seeing the weights and the
//! dense gradient of every sparse layer as host vectors. Everything else (masking
//! gradients, the optimizer step, re-masking, resetting optimizer state of
//! changed weights, bookkeeping) is done by the [`crate::Sparsifier`] hook.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::layer::SparseLayer;
use crate::mask::Mask;
use crate::plan::Plan;
use crate::rng::Rng;

/// What a method needs at a step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// Call [`Method::on_step`] with the dense gradients of the sparse weights.
    pub grads: bool,
    /// Call [`Method::on_step`] with the current weights; it may change masks.
    pub update: bool,
    /// Skip the optimizer step on this step (the topology update then sees the
    /// weights before the step, as rigl's TF reference and jaxpruner
    /// `skip_gradients=True` do).
    pub skip_optimizer: bool,
}

impl Needs {
    /// Nothing this step.
    pub const NONE: Self = Self {
        grads: false,
        update: false,
        skip_optimizer: false,
    };

    /// Whether `on_step` must be called.
    pub fn any(&self) -> bool {
        self.grads || self.update
    }
}

/// Extra information a method asks of the gradient oracle.
#[derive(Clone, Debug, PartialEq)]
pub struct GradRequest {
    /// Divide the logits by this temperature before the loss (GraSP uses 200).
    pub temperature: f32,
    /// Use this many samples of every class (GraSP), or the caller's batch (`None`).
    pub samples_per_class: Option<usize>,
}

impl Default for GradRequest {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            samples_per_class: None,
        }
    }
}

/// Computes dense gradients of the loss on the user's data, for data-driven
/// initialisation (SNIP, GraSP).
pub trait GradientOracle {
    /// Gradients of every sparse layer (flat, one vector per layer), at the
    /// model's weights or, if `weights` is given, with the sparse weights replaced
    /// by those values (other parameters unchanged).
    fn gradients(&mut self, weights: Option<&[Vec<f32>]>, request: &GradRequest) -> Result<Vec<Vec<f32>>>;
}

/// What [`Method::init`] sees.
pub struct InitContext<'a> {
    /// The plan (layers, distribution, pattern).
    pub plan: &'a Plan,
    /// Current weights, one flat vector per sparse layer.
    pub weights: &'a mut [Vec<f32>],
    /// Set when the method changed `weights` (e.g. a re-initialisation).
    pub weights_changed: bool,
    /// Gradient oracle, when the caller provided data.
    pub oracle: Option<&'a mut dyn GradientOracle>,
    /// The seed of the run.
    pub seed: u64,
}

impl InitContext<'_> {
    /// The sparse layers.
    pub fn layers(&self) -> &[SparseLayer] {
        self.plan.layers()
    }

    /// The generator for `layer` at step 0 for `purpose`.
    pub fn rng(&self, layer: usize, purpose: &str) -> Rng {
        Rng::for_layer(self.seed, &self.plan.layers()[layer].path, 0, purpose)
    }
}

/// What [`Method::on_step`] sees.
pub struct StepContext<'a> {
    /// The step (0-based count of optimizer steps before this one).
    pub step: u64,
    /// The plan.
    pub plan: &'a Plan,
    /// Weights (when `Needs::update`), else empty.
    pub weights: &'a mut [Vec<f32>],
    /// Set when the method changed `weights`.
    pub weights_changed: bool,
    /// Dense gradients (when `Needs::grads`), else empty.
    pub grads: &'a [Vec<f32>],
    /// The masks; change them to change the topology.
    pub masks: &'a mut [Mask],
    /// Values of the extra parameters the method asked for (by path), e.g.
    /// AutoSparse's thresholds.
    pub extra: &'a BTreeMap<String, Vec<f32>>,
    /// The seed of the run.
    pub seed: u64,
}

impl StepContext<'_> {
    /// The sparse layers.
    pub fn layers(&self) -> &[SparseLayer] {
        self.plan.layers()
    }

    /// The generator for `layer` at this step for `purpose`.
    pub fn rng(&self, layer: usize, purpose: &str) -> Rng {
        Rng::for_layer(self.seed, &self.plan.layers()[layer].path, self.step, purpose)
    }
}

/// A term a method adds to the gradient of every sparse weight before the
/// optimizer step (computed on the device, every step).
#[derive(Clone, Debug, PartialEq)]
pub enum GradTerm {
    /// SR-STE (Zhou et al. 2021): `+ λ·(1 − M)⊙W` with `M` the top-`n` of every group
    /// of `m` fan-in weights by `|W|` (see [`crate::pattern::nm_keep_tensor`]).
    NmDecay {
        /// Kept per group.
        n: usize,
        /// Group size.
        m: usize,
        /// λ_W.
        lambda: f32,
    },
    /// L1 penalty `λ·Σ|W|`: `+ λ·sign(W)`.
    L1 {
        /// λ.
        lambda: f32,
    },
    /// Group lasso over output neurons `λ·Σ_i ‖W_i‖₂`: `+ λ·W_i/‖W_i‖₂` (0 for a zero neuron).
    GroupLasso {
        /// λ.
        lambda: f32,
    },
}

/// A method's state that must survive a checkpoint (counters, accumulators).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MethodState {
    /// Small values (counters, flags, schedule positions).
    pub values: BTreeMap<String, serde_json::Value>,
    /// Float arrays (e.g. accumulated gradients), keyed by name.
    #[serde(skip)]
    pub arrays: BTreeMap<String, Vec<f32>>,
}

/// A sparse-training algorithm.
///
/// Implementations are one file each in `sparse-methods`. Masks given to and
/// returned from a method must obey the plan's pattern and, unless the method
/// changes sparsity on purpose (GMP, LTH), keep each layer's count.
pub trait Method: Send {
    /// Short name (`"rigl"`).
    fn name(&self) -> &'static str;

    /// Called at the start of every step, before anything else.
    fn begin_step(&mut self, step: u64) {
        let _ = step;
    }

    /// Whether the masks are hard: gradients of pruned weights are zeroed and
    /// pruned weights kept at 0 (true for every method but those that mask inside
    /// the forward pass, such as AutoSparse and SR-STE, whose masks only report).
    fn hard_masks(&self) -> bool {
        true
    }

    /// Glob patterns of other parameters whose values `on_step` needs (`ctx.extra`).
    fn extra_params(&self) -> Vec<String> {
        Vec::new()
    }

    /// Weight-decay overrides `(path glob, decay)` for the optimizer (e.g. AutoSparse's
    /// thresholds), applied when the `Sparsifier` is built.
    fn decay_overrides(&self) -> Vec<(String, f64)> {
        Vec::new()
    }

    /// Terms to add to the sparse weights' gradients before every optimizer step.
    fn grad_terms(&self) -> Vec<GradTerm> {
        Vec::new()
    }

    /// Sets the initial masks in `masks` (given all-active).
    fn init(&mut self, ctx: &mut InitContext<'_>, masks: &mut [Mask]) -> Result<()>;

    /// What the method needs at step `step`.
    fn needs(&self, step: u64) -> Needs {
        let _ = step;
        Needs::NONE
    }

    /// Called at the steps where [`Method::needs`] asks for data.
    fn on_step(&mut self, ctx: &mut StepContext<'_>) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// State to checkpoint.
    fn save_state(&self) -> MethodState {
        MethodState::default()
    }

    /// Restores [`Method::save_state`]'s output.
    fn load_state(&mut self, state: MethodState) -> Result<()> {
        let _ = state;
        Ok(())
    }

    /// The drop fraction the method would use at `step` (for reporting), if any.
    fn drop_fraction(&self, step: u64) -> Option<f64> {
        let _ = step;
        None
    }
}

impl<T: Method + ?Sized> Method for Box<T> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn begin_step(&mut self, step: u64) {
        (**self).begin_step(step)
    }
    fn hard_masks(&self) -> bool {
        (**self).hard_masks()
    }
    fn extra_params(&self) -> Vec<String> {
        (**self).extra_params()
    }
    fn decay_overrides(&self) -> Vec<(String, f64)> {
        (**self).decay_overrides()
    }
    fn grad_terms(&self) -> Vec<GradTerm> {
        (**self).grad_terms()
    }
    fn init(&mut self, ctx: &mut InitContext<'_>, masks: &mut [Mask]) -> Result<()> {
        (**self).init(ctx, masks)
    }
    fn needs(&self, step: u64) -> Needs {
        (**self).needs(step)
    }
    fn on_step(&mut self, ctx: &mut StepContext<'_>) -> Result<()> {
        (**self).on_step(ctx)
    }
    fn save_state(&self) -> MethodState {
        (**self).save_state()
    }
    fn load_state(&mut self, state: MethodState) -> Result<()> {
        (**self).load_state(state)
    }
    fn drop_fraction(&self, step: u64) -> Option<f64> {
        (**self).drop_fraction(step)
    }
}
