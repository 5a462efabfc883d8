//! AutoSparse: learnable thresholds with gradient annealing
//! (Kundu, Mellempudi, Vooturi, Kaul & Dubey, "AutoSparse: Towards Automated
//! Sparse Training of Deep Neural Networks", arXiv 2304.06941).
//!
//! Each sparse weight `W` is used in the forward pass as
//!
//! ```text
//! Ŵ = sign(W) · h(|W| − τ),   τ = sigmoid(s)   (s learnable, one per output channel)
//! h(x) = ReLU(x) forward;  h'(x) = 1[x > 0] + α_t · 1[x ≤ 0]  (gradient annealing)
//! ```
//!
//! so sub-threshold weights receive `α_t` times their gradient and can come
//! back, and `τ` feels them too. `α_t` decays to 0 (PQuantML's schedule, a third-party
//! implementation; the constants are exposed, not confirmed by the paper):
//!
//! ```text
//! α_t = α_0 · max((1 + cos(π p))/2, 1 − sigmoid(L0 + (L1 − L0) p)),   p = t/T;   α_t = 0 for p ≥ p_reset
//! ```
//!
//! with α_0 = 0.5, L0 = −6, L1 = 6, p_reset = 0.9, `s` initialised to −5 (τ ≈ 0.0067)
//! with its own weight decay (`threshold_decay`, 0 by default). The mask `1[|W| > τ]` is reported (not imposed:
//! gradients of sub-threshold weights are not masked) every `report_interval` steps.
//!
//! Threshold granularity (`threshold_granularity`): `channel` (default) learns one
//! `s` per output channel / neuron, as PQuantML's `config_autosparse.yaml`
//! (`threshold_type: channelwise`, a `(out, 1)` parameter broadcast over each
//! row), the only public implementation; `layer` learns one per layer (this crate
//! before issue 13); `weight` one per weight (PQuantML's `weightwise`). The paper's
//! own granularity could not be confirmed from its text; the default follows the
//! reference implementation.
//!
//! Remaining differences to PQuantML: its α changes once per epoch (α during epoch
//! `e ≥ 1` is the value for `e − 1`), ours every step from `p = t/T`; its
//! `backward_sparsity` option is not implemented; its `threshold_decay` is unused by
//! AutoSparse (here a weight decay on `s`, inert at the default 0 in both).
//!
//! Implementation: a [`ForwardRule`] that the `Sparsifier` attaches to every
//! sparse weight (its threshold logit is the rule's extra parameter); the
//! identity `x = x + α·(x − detach(x))·1[x ≤ 0]` gives the annealed gradient
//! without a custom backward. The rule's α for the forward pass of step t is
//! α_t (set before each step, and after a restore, so a resumed run continues
//! exactly).
//!
//! **Deviation (switch `freeze_at_target`, default on)**: AutoSparse's sparsity is
//! emergent. To end at the configured target, at `p_reset` (when α reaches 0) the
//! mask is frozen to the target count by the largest `|W| − τ`, the weights are set
//! to their effective values `Ŵ`, the reparameterization becomes the identity and
//! training continues with this fixed mask (hard masking). With the switch off, the
//! learned mask is kept as it is.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use burn::config::Config;
use burn::tensor::{Tensor, activation};
use sparse_core::method::{InitContext, Method, MethodState, Needs, StepContext};
use sparse_core::reparam::{ForwardRule, Reparameterize};
use sparse_core::{LayerKind, Mask, Plan, Result, SparseError, SparseLayer};

use crate::registry::{BuildContext, MethodSpec, Switch};

/// AutoSparse settings.
#[derive(Config, Debug, PartialEq)]
pub struct AutoSparseConfig {
    /// α_0.
    #[config(default = 0.5)]
    pub alpha0: f64,
    /// L0 of the sigmoid branch.
    #[config(default = -6.0)]
    pub l0: f64,
    /// L1 of the sigmoid branch.
    #[config(default = 6.0)]
    pub l1: f64,
    /// Progress at which α becomes 0.
    #[config(default = 0.9)]
    pub reset_at: f64,
    /// Initial threshold logit `s` (τ = sigmoid(s)).
    #[config(default = -5.0)]
    pub threshold_init: f64,
    /// Steps between refreshes of the reported mask.
    #[config(default = 100)]
    pub report_interval: u64,
    /// Freeze the mask at the target sparsity when α reaches 0 (see the module docs).
    #[config(default = true)]
    pub freeze_at_target: bool,
    /// Weight decay of the threshold logits `s` (0 in PQuantML; a positive decay pulls
    /// `s` towards 0, i.e. raises τ, as in STR, Kusupati et al. 2020).
    #[config(default = 0.0)]
    pub threshold_decay: f64,
    /// One threshold per output channel (PQuantML's default), per layer or per weight.
    #[config(default = "ThresholdGranularity::Channel")]
    pub threshold_granularity: ThresholdGranularity,
}

/// How many learnable thresholds a layer has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ThresholdGranularity {
    /// One per output channel / neuron (PQuantML `channelwise`, the default).
    Channel,
    /// One per layer (this crate before issue 13).
    Layer,
    /// One per weight (PQuantML `weightwise`).
    Weight,
}

impl ThresholdGranularity {
    /// The initial threshold logits of `layer`: `init` repeated once per threshold.
    pub fn initial(self, layer: &SparseLayer, init: f32) -> Vec<f32> {
        let n = match self {
            Self::Channel => layer.neurons(),
            Self::Layer => 1,
            Self::Weight => layer.numel(),
        };
        vec![init; n]
    }
}

/// The logit that applies to flat weight `i` of `layer`, from the layer's logits `s`
/// (one, one per neuron or one per weight).
pub fn logit_of(layer: &SparseLayer, s: &[f32], i: usize) -> f32 {
    match s.len() {
        1 => s[0],
        n if n == layer.numel() => s[i],
        _ => s[layer.neuron_of(i)],
    }
}

/// `sign(W)·h(|W| − sigmoid(s))` on a flat weight with one logit, one per
/// neuron (broadcast over the neuron's fan-in: `[1, d_out]` for Burn's Linear
/// `[d_in, d_out]`, `[c_out, 1]` for a conv) or one per weight.
pub fn threshold_forward(layer: &SparseLayer, weight: Tensor<1>, s: Tensor<1>, alpha: f32) -> Tensor<1> {
    let (n, neurons) = (layer.numel(), layer.neurons());
    let tau = activation::sigmoid(s);
    let count = tau.dims()[0];
    if count == 1 || count == n || neurons == 0 {
        return soft_threshold(weight, tau, alpha);
    }
    let out = match layer.kind {
        LayerKind::Linear => soft_threshold(weight.reshape([n / neurons, neurons]), tau.reshape([1, neurons]), alpha),
        LayerKind::Conv => soft_threshold(weight.reshape([neurons, n / neurons]), tau.reshape([neurons, 1]), alpha),
    };
    out.reshape([n])
}

/// α (f32 bits) and whether the rule is frozen to the identity, shared by the
/// method and the rule attached to every weight.
#[derive(Clone, Debug, Default)]
pub struct AnnealState {
    alpha: Arc<AtomicU32>,
    frozen: Arc<AtomicBool>,
}

impl AnnealState {
    /// The current α.
    pub fn alpha(&self) -> f32 {
        f32::from_bits(self.alpha.load(Ordering::Relaxed))
    }

    fn set_alpha(&self, a: f32) {
        self.alpha.store(a.to_bits(), Ordering::Relaxed);
    }

    fn frozen(&self) -> bool {
        self.frozen.load(Ordering::Relaxed)
    }

    fn set_frozen(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::Relaxed);
    }
}

/// `sign(W)·h(|W| − τ)` with the annealed ReLU `h`.
pub fn soft_threshold<const D: usize>(w: Tensor<D>, tau: Tensor<D>, alpha: f32) -> Tensor<D> {
    let x = w.clone().abs() - tau;
    let mut h = activation::relu(x.clone());
    if alpha > 0.0 {
        let above = x.clone().greater_elem(0.0);
        let straight = (x.clone() - x.detach()).mask_fill(above, 0.0).mul_scalar(alpha);
        h = h + straight;
    }
    w.sign() * h
}

/// The forward rule: `sign(W)·h(|W| − sigmoid(s))` with one learnable logit `s`
/// per weight tensor (the identity once the mask is frozen).
#[derive(Debug)]
struct SoftThreshold {
    init: f32,
    granularity: ThresholdGranularity,
    state: AnnealState,
}

impl ForwardRule for SoftThreshold {
    fn extra_params(&self, layer: &SparseLayer) -> Vec<Vec<f32>> {
        vec![self.granularity.initial(layer, self.init)]
    }

    fn forward(&self, layer: &SparseLayer, weight: Tensor<1>, extra: &[Tensor<1>]) -> Tensor<1> {
        if self.state.frozen() {
            return weight;
        }
        threshold_forward(layer, weight, extra[0].clone(), self.state.alpha())
    }
}

/// AutoSparse.
#[derive(Debug)]
pub struct AutoSparse {
    config: AutoSparseConfig,
    total_steps: u64,
    state: AnnealState,
    frozen: bool,
}

impl AutoSparse {
    /// AutoSparse with `config` for a run of `total_steps` (the annealing runs
    /// over `p = t/T`).
    pub fn new(config: AutoSparseConfig, total_steps: u64) -> Result<Self> {
        if total_steps == 0 || !(0.0..=1.0).contains(&config.reset_at) || config.alpha0.is_nan() || config.alpha0 < 0.0
        {
            return Err(SparseError::method(
                "autosparse",
                "needs total_steps > 0, reset_at in [0, 1] and alpha0 >= 0",
            ));
        }
        let auto = Self {
            config,
            total_steps,
            state: AnnealState::default(),
            frozen: false,
        };
        auto.state.set_alpha(auto.alpha_at(0) as f32);
        Ok(auto)
    }

    /// α_t at `step`.
    pub fn alpha_at(&self, step: u64) -> f64 {
        let c = &self.config;
        let p = step as f64 / self.total_steps.max(1) as f64;
        if p >= c.reset_at || step >= self.reset_step() {
            return 0.0;
        }
        let cosine = (1.0 + (std::f64::consts::PI * p).cos()) / 2.0;
        let sig = 1.0 - 1.0 / (1.0 + (-(c.l0 + (c.l1 - c.l0) * p)).exp());
        c.alpha0 * cosine.max(sig)
    }

    /// The step at which α becomes 0 (and the mask freezes), within the run.
    fn reset_step(&self) -> u64 {
        let t = self.total_steps;
        ((self.config.reset_at * t as f64).ceil() as u64).min(t.saturating_sub(1))
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Keep mask `|w_i| > τ_i`.
fn threshold_mask(w: &[f32], tau: &[f32]) -> Mask {
    Mask::from_indices(w.len(), (0..w.len()).filter(|&i| w[i].abs() > tau[i]))
}

/// `τ_i = sigmoid(s)` of every flat weight of `layer`.
fn flat_taus(layer: &SparseLayer, s: &[f32]) -> Vec<f32> {
    (0..layer.numel()).map(|i| sigmoid(logit_of(layer, s, i))).collect()
}

impl Method for AutoSparse {
    fn name(&self) -> &'static str {
        "autosparse"
    }

    fn init(&mut self, ctx: &mut InitContext<'_>, masks: &mut [Mask]) -> Result<()> {
        let tau = sigmoid(self.config.threshold_init as f32);
        for (m, w) in masks.iter_mut().zip(ctx.weights()) {
            *m = threshold_mask(w, &vec![tau; w.len()]);
        }
        Ok(())
    }

    fn before_step(&mut self, step: u64) {
        self.state.set_alpha(self.alpha_at(step) as f32);
    }

    fn needs(&self, step: u64) -> Needs {
        let freeze = self.config.freeze_at_target && !self.frozen && step >= self.reset_step();
        let report = !self.frozen && step.is_multiple_of(self.config.report_interval.max(1));
        Needs {
            grads: false,
            update: freeze || report,
            skip_optimizer: false,
        }
    }

    fn on_step(&mut self, ctx: &mut StepContext<'_>) -> Result<()> {
        let taus: Vec<Vec<f32>> = (0..ctx.layers().len())
            .map(|l| {
                let layer = &ctx.layers()[l];
                let extra = ctx.extra(l)?;
                extra
                    .first()
                    .filter(|v| !v.is_empty())
                    .map(|s| flat_taus(layer, s))
                    .ok_or_else(|| SparseError::method("autosparse", format!("`{}` has no threshold", layer.path)))
            })
            .collect::<Result<_>>()?;
        let freeze = self.config.freeze_at_target && ctx.step() >= self.reset_step();
        if !freeze {
            let masks: Vec<Mask> = ctx
                .weights()?
                .iter()
                .zip(&taus)
                .map(|(w, tau)| threshold_mask(w, tau))
                .collect();
            ctx.masks_mut().clone_from_slice(&masks);
            return Ok(());
        }
        let effective: Vec<Vec<f32>> = ctx
            .weights()?
            .iter()
            .zip(&taus)
            .map(|(w, tau)| w.iter().zip(tau).map(|(x, t)| x.abs() - t).collect())
            .collect();
        let masks = ctx.plan().select(&effective, ctx.plan().sparsity())?;
        for (l, weights) in ctx.weights_mut()?.iter_mut().enumerate() {
            for (i, w) in weights.iter_mut().enumerate() {
                *w = if masks[l].get(i) {
                    w.signum() * effective[l][i].max(0.0)
                } else {
                    0.0
                };
            }
        }
        ctx.masks_mut().clone_from_slice(&masks);
        self.frozen = true;
        self.state.set_frozen(true);
        tracing::info!(step = ctx.step(), "AutoSparse: mask frozen at the target sparsity");
        Ok(())
    }

    fn save_state(&self) -> MethodState {
        let mut state = MethodState::default();
        state.values.insert("frozen".into(), self.frozen.into());
        state
    }

    fn load_state(&mut self, state: MethodState) -> Result<()> {
        self.frozen = state.values.get("frozen").and_then(|v| v.as_bool()).unwrap_or(false);
        self.state.set_frozen(self.frozen);
        Ok(())
    }

    fn reparameterization(&self) -> Option<&dyn Reparameterize> {
        Some(self)
    }
}

impl Reparameterize for AutoSparse {
    fn forward_rule(&self, _plan: &Plan) -> Result<Option<Arc<dyn ForwardRule>>> {
        Ok(Some(Arc::new(SoftThreshold {
            init: self.config.threshold_init as f32,
            granularity: self.config.threshold_granularity,
            state: self.state.clone(),
        })))
    }

    fn extra_decay(&self) -> Option<f64> {
        Some(self.config.threshold_decay)
    }

    fn hard_masks(&self) -> bool {
        self.frozen
    }
}

impl MethodSpec for AutoSparseConfig {
    const NAME: &'static str = "autosparse";
    const SUMMARY: &'static str = "learnable per-channel thresholds with gradient annealing (Kundu et al. 2023)";
    const CHANGES_MASK: &'static str = "learned thresholds";
    const SWITCHES: &'static [Switch] = &[
        Switch::new("alpha0", "α_0, the initial gradient scale below the threshold"),
        Switch::new("l0", "L0 of the annealing's sigmoid branch"),
        Switch::new("l1", "L1 of the annealing's sigmoid branch"),
        Switch::new("reset_at", "progress at which α becomes 0"),
        Switch::new("threshold_init", "initial threshold logit s (τ = sigmoid(s))"),
        Switch::new("report_interval", "steps between refreshes of the reported mask"),
        Switch::new("freeze_at_target", "freeze the mask at the target when α reaches 0"),
        Switch::new("threshold_decay", "weight decay of the threshold logits"),
        Switch::new(
            "threshold_granularity",
            "channel, layer or weight: one threshold per output channel, layer or weight",
        ),
    ];

    fn default_config() -> Self {
        Self::new()
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Method>> {
        Ok(Box::new(AutoSparse::new(self.clone(), ctx.total_steps)?))
    }
}
