//! RigL: Rigging the Lottery (Evci, Gale, Menick, Castro & Elsen, ICML 2020).
//!
//! Every ΔT steps until `T_end`, each sparse layer drops the
//! `k = ⌊f(t)·n_active⌋` active weights of smallest magnitude and grows the `k`
//! inactive weights with the largest dense-gradient magnitude:
//!
//! ```text
//! M' = TopK(|θ| ⊙ M, n_active − k) ∪ TopK(|∇_θ L| on ¬TopK(|θ| ⊙ M, n_active − k), k)
//! f(t) = α/2 · (1 + cos(π t / T_end))                        (Eq. 2)
//! ```
//!
//! A weight dropped in an update may be grown back in the same update (as in the
//! reference). Grown weights start at 0 with zero optimizer state (done by the hook).
//! Under N:M, constant fan-in and block patterns the exchange happens inside the
//! pattern (see [`sparse_core::pattern::Pattern::exchange`]).
//!
//! Defaults (paper and `google-research/rigl`): random ERK initial mask (set the
//! distribution in the sparsity config), α = 0.3 with cosine decay, ΔT = 100,
//! `T_end` = 75% of training.
//!
//! Switches:
//! * `skip_weight_update` (default `true`, as rigl's TF reference and jaxpruner
//!   `skip_gradients=True`): no optimizer step on update steps; `false` applies it
//!   first (sparsimony, condensed-sparsity), the update then sees the new weights;
//! * `grad_window`: average the dense gradient over the last n steps (rigl
//!   `grad_accumulation_n`, used to emulate a large batch);
//! * `tie_noise`: standard deviation of Gaussian noise added to both scores
//!   (rigl's TF1 code breaks ties with small noise); 0 (default) breaks ties by
//!   flat index, deterministically.

use burn::config::Config;
use sparse_core::method::{MethodState, StepContext};
use sparse_core::{DropFraction, DropSchedule, Result, Rng, SparseError, UpdateSchedule};

use crate::drop_grow::{DropGrow, DropGrowMethod, switches};
use crate::registry::{BuildContext, MethodSpec, Switch};
use crate::scores::magnitudes;

/// RigL settings.
#[derive(Config, Debug, PartialEq)]
pub struct RigLConfig {
    /// Steps between topology updates (ΔT).
    #[config(default = 100)]
    pub delta_t: u64,
    /// No update from this fraction of training on (`T_end / T`).
    #[config(default = 0.75)]
    pub end_fraction: f64,
    /// Initial drop fraction α.
    #[config(default = 0.3)]
    pub drop_fraction: f64,
    /// How the drop fraction decays over the updates.
    #[config(default = "DropSchedule::Cosine")]
    pub drop_schedule: DropSchedule,
    /// Exponent k of the exponential decay.
    #[config(default = 3.0)]
    pub drop_exponent: f64,
    /// Skip the optimizer step on update steps (rigl TF reference).
    #[config(default = true)]
    pub skip_weight_update: bool,
    /// Steps of dense gradient averaged for the grow score.
    #[config(default = 1)]
    pub grad_window: u64,
    /// Std of Gaussian tie-break noise on the scores (0 = off).
    #[config(default = 0.0)]
    pub tie_noise: f64,
}

/// RigL's updater: magnitude drop, dense-gradient grow.
#[derive(Debug)]
pub struct RigLUpdate {
    updates: UpdateSchedule,
    drop: DropFraction,
    skip_weight_update: bool,
    grad_window: u64,
    tie_noise: f64,
    accum: Vec<Vec<f32>>,
    accum_steps: u64,
}

/// RigL.
pub type RigL = DropGrowMethod<RigLUpdate>;

impl RigL {
    /// RigL with `config` for a run of `total_steps`.
    pub fn new(config: &RigLConfig, total_steps: u64) -> Result<Self> {
        let updates = UpdateSchedule::until_fraction(total_steps, config.end_fraction, config.delta_t)?;
        Self::with_schedule(config, updates)
    }

    /// RigL with `config`, updating on `updates` (its ΔT and end fraction unused).
    pub fn with_schedule(config: &RigLConfig, updates: UpdateSchedule) -> Result<Self> {
        updates.validate()?;
        if config.grad_window == 0 || config.tie_noise.is_nan() || config.tie_noise < 0.0 {
            return Err(SparseError::method(
                "rigl",
                "grad_window must be at least 1 and tie_noise >= 0",
            ));
        }
        Ok(Self::from_updater(RigLUpdate {
            updates,
            drop: config
                .drop_schedule
                .with_alpha(config.drop_fraction, config.drop_exponent)?,
            skip_weight_update: config.skip_weight_update,
            grad_window: config.grad_window,
            tie_noise: config.tie_noise,
            accum: Vec::new(),
            accum_steps: 0,
        }))
    }

    /// RigL with the paper's defaults for a run of `total_steps`.
    pub fn paper(total_steps: u64) -> Self {
        Self::from_updater(RigLUpdate {
            updates: UpdateSchedule::rigl(total_steps),
            drop: DropFraction::Cosine { alpha: 0.3 },
            skip_weight_update: true,
            grad_window: 1,
            tie_noise: 0.0,
            accum: Vec::new(),
            accum_steps: 0,
        })
    }
}

/// Adds `N(0, std²)` noise to scores (no-op for `std == 0`).
pub(crate) fn add_noise(scores: &mut [f32], std: f64, rng: &mut Rng) {
    if std > 0.0 {
        for s in scores {
            *s += (rng.normal() * std) as f32;
        }
    }
}

impl DropGrow for RigLUpdate {
    fn name(&self) -> &'static str {
        "rigl"
    }

    fn updates(&self) -> &UpdateSchedule {
        &self.updates
    }

    fn drop_fraction(&self) -> Option<&DropFraction> {
        Some(&self.drop)
    }

    fn skip_optimizer(&self) -> bool {
        self.skip_weight_update
    }

    fn needs_grads(&self, step: u64) -> bool {
        (0..self.grad_window.max(1)).any(|k| self.updates.is_update_step(step + k))
    }

    fn observe(&mut self, ctx: &StepContext<'_>) -> Result<()> {
        let update = self.updates.is_update_step(ctx.step());
        if update && self.accum.is_empty() {
            return Ok(()); // a window of one step uses this step's gradient directly
        }
        let grads = ctx.grads()?;
        if self.accum.len() != grads.len() {
            self.accum = grads.iter().map(|g| vec![0.0; g.len()]).collect();
            self.accum_steps = 0;
        }
        for (acc, g) in self.accum.iter_mut().zip(grads) {
            for (a, x) in acc.iter_mut().zip(g) {
                *a += x;
            }
        }
        self.accum_steps += 1;
        Ok(())
    }

    fn scores(&self, ctx: &StepContext<'_>, l: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let mut rng = ctx.rng(l, "rigl-noise");
        let mut drop = magnitudes(&ctx.weights()?[l]);
        let mut grow: Vec<f32> = if self.accum.is_empty() {
            ctx.grads()?[l].iter().map(|g| (g * 1.0).abs()).collect()
        } else {
            let scale = 1.0 / self.accum_steps as f32;
            self.accum[l].iter().map(|g| (g * scale).abs()).collect()
        };
        add_noise(&mut drop, self.tie_noise, &mut rng);
        add_noise(&mut grow, self.tie_noise, &mut rng);
        Ok((drop, grow))
    }

    fn end_update(&mut self) {
        self.accum.clear();
        self.accum_steps = 0;
    }

    fn save_state(&self) -> MethodState {
        let mut state = MethodState::default();
        state.values.insert("accum_steps".into(), self.accum_steps.into());
        for (l, a) in self.accum.iter().enumerate() {
            state.arrays.insert(format!("accum.{l}"), a.clone());
        }
        state
    }

    fn load_state(&mut self, state: MethodState) -> Result<()> {
        self.accum_steps = state.values.get("accum_steps").and_then(|v| v.as_u64()).unwrap_or(0);
        self.accum = (0..state.arrays.len())
            .map(|l| state.arrays.get(&format!("accum.{l}")).cloned().unwrap_or_default())
            .collect();
        Ok(())
    }
}

impl MethodSpec for RigLConfig {
    const NAME: &'static str = "rigl";
    const SUMMARY: &'static str = "drop by magnitude, grow by dense gradient (Evci et al. 2020)";
    const CHANGES_MASK: &'static str = "drop / gradient grow";
    const SWITCHES: &'static [Switch] = &[
        switches::DELTA_T,
        switches::END_FRACTION,
        switches::DROP_FRACTION,
        switches::DROP_SCHEDULE,
        switches::DROP_EXPONENT,
        switches::SKIP_WEIGHT_UPDATE,
        Switch::new("grad_window", "steps of dense gradient averaged for growth"),
        Switch::new("tie_noise", "std of Gaussian tie-break noise (0 = ties by index)"),
    ];

    fn default_config() -> Self {
        Self::new()
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn sparse_core::Method>> {
        Ok(Box::new(RigL::new(self, ctx.total_steps)?))
    }
}
