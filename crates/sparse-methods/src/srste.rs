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
//! Implementation: a [`ForwardRule`] computes `W̃ = sg(W ⊙ M) + (W − sg(W))`
//! (forward `W ⊙ M`, gradient identity) and a [`GradTerm`] adds the λ term to the
//! gradient before the optimizer step; the `Sparsifier` attaches both. N and M
//! come from the run's pattern, which must be N:M (e.g. `2:4` at sparsity 0.5).
//! The reported masks (every `report_interval` steps) are `M(W)`. The reference
//! keeps the first layer and the classifier dense: use the layer filter's
//! `skip_first` / `skip_last`.

use std::sync::Arc;

use burn::config::Config;
use burn::tensor::{IndexingUpdateOp, Tensor};
use sparse_core::method::{InitContext, Method, Needs, StepContext};
use sparse_core::reparam::{ForwardRule, Reparameterize};
use sparse_core::{GradTerm, LayerKind, Mask, Pattern, Plan, Result, SparseError, SparseLayer};

use crate::registry::{BuildContext, MethodSpec, Switch};
use crate::scores::magnitudes;

/// SR-STE settings (N and M come from the run's N:M pattern).
#[derive(Config, Debug, PartialEq)]
pub struct SrSteConfig {
    /// λ_W of the sparse-refined term (0 = plain straight-through).
    #[config(default = 2e-4)]
    pub lambda: f64,
    /// Steps between refreshes of the reported masks.
    #[config(default = 100)]
    pub report_interval: u64,
}

/// The N:M mask of a weight tensor computed on its device: `true` at the `n`
/// largest `|w|` of every group of `m` consecutive fan-in weights (channel-last
/// order, as [`SparseLayer::flat`]). Used inside the forward pass (SR-STE), where
/// a host round trip per step would be too slow. Ties follow the backend's `topk`.
pub fn nm_keep_tensor<const D: usize>(
    layer: &SparseLayer,
    weight: Tensor<D>,
    n: usize,
    m: usize,
) -> Tensor<D, burn::tensor::Bool> {
    let dims = weight.dims();
    let (neurons, fan_in) = (layer.neurons(), layer.fan_in());
    let (cin, kpos) = (layer.in_channels(), layer.kernel_positions());
    let rows: Tensor<2> = match layer.kind {
        LayerKind::Linear => weight.reshape([fan_in, neurons]).transpose(),
        LayerKind::Conv => weight
            .reshape([neurons, cin, kpos])
            .swap_dims(1, 2)
            .reshape([neurons, fan_in]),
    };
    let groups = rows.abs().reshape([neurons * fan_in / m, m]);
    let (_, idx) = groups.clone().topk_with_indices(n, 1);
    let ones = Tensor::<2>::ones([neurons * fan_in / m, n], &groups.device());
    let keep = groups
        .zeros_like()
        .scatter(1, idx, ones, IndexingUpdateOp::Assign)
        .reshape([neurons, fan_in]);
    let keep: Tensor<D> = match layer.kind {
        LayerKind::Linear => keep.transpose().reshape(dims),
        LayerKind::Conv => keep.reshape([neurons, kpos, cin]).swap_dims(1, 2).reshape(dims),
    };
    keep.equal_elem(1.0)
}

/// The forward weight `W ⊙ M(W)` with a straight-through gradient.
#[derive(Debug)]
struct NmForward {
    n: usize,
    m: usize,
}

impl ForwardRule for NmForward {
    fn forward(&self, layer: &SparseLayer, base: Tensor<1>, _extra: &[Tensor<1>]) -> Tensor<1> {
        let fixed = base.clone().detach();
        let keep = nm_keep_tensor(layer, fixed.clone(), self.n, self.m);
        let masked = fixed.clone().mask_fill(keep.bool_not(), 0.0);
        masked + (base - fixed)
    }
}

/// The sparse-refined term `λ·(1 − M(W))⊙W`.
#[derive(Debug)]
struct NmDecay {
    n: usize,
    m: usize,
    lambda: f32,
}

impl GradTerm for NmDecay {
    fn term(&self, _step: u64, layer: &SparseLayer, weight: Tensor<1>) -> Option<Tensor<1>> {
        let keep = nm_keep_tensor(layer, weight.clone(), self.n, self.m);
        Some(weight.mask_fill(keep, 0.0).mul_scalar(self.lambda))
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

    /// N and M of the plan's pattern.
    fn n_m(plan: &Plan) -> Result<(usize, usize)> {
        match *plan.pattern() {
            Pattern::NM { n, m } => Ok((n, m)),
            ref other => Err(SparseError::method(
                "srste",
                format!(
                    "trains N:M sparsity, not {}: set the pattern to e.g. 2:4 (and the sparsity to 1 − N/M)",
                    other.name()
                ),
            )),
        }
    }

    fn report(&self, plan: &Plan, weights: &[Vec<f32>]) -> Result<Vec<Mask>> {
        let (n, m) = Self::n_m(plan)?;
        Ok(plan
            .layers()
            .iter()
            .zip(weights)
            .map(|(layer, w)| plan.pattern().select(layer, &magnitudes(w), layer.numel() / m * n))
            .collect())
    }
}

impl Method for SrSte {
    fn name(&self) -> &'static str {
        "srste"
    }

    fn init(&mut self, ctx: &mut InitContext<'_>, masks: &mut [Mask]) -> Result<()> {
        masks.clone_from_slice(&self.report(ctx.plan(), ctx.weights())?);
        Ok(())
    }

    fn needs(&self, step: u64) -> Needs {
        Needs {
            grads: false,
            update: step > 0 && step.is_multiple_of(self.config.report_interval.max(1)),
            skip_optimizer: false,
        }
    }

    fn on_step(&mut self, ctx: &mut StepContext<'_>) -> Result<()> {
        let masks = self.report(ctx.plan(), ctx.weights()?)?;
        ctx.masks_mut().clone_from_slice(&masks);
        Ok(())
    }

    fn reparameterization(&self) -> Option<&dyn Reparameterize> {
        Some(self)
    }
}

impl Reparameterize for SrSte {
    fn forward_rule(&self, plan: &Plan) -> Result<Option<Arc<dyn ForwardRule>>> {
        let (n, m) = Self::n_m(plan)?;
        Ok(Some(Arc::new(NmForward { n, m })))
    }

    fn grad_terms(&self, plan: &Plan) -> Result<Vec<Arc<dyn GradTerm>>> {
        let (n, m) = Self::n_m(plan)?;
        Ok(vec![Arc::new(NmDecay {
            n,
            m,
            lambda: self.config.lambda as f32,
        })])
    }

    /// The masks only report: the forward rule does the masking.
    fn hard_masks(&self) -> bool {
        false
    }
}

impl MethodSpec for SrSteConfig {
    const NAME: &'static str = "srste";
    const SUMMARY: &'static str = "N:M sparsity from scratch, straight-through + decay (Zhou et al. 2021)";
    const CHANGES_MASK: &'static str = "N:M in the forward pass";
    const SWITCHES: &'static [Switch] = &[
        Switch::new("lambda", "λ_W of the sparse-refined term (0 = plain STE)"),
        Switch::new("report_interval", "steps between refreshes of the reported masks"),
    ];

    fn default_config() -> Self {
        Self::new()
    }

    fn build(&self, _: &BuildContext) -> Result<Box<dyn Method>> {
        Ok(Box::new(SrSte::new(self.clone())))
    }

    fn preferred_pattern() -> Option<Pattern> {
        Some(Pattern::NM { n: 2, m: 4 })
    }
}
