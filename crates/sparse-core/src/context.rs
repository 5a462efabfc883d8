//! What a method sees: [`InitContext`] when it sets the first masks and
//! [`StepContext`] at the steps it asked for. Data a method did not ask for is
//! absent, and reading it is an error naming the missing `Needs` flag, never an
//! index into an empty vector. Writing weights goes through `weights_mut`, so the
//! hook knows they changed without the method having to say so.

use crate::error::{Result, SparseError};
use crate::layer::SparseLayer;
use crate::mask::Mask;
use crate::plan::Plan;
use crate::rng::Rng;

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

/// What [`crate::Method::init`] sees.
pub struct InitContext<'a> {
    plan: &'a Plan,
    weights: &'a mut [Vec<f32>],
    weights_changed: bool,
    oracle: Option<&'a mut dyn GradientOracle>,
    seed: u64,
}

impl<'a> InitContext<'a> {
    /// The context of an initialisation without data.
    pub fn new(plan: &'a Plan, weights: &'a mut [Vec<f32>], seed: u64) -> Self {
        Self {
            plan,
            weights,
            weights_changed: false,
            oracle: None,
            seed,
        }
    }

    /// With a gradient oracle on the user's data.
    pub fn with_oracle(mut self, oracle: &'a mut dyn GradientOracle) -> Self {
        self.oracle = Some(oracle);
        self
    }

    /// The plan (layers, distribution, pattern).
    pub fn plan(&self) -> &Plan {
        self.plan
    }

    /// The sparse layers.
    pub fn layers(&self) -> &[SparseLayer] {
        self.plan.layers()
    }

    /// The seed of the run.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The generator for `layer` at step 0 for `purpose`.
    pub fn rng(&self, layer: usize, purpose: &str) -> Rng {
        Rng::for_layer(self.seed, &self.plan.layers()[layer].path, 0, purpose)
    }

    /// The current weights, one flat vector per sparse layer.
    pub fn weights(&self) -> &[Vec<f32>] {
        self.weights
    }

    /// The weights, to change them (the hook then writes them back to the model).
    pub fn weights_mut(&mut self) -> &mut [Vec<f32>] {
        self.weights_changed = true;
        self.weights
    }

    /// Whether [`InitContext::weights_mut`] was called.
    pub fn weights_changed(&self) -> bool {
        self.weights_changed
    }

    /// The gradient oracle; an error saying how to provide data when there is none.
    pub fn oracle(&mut self) -> Result<&mut (dyn GradientOracle + 'a)> {
        self.oracle.as_deref_mut().ok_or(SparseError::NeedsData)
    }

    /// The gradient oracle and the weights together.
    pub fn oracle_and_weights(&mut self) -> Result<(&mut (dyn GradientOracle + 'a), &[Vec<f32>])> {
        let oracle = self.oracle.as_deref_mut().ok_or(SparseError::NeedsData)?;
        Ok((oracle, self.weights))
    }
}

/// What [`crate::Method::on_step`] sees.
pub struct StepContext<'a> {
    step: u64,
    plan: &'a Plan,
    seed: u64,
    masks: &'a mut [Mask],
    weights: Option<&'a mut [Vec<f32>]>,
    weights_changed: bool,
    grads: Option<&'a [Vec<f32>]>,
    extra: Option<&'a [Vec<Vec<f32>>]>,
}

impl<'a> StepContext<'a> {
    /// The context of step `step` with the current `masks` and no data.
    pub fn new(step: u64, plan: &'a Plan, seed: u64, masks: &'a mut [Mask]) -> Self {
        Self {
            step,
            plan,
            seed,
            masks,
            weights: None,
            weights_changed: false,
            grads: None,
            extra: None,
        }
    }

    /// With the weights (given when `Needs::update` is set).
    pub fn with_weights(mut self, weights: &'a mut [Vec<f32>]) -> Self {
        self.weights = Some(weights);
        self
    }

    /// With the dense gradients (given when `Needs::grads` is set).
    pub fn with_grads(mut self, grads: &'a [Vec<f32>]) -> Self {
        self.grads = Some(grads);
        self
    }

    /// With the values of the method's extra parameters, per layer (given with the
    /// weights to methods that reparameterise the model).
    pub fn with_extra(mut self, extra: &'a [Vec<Vec<f32>>]) -> Self {
        self.extra = Some(extra);
        self
    }

    /// The step (0-based count of optimizer steps before this one).
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        self.plan
    }

    /// The sparse layers.
    pub fn layers(&self) -> &[SparseLayer] {
        self.plan.layers()
    }

    /// The generator for `layer` at this step for `purpose`.
    pub fn rng(&self, layer: usize, purpose: &str) -> Rng {
        Rng::for_layer(self.seed, &self.plan.layers()[layer].path, self.step, purpose)
    }

    /// The masks.
    pub fn masks(&self) -> &[Mask] {
        self.masks
    }

    /// The masks, to change the topology.
    pub fn masks_mut(&mut self) -> &mut [Mask] {
        self.masks
    }

    /// The weights, one flat vector per layer.
    pub fn weights(&self) -> Result<&[Vec<f32>]> {
        self.weights
            .as_deref()
            .ok_or_else(|| self.missing("the weights", "Needs::update"))
    }

    /// The weights, to change them (the hook then writes them back to the model).
    pub fn weights_mut(&mut self) -> Result<&mut [Vec<f32>]> {
        let missing = self.missing("the weights", "Needs::update");
        let weights = self.weights.as_deref_mut().ok_or(missing)?;
        self.weights_changed = true;
        Ok(weights)
    }

    /// Whether [`StepContext::weights_mut`] was called.
    pub fn weights_changed(&self) -> bool {
        self.weights_changed
    }

    /// The dense gradients, one flat vector per layer.
    pub fn grads(&self) -> Result<&[Vec<f32>]> {
        self.grads
            .ok_or_else(|| self.missing("the dense gradients", "Needs::grads"))
    }

    /// The values of the extra parameters of layer `l` (e.g. AutoSparse's threshold).
    pub fn extra(&self, l: usize) -> Result<&[Vec<f32>]> {
        let extra = self
            .extra
            .ok_or_else(|| self.missing("the extra parameters", "Needs::update"))?;
        extra.get(l).map(Vec::as_slice).ok_or_else(|| {
            SparseError::InvalidConfig(format!(
                "no extra parameters for layer `{}`; build the model's reparameterization with `Sparsifier::init`",
                self.plan.layers()[l].path
            ))
        })
    }

    fn missing(&self, what: &'static str, flag: &'static str) -> SparseError {
        SparseError::NotRequested {
            what,
            step: self.step,
            flag,
        }
    }
}
