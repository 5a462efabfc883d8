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
//! Implementation: a Burn `Reparameterization` on every sparse weight
//! ([`AutoSparse::attach`]); the identity `x = x + α·(x − detach(x))·1[x ≤ 0]`
//! gives the annealed gradient without a custom backward.
//!
//! **Deviation (switch `freeze_at_target`, default on)**: AutoSparse's sparsity is
//! emergent. To end at the configured target, at `p_reset` (when α reaches 0) the
//! mask is frozen to the target count by the largest `|W| − τ`, the weights are set
//! to their effective values `Ŵ`, the reparameterization becomes the identity and
//! training continues with this fixed mask (hard masking). With the switch off, the
//! learned mask is kept as it is.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use burn::config::Config;
use burn::module::{Module, Param, Reparameterization, Reparameterizer};
use burn::tensor::{Tensor, activation};
use sparse_core::method::{InitContext, Method, MethodState, Needs, StepContext};
use sparse_core::{Mask, Result, SparseError, SparseLayer};

/// AutoSparse settings.
#[derive(Config, Debug)]
pub struct AutoSparseConfig {
    /// Total training steps `T` (the annealing runs over `p = t/T`).
    pub total_steps: u64,
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
    pub threshold_init: f32,
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

/// Shared state of the reparameterizations: α (f32 bits) and whether they are
/// frozen to the identity.
#[derive(Clone, Debug, Default)]
pub struct AnnealState {
    alpha: Arc<AtomicU32>,
    frozen: Arc<std::sync::atomic::AtomicBool>,
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
}

/// The learnable threshold of one weight.
#[derive(Module, Debug)]
pub struct AutoSparseThreshold {
    /// `s`, with `τ = sigmoid(s)`.
    pub threshold: Param<Tensor<1>>,
    #[module(skip)]
    state: AnnealState,
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

impl Reparameterization for AutoSparseThreshold {
    const NAME: &'static str = "autosparse";

    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        if self.state.frozen() {
            return base;
        }
        let tau = activation::sigmoid(self.threshold.val()).reshape([1; D]);
        soft_threshold(base, tau, self.state.alpha())
    }
}

struct Attach {
    paths: HashSet<String>,
    init: f32,
    state: AnnealState,
}

impl Reparameterizer for Attach {
    type Reparam = AutoSparseThreshold;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<AutoSparseThreshold>) {
        if !self.paths.contains(path) {
            return (param, None);
        }
        let device = param.lazy_device();
        let s = Tensor::<1>::from_floats([self.init], &device);
        let reparam = AutoSparseThreshold {
            threshold: Param::from_tensor(s),
            state: self.state.clone(),
        };
        (param, Some(reparam))
    }
}

/// AutoSparse.
#[derive(Debug)]
pub struct AutoSparse {
    config: AutoSparseConfig,
    state: AnnealState,
    frozen: bool,
}

impl AutoSparse {
    /// AutoSparse with `config`.
    pub fn new(config: AutoSparseConfig) -> Self {
        Self {
            config,
            state: AnnealState::default(),
            frozen: false,
        }
    }

    /// Adds a learnable threshold to each weight of `layers` (use the sparse layers
    /// of the model, e.g. `sparse_core::discover(&model, &filter)`). Call before
    /// building the `Sparsifier` (which applies `threshold_decay` to the thresholds).
    pub fn attach<M: Module>(&self, model: M, layers: &[SparseLayer]) -> M {
        self.state.set_alpha(self.alpha_at(0) as f32);
        model.apply_reparameterization(Attach {
            paths: layers.iter().map(|l| l.path.clone()).collect(),
            init: self.config.threshold_init,
            state: self.state.clone(),
        })
    }

    /// α_t at `step`.
    pub fn alpha_at(&self, step: u64) -> f64 {
        let c = &self.config;
        let p = step as f64 / c.total_steps.max(1) as f64;
        if p >= c.reset_at || step >= self.reset_step() {
            return 0.0;
        }
        let cosine = (1.0 + (std::f64::consts::PI * p).cos()) / 2.0;
        let sig = 1.0 - 1.0 / (1.0 + (-(c.l0 + (c.l1 - c.l0) * p)).exp());
        c.alpha0 * cosine.max(sig)
    }

    /// The step at which α becomes 0 (and the mask freezes), within the run.
    fn reset_step(&self) -> u64 {
        let t = self.config.total_steps;
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
        if self.config.total_steps == 0 || !(0.0..=1.0).contains(&self.config.reset_at) || self.config.alpha0 < 0.0 {
            return Err(SparseError::method(
                "autosparse",
                "needs total_steps > 0, reset_at in [0, 1] and alpha0 >= 0",
            ));
        }
        let tau = sigmoid(self.config.threshold_init);
        for (m, w) in masks.iter_mut().zip(ctx.weights.iter()) {
            *m = threshold_mask(w, tau);
        }
        Ok(())
    }

    fn begin_step(&mut self, step: u64) {
        self.state.set_alpha(self.alpha_at(step) as f32);
    }

    fn hard_masks(&self) -> bool {
        self.frozen
    }

    fn extra_params(&self) -> Vec<String> {
        vec!["*.autosparse.threshold".into()]
    }

    fn decay_overrides(&self) -> Vec<(String, f64)> {
        vec![("*.autosparse.threshold".into(), self.config.threshold_decay)]
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
        let taus: Vec<f32> = ctx
            .layers()
            .iter()
            .map(|l| {
                ctx.extra
                    .get(&format!("{}.autosparse.threshold", l.path))
                    .and_then(|v| v.first().copied())
                    .map(sigmoid)
                    .ok_or_else(|| {
                        SparseError::method(
                            "autosparse",
                            format!(
                                "`{}` has no threshold; call AutoSparse::attach on the model first",
                                l.path
                            ),
                        )
                    })
            })
            .collect::<Result<_>>()?;
        let freeze = self.config.freeze_at_target && ctx.step >= self.reset_step();
        if !freeze {
            for (l, tau) in taus.iter().enumerate() {
                ctx.masks[l] = threshold_mask(&ctx.weights[l], *tau);
            }
            return Ok(());
        }
        let effective: Vec<Vec<f32>> = ctx
            .weights
            .iter()
            .zip(&taus)
            .map(|(w, tau)| w.iter().map(|x| x.abs() - tau).collect())
            .collect();
        let masks = ctx.plan.select(&effective, ctx.plan.sparsity())?;
        for l in 0..masks.len() {
            for (i, w) in ctx.weights[l].iter_mut().enumerate() {
                *w = if masks[l].get(i) {
                    w.signum() * effective[l][i].max(0.0)
                } else {
                    0.0
                };
            }
        }
        ctx.masks.clone_from_slice(&masks);
        ctx.weights_changed = true;
        self.frozen = true;
        self.state.frozen.store(true, Ordering::Relaxed);
        tracing::info!(step = ctx.step, "AutoSparse: mask frozen at the target sparsity");
        Ok(())
    }

    fn save_state(&self) -> MethodState {
        let mut state = MethodState::default();
        state.values.insert("frozen".into(), self.frozen.into());
        state
    }

    fn load_state(&mut self, state: MethodState) -> Result<()> {
        self.frozen = state.values.get("frozen").and_then(|v| v.as_bool()).unwrap_or(false);
        self.state.frozen.store(self.frozen, Ordering::Relaxed);
        Ok(())
    }
}
