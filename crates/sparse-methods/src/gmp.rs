//! GMP: gradual magnitude pruning (Zhu & Gupta, "To prune, or not to prune", 2017).
//!
//! From `t0`, every ΔT steps for `n` steps, the sparsity follows
//!
//! ```text
//! s_t = s_f + (s_i − s_f)·(1 − (t − t0)/(n·ΔT))³                       (Eq. 1)
//! ```
//!
//! and at each of those steps the weights of smallest magnitude are pruned to
//! reach `s_t`: per layer (the plan's distribution at `s_t`: uniform as the paper's
//! `model_pruning`, jaxpruner and state_of_sparsity, the default of a sparseburn run
//! through the method's [`SparsityDefaults`]; or ERK) or globally
//! (`Distribution::Global`, GraNet's variant). Pruned
//! weights are 0 and never return: only active weights compete, and a layer's count
//! never grows even when rounding would allow one more weight.
//!
//! Start from a dense model (`s_i = 0`) or a pretrained one (dense-to-sparse
//! fine-tuning). The schedule is [`sparse_core::SparsitySchedule`]; built from a
//! [`GmpConfig`], its `target` is the run's sparsity and its window the
//! `[prune_begin_fraction, prune_end_fraction)` part of training, with ΔT no
//! longer than the window so that the run reaches the target.
//!
//! Remaining differences to `model_pruning`: it keeps `round(N·(1 − s_t))` weights
//! with `|w| ≥` the k-th largest (ties kept) and recomputes the mask from the raw,
//! unmasked weights at each pruning step; ours uses largest-remainder counts and
//! never revives a pruned weight. rigl's MNIST script keeps the output layer dense
//! and the second layer at 0.9·s: an `explicit` distribution.

use burn::config::Config;
use sparse_core::method::{InitContext, Method, Needs, StepContext};
use sparse_core::{Mask, Result, SparseError, SparsitySchedule};

use crate::registry::{BuildContext, MethodSpec, SparsityDefaults, Switch};
use crate::scores::active_magnitudes;

/// GMP settings.
#[derive(Config, Debug, PartialEq)]
pub struct GmpConfig {
    /// Sparsity before pruning starts (`s_i`; 0 = from dense).
    #[config(default = 0.0)]
    pub initial_sparsity: f64,
    /// Pruning starts at this fraction of training (`t0`).
    #[config(default = 0.0)]
    pub prune_begin_fraction: f64,
    /// The target is reached at this fraction of training (`t0 + nΔT`).
    #[config(default = 0.75)]
    pub prune_end_fraction: f64,
    /// Steps between pruning steps (ΔT).
    #[config(default = 100)]
    pub delta_t: u64,
}

impl GmpConfig {
    /// Zhu & Gupta's cubic schedule for a run of `total_steps` at sparsity `target`.
    pub fn schedule(&self, total_steps: u64, target: f64) -> Result<SparsitySchedule> {
        let bad = |m: String| SparseError::method("gmp", m);
        if self.delta_t == 0 {
            return Err(bad("delta_t must be at least 1".into()));
        }
        if !(0.0..=target).contains(&self.initial_sparsity) {
            return Err(bad(format!(
                "initial_sparsity {} must be in [0, the target {target}]",
                self.initial_sparsity
            )));
        }
        for (name, f) in [
            ("prune_begin_fraction", self.prune_begin_fraction),
            ("prune_end_fraction", self.prune_end_fraction),
        ] {
            if !(0.0..=1.0).contains(&f) {
                return Err(bad(format!("{name} {f} must be in [0, 1] (a fraction of training)")));
            }
        }
        let t0 = (self.prune_begin_fraction.max(0.0) * total_steps as f64) as u64;
        let end = ((self.prune_end_fraction.max(0.0) * total_steps as f64) as u64).min(total_steps.saturating_sub(1));
        if end <= t0 {
            return Err(bad(format!(
                "the pruning window is empty: prune_begin_fraction {} and prune_end_fraction {} leave no step of the {total_steps} (raise the fractions' gap or the epochs)",
                self.prune_begin_fraction, self.prune_end_fraction
            )));
        }
        // ΔT no longer than the window, so the run reaches the final sparsity
        let dt = self.delta_t.min(end - t0);
        Ok(SparsitySchedule::cubic(
            self.initial_sparsity,
            target,
            t0,
            (end - t0) / dt,
            dt,
        ))
    }
}

/// Gradual magnitude pruning.
#[derive(Debug)]
pub struct Gmp {
    schedule: SparsitySchedule,
}

impl Gmp {
    /// GMP with `config` for a run of `total_steps` at sparsity `target`.
    pub fn new(config: &GmpConfig, total_steps: u64, target: f64) -> Result<Self> {
        Self::with_schedule(config.schedule(total_steps, target)?)
    }

    /// GMP following `schedule`.
    pub fn with_schedule(schedule: SparsitySchedule) -> Result<Self> {
        schedule.validate()?;
        Ok(Self { schedule })
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
        let s0 = self.schedule.sparsity_at(0);
        if s0 > 0.0 {
            let dense: Vec<Mask> = masks.to_vec();
            masks.clone_from_slice(&prune_to(ctx.plan(), ctx.weights(), &dense, s0)?);
        }
        Ok(())
    }

    /// Masks handed over by an earlier stage are pruned, by magnitude, to the
    /// schedule's sparsity at step 0 (`s_i`, Eq. 1) when they are denser: so a
    /// flat schedule (`initial_sparsity` = the target, one-shot pruning) after a
    /// sparse stage still reaches its target.
    fn continue_from(&mut self, ctx: &mut InitContext<'_>, masks: &mut [Mask]) -> Result<()> {
        let s0 = self.schedule.sparsity_at(0);
        let total: usize = masks.iter().map(Mask::len).sum();
        let active: usize = masks.iter().map(Mask::count_ones).sum();
        let now = 1.0 - active as f64 / total.max(1) as f64;
        if s0 > now + 1e-9 {
            let carried: Vec<Mask> = masks.to_vec();
            masks.clone_from_slice(&prune_to(ctx.plan(), ctx.weights(), &carried, s0)?);
        }
        Ok(())
    }

    fn prunes_gradually(&self) -> bool {
        true
    }

    fn needs(&self, step: u64) -> Needs {
        let s = &self.schedule;
        let update = s.is_change_step(step) && step > 0 && s.sparsity_at(step) > s.sparsity_at(step - 1);
        Needs {
            grads: false,
            update,
            skip_optimizer: false,
        }
    }

    fn on_step(&mut self, ctx: &mut StepContext<'_>) -> Result<()> {
        let s = self.schedule.sparsity_at(ctx.step());
        let new = prune_to(ctx.plan(), ctx.weights()?, ctx.masks(), s)?;
        ctx.masks_mut().clone_from_slice(&new);
        tracing::debug!(step = ctx.step(), sparsity = s, "GMP pruning step");
        Ok(())
    }
}

impl MethodSpec for GmpConfig {
    const NAME: &'static str = "gmp";
    const SUMMARY: &'static str = "gradual magnitude pruning on a cubic schedule (Zhu & Gupta 2017)";
    const CHANGES_MASK: &'static str = "prunes on a schedule";
    const SWITCHES: &'static [Switch] = &[
        Switch::new("initial_sparsity", "sparsity before pruning starts (s_i)"),
        Switch::new("prune_begin_fraction", "pruning starts at this fraction of training"),
        Switch::new(
            "prune_end_fraction",
            "the target is reached at this fraction of training",
        ),
        Switch::new("delta_t", "steps between pruning steps (ΔT)"),
    ];

    /// Zhu & Gupta's `model_pruning` prunes every layer to the same sparsity.
    fn sparsity_defaults() -> SparsityDefaults {
        SparsityDefaults {
            distribution: Some(sparse_core::Distribution::Uniform {
                dense_first_layer: false,
            }),
            ..SparsityDefaults::default()
        }
    }

    fn default_config() -> Self {
        Self::new()
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Method>> {
        Ok(Box::new(Gmp::new(self, ctx.total_steps, ctx.sparsity)?))
    }
}
