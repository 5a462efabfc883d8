//! GMP: gradual magnitude pruning (Zhu & Gupta, "To prune, or not to prune", 2017).
//!
//! From `t0`, every ΔT steps for `n` steps, the sparsity follows
//!
//! ```text
//! s_t = s_f + (s_i − s_f)·(1 − (t − t0)/(n·ΔT))³                       (Eq. 1)
//! ```
//!
//! and at each of those steps the weights of smallest magnitude are pruned to
//! reach `s_t`: per layer (the plan's distribution at `s_t`, e.g. uniform as in the
//! paper, or ERK) or globally (`Distribution::Global`, GraNet's variant). Pruned
//! weights are 0 and never return: only active weights compete, and a layer's count
//! never grows even when rounding would allow one more weight.
//!
//! Start from a dense model (`s_i = 0`) or a pretrained one (dense-to-sparse
//! fine-tuning). The schedule is [`sparse_core::SparsitySchedule`]; its `target`
//! should equal the sparsity config's.

use burn::config::Config;
use sparse_core::method::{InitContext, Method, Needs, StepContext};
use sparse_core::{Mask, Result, SparsitySchedule};

use crate::init::active_magnitudes;

/// GMP settings.
#[derive(Config, Debug)]
pub struct GmpConfig {
    /// The sparsity schedule (cubic by default).
    pub schedule: SparsitySchedule,
}

/// Gradual magnitude pruning.
#[derive(Debug)]
pub struct Gmp {
    config: GmpConfig,
}

impl Gmp {
    /// GMP with `config`.
    pub fn new(config: GmpConfig) -> Self {
        Self { config }
    }
}

/// Masks keeping the largest active weights at `sparsity`, never reviving a pruned
/// weight and never growing a layer.
pub fn prune_to(plan: &sparse_core::Plan, weights: &[Vec<f32>], masks: &[Mask], sparsity: f64) -> Result<Vec<Mask>> {
    let scores = active_magnitudes(weights, masks);
    if plan.is_global() {
        return plan.select(&scores, sparsity);
    }
    let counts = plan.counts(sparsity)?;
    Ok(plan
        .layers()
        .iter()
        .zip(&scores)
        .zip(counts.iter().zip(masks))
        .map(|((layer, s), (c, m))| plan.pattern().select(layer, s, (*c).min(m.count_ones())))
        .collect())
}

impl Method for Gmp {
    fn name(&self) -> &'static str {
        "gmp"
    }

    fn init(&mut self, ctx: &mut InitContext<'_>, masks: &mut [Mask]) -> Result<()> {
        self.config.schedule.validate()?;
        let s0 = self.config.schedule.sparsity_at(0);
        if s0 > 0.0 {
            let dense: Vec<Mask> = masks.to_vec();
            masks.clone_from_slice(&prune_to(ctx.plan, ctx.weights, &dense, s0)?);
        }
        Ok(())
    }

    fn needs(&self, step: u64) -> Needs {
        let s = &self.config.schedule;
        let update = s.is_change_step(step) && step > 0 && s.sparsity_at(step) > s.sparsity_at(step - 1);
        Needs {
            grads: false,
            update,
            skip_optimizer: false,
        }
    }

    fn on_step(&mut self, ctx: &mut StepContext<'_>) -> Result<()> {
        let s = self.config.schedule.sparsity_at(ctx.step);
        let new = prune_to(ctx.plan, ctx.weights, ctx.masks, s)?;
        ctx.masks.clone_from_slice(&new);
        tracing::debug!(step = ctx.step, sparsity = s, "GMP pruning step");
        Ok(())
    }
}
