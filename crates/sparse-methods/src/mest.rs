//! MEST: Memory-Economic Sparse Training (Yuan et al., NeurIPS 2021;
//! reference `boone891214/MEST`).
//!
//! Sparse-to-sparse training at a fixed budget that never needs dense gradients.
//! Every ΔT steps, **elastic mutation** (EM) per layer:
//!
//! 1. prune the active weights to the lower-bound density `d − r` by importance
//!    `|w| + λ·|∂L/∂w|` (λ = 0: magnitude; gradients of active weights only);
//! 2. regrow uniformly at random among the inactive weights back to the target
//!    density `d` (grown weights start at 0).
//!
//! With the **soft memory bound** (EM&S, `soft_bound`) the mask is first pruned to
//! `d` and then grown to `d + r`, so the density exceeds the target by `r` between
//! mutations; the next mutation prunes back. A last pruning to `d` runs at
//! `updates.end` (the mutation ratio is 0 there), so the trained model ends at the
//! budget, as in the paper; set `end` before the last training step.
//!
//! The mutation ratio `r` decays in steps: `r_i = r_0·(1 − i/len(decay_at))` after
//! the `i`-th step of `decay_at` (MEST's `2% → 1% → 0%` over 160 epochs is
//! `mutation = 0.02, decay_at = [90·E, 120·E]`), and 0 at the end. Per-layer counts
//! at `d ± r` come from the plan's distribution. Unstructured pattern only.

use burn::config::Config;
use sparse_core::method::{InitContext, Method, Needs, StepContext};
use sparse_core::select::top_k;
use sparse_core::{Mask, Pattern, Result, SparseError, UpdateSchedule};

use crate::init::random_masks;

/// MEST settings.
#[derive(Config, Debug)]
pub struct MestConfig {
    /// When mutations run.
    pub updates: UpdateSchedule,
    /// Initial mutation ratio r_0 (density gap between the bounds).
    #[config(default = 0.02)]
    pub mutation: f64,
    /// Steps at which the ratio steps down towards 0.
    #[config(default = "Vec::new()")]
    pub decay_at: Vec<u64>,
    /// λ of the importance `|w| + λ|g|`.
    #[config(default = 0.0)]
    pub lambda: f64,
    /// EM&S: grow above the budget between mutations.
    #[config(default = false)]
    pub soft_bound: bool,
}

/// MEST.
#[derive(Debug)]
pub struct Mest {
    config: MestConfig,
}

impl Mest {
    /// MEST with `config`.
    pub fn new(config: MestConfig) -> Self {
        Self { config }
    }

    /// The mutation ratio at `step`.
    pub fn ratio_at(&self, step: u64) -> f64 {
        let c = &self.config;
        if step >= c.updates.end {
            return 0.0;
        }
        let passed = c.decay_at.iter().filter(|&&s| step >= s).count();
        let steps = c.decay_at.len();
        if steps == 0 {
            c.mutation
        } else {
            c.mutation * (1.0 - passed as f64 / steps as f64)
        }
    }
}

impl Method for Mest {
    fn name(&self) -> &'static str {
        "mest"
    }

    fn init(&mut self, ctx: &mut InitContext<'_>, masks: &mut [Mask]) -> Result<()> {
        self.config.updates.validate()?;
        if *ctx.plan.pattern() != Pattern::Unstructured || ctx.plan.is_global() {
            return Err(SparseError::method(
                "mest",
                "mutates per layer: use the unstructured pattern with a per-layer distribution",
            ));
        }
        let s = ctx.plan.sparsity();
        if !(0.0..1.0).contains(&self.config.mutation) || s + self.config.mutation >= 1.0 {
            return Err(SparseError::method(
                "mest",
                format!(
                    "mutation ratio {} must be in [0, 1) and leave a lower bound above 0 at sparsity {s}",
                    self.config.mutation
                ),
            ));
        }
        masks.clone_from_slice(&random_masks(ctx)?);
        Ok(())
    }

    fn needs(&self, step: u64) -> Needs {
        let u = &self.config.updates;
        let update = u.is_update_step(step) || (self.config.soft_bound && step == u.end);
        Needs {
            grads: update && self.config.lambda != 0.0,
            update,
            skip_optimizer: false,
        }
    }

    fn on_step(&mut self, ctx: &mut StepContext<'_>) -> Result<()> {
        let (s, r) = (ctx.plan.sparsity(), self.ratio_at(ctx.step));
        let (prune_to, grow_to) = if self.config.soft_bound {
            (ctx.plan.counts(s)?, ctx.plan.counts((s - r).max(0.0))?)
        } else {
            (ctx.plan.counts((s + r).min(0.999_999))?, ctx.plan.counts(s)?)
        };
        for l in 0..ctx.layers().len() {
            let (w, mask) = (&ctx.weights[l], &ctx.masks[l]);
            let importance: Vec<f32> = (0..w.len())
                .map(|i| {
                    let g = ctx.grads.get(l).map_or(0.0, |g| g[i].abs());
                    w[i].abs() + (self.config.lambda as f32) * g
                })
                .collect();
            let kept = top_k(mask.iter_ones().map(|i| i as u32), prune_to[l], |i| {
                importance[i as usize]
            });
            let mut out = Mask::from_indices(w.len(), kept.iter().map(|&i| i as usize));
            let grow = grow_to[l].saturating_sub(out.count_ones());
            let random = ctx.rng(l, "mest-grow").scores(w.len());
            for i in top_k((0..w.len() as u32).filter(|&i| !out.get(i as usize)), grow, |i| {
                random[i as usize]
            }) {
                out.set(i as usize, true);
            }
            ctx.masks[l] = out;
        }
        Ok(())
    }
}
