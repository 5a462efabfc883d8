//! AutoSparse: learnable per-layer thresholds with gradient annealing
//! (Kundu, Mellempudi, Vooturi, Kaul & Dubey, "AutoSparse: Towards Automated
//! Sparse Training of Deep Neural Networks", arXiv 2304.06941).
//!
//! Each sparse weight `W` is used in the forward pass as
//!
//! ```text
//! Ŵ = sign(W) · h(|W| − τ),   τ = sigmoid(s)   (s learnable, one per layer)
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
use sparse_core::{Mask, Plan, Result, SparseError, SparseLayer};

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
    state: AnnealState,
}

impl ForwardRule for SoftThreshold {
    fn extra_params(&self, _layer: &SparseLayer) -> Vec<Vec<f32>> {
        vec![vec![self.init]]
    }

    fn forward(&self, _layer: &SparseLayer, weight: Tensor<1>, extra: &[Tensor<1>]) -> Tensor<1> {
        if self.state.frozen() {
            return weight;
        }
        let tau = activation::sigmoid(extra[0].clone());
        soft_threshold(weight, tau, self.state.alpha())
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

/// Keep mask `|w| > τ`.
fn threshold_mask(w: &[f32], tau: f32) -> Mask {
    Mask::from_indices(
        w.len(),
        w.iter().enumerate().filter(|(_, x)| x.abs() > tau).map(|(i, _)| i),
    )
}

impl Method for AutoSparse {
    fn name(&self) -> &'static str {
        "autosparse"
    }

    fn init(&mut self, ctx: &mut InitContext<'_>, masks: &mut [Mask]) -> Result<()> {
        let tau = sigmoid(self.config.threshold_init as f32);
        for (m, w) in masks.iter_mut().zip(ctx.weights()) {
            *m = threshold_mask(w, tau);
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
        let taus: Vec<f32> = (0..ctx.layers().len())
            .map(|l| {
                let extra = ctx.extra(l)?;
                extra
                    .first()
                    .and_then(|v| v.first().copied())
                    .map(sigmoid)
                    .ok_or_else(|| {
                        SparseError::method("autosparse", format!("`{}` has no threshold", ctx.layers()[l].path))
                    })
            })
            .collect::<Result<_>>()?;
        let freeze = self.config.freeze_at_target && ctx.step() >= self.reset_step();
        if !freeze {
            let masks: Vec<Mask> = ctx
                .weights()?
                .iter()
                .zip(&taus)
                .map(|(w, tau)| threshold_mask(w, *tau))
                .collect();
            ctx.masks_mut().clone_from_slice(&masks);
            return Ok(());
        }
        let effective: Vec<Vec<f32>> = ctx
            .weights()?
            .iter()
            .zip(&taus)
            .map(|(w, tau)| w.iter().map(|x| x.abs() - tau).collect())
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
    const SUMMARY: &'static str = "learnable per-layer thresholds with gradient annealing (Kundu et al. 2023)";
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
    ];

    fn default_config() -> Self {
        Self::new()
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Method>> {
        Ok(Box::new(AutoSparse::new(self.clone(), ctx.total_steps)?))
    }
}
