//! SR-STE: N:M fine-grained structured sparsity learned from scratch
//! (Zhou et al., "Learning N:M Fine-grained Structured Sparse Neural Networks
//! From Scratch", ICLR 2021; reference `aojunzz/NM-sparsity`).
//!
//! The dense weights are kept; every forward pass uses `W̃ = W ⊙ M(W)`, where
//! `M(W)` keeps the `N` largest `|w|` of every group of `M` consecutive fan-in
//! weights (along input channels, channel-last order). The backward pass is the
//! straight-through estimator plus the sparse-refined term:
//!
//! ```text
//! ∂L/∂W ← ∂L/∂W̃ + λ_W · (1 − M(W)) ⊙ W,     λ_W = 2e-4 (plain STE: λ_W = 0)
//! ```
//!
//! Implementation: a Burn `Reparameterization` computes `W̃ = sg(W ⊙ M) + (W − sg(W))`
//! (forward `W ⊙ M`, gradient identity); the hook adds the λ term to the
//! gradient before the optimizer step ([`sparse_core::method::GradTerm::NmDecay`]).
//! The reported masks (every `report_interval` steps) are `M(W)`. The plan's pattern
//! must be the same N:M. The reference keeps the first layer and the classifier
//! dense: use the layer filter's `skip_first` / `skip_last`.

use std::collections::HashMap;

use burn::config::Config;
use burn::module::{Module, Param, Reparameterization, Reparameterizer};
use burn::tensor::Tensor;
use sparse_core::method::{GradTerm, InitContext, Method, Needs, StepContext};
use sparse_core::pattern::nm_keep_tensor;
use sparse_core::{Mask, Pattern, Result, SparseError, SparseLayer};

use crate::init::magnitudes;

/// SR-STE settings.
#[derive(Config, Debug)]
pub struct SrSteConfig {
    /// Kept per group.
    #[config(default = 2)]
    pub n: usize,
    /// Group size.
    #[config(default = 4)]
    pub m: usize,
    /// λ_W of the sparse-refined term.
    #[config(default = 2e-4)]
    pub lambda: f32,
    /// Steps between refreshes of the reported masks.
    #[config(default = 100)]
    pub report_interval: u64,
}

/// The forward N:M mask of one weight.
#[derive(Module, Debug)]
pub struct NmForward {
    n: usize,
    m: usize,
    #[module(skip)]
    layer: SparseLayer,
}

impl Reparameterization for NmForward {
    const NAME: &'static str = "srste";

    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        let fixed = base.clone().detach();
        let keep = nm_keep_tensor(&self.layer, fixed.clone(), self.n, self.m);
        let masked = fixed.clone().mask_fill(keep.bool_not(), 0.0);
        masked + (base - fixed)
    }
}

struct Attach {
    layers: HashMap<String, SparseLayer>,
    n: usize,
    m: usize,
}

impl Reparameterizer for Attach {
    type Reparam = NmForward;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<NmForward>) {
        match self.layers.get(path) {
            Some(layer) => (
                param,
                Some(NmForward {
                    n: self.n,
                    m: self.m,
                    layer: layer.clone(),
                }),
            ),
            None => (param, None),
        }
    }
}

/// SR-STE.
#[derive(Debug)]
pub struct SrSte {
    config: SrSteConfig,
}

impl SrSte {
    /// SR-STE with `config`.
    pub fn new(config: SrSteConfig) -> Self {
        Self { config }
    }

    /// The pattern SR-STE needs in the sparsity config.
    pub fn pattern(&self) -> Pattern {
        Pattern::NM {
            n: self.config.n,
            m: self.config.m,
        }
    }

    /// Makes the forward pass of each of `layers` use its N:M-masked weight.
    pub fn attach<M: Module>(&self, model: M, layers: &[SparseLayer]) -> M {
        model.apply_reparameterization(Attach {
            layers: layers.iter().map(|l| (l.path.clone(), l.clone())).collect(),
            n: self.config.n,
            m: self.config.m,
        })
    }

    fn report(&self, plan: &sparse_core::Plan, weights: &[Vec<f32>]) -> Vec<Mask> {
        let pattern = self.pattern();
        plan.layers()
            .iter()
            .zip(weights)
            .map(|(layer, w)| pattern.select(layer, &magnitudes(w), layer.numel() / self.config.m * self.config.n))
            .collect()
    }
}

impl Method for SrSte {
    fn name(&self) -> &'static str {
        "srste"
    }

    fn init(&mut self, ctx: &mut InitContext<'_>, masks: &mut [Mask]) -> Result<()> {
        if *ctx.plan.pattern() != self.pattern() {
            return Err(SparseError::method(
                "srste",
                format!(
                    "trains {}:{} sparsity: set the pattern to {}:{}",
                    self.config.n, self.config.m, self.config.n, self.config.m
                ),
            ));
        }
        masks.clone_from_slice(&self.report(ctx.plan, ctx.weights));
        Ok(())
    }

    fn hard_masks(&self) -> bool {
        false
    }

    fn grad_terms(&self) -> Vec<GradTerm> {
        vec![GradTerm::NmDecay {
            n: self.config.n,
            m: self.config.m,
            lambda: self.config.lambda,
        }]
    }

    fn needs(&self, step: u64) -> Needs {
        Needs {
            grads: false,
            update: step > 0 && step.is_multiple_of(self.config.report_interval.max(1)),
            skip_optimizer: false,
        }
    }

    fn on_step(&mut self, ctx: &mut StepContext<'_>) -> Result<()> {
        let masks = self.report(ctx.plan, ctx.weights);
        ctx.masks.clone_from_slice(&masks);
        Ok(())
    }
}
