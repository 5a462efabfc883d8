//! SET: Sparse Evolutionary Training (Mocanu, Mocanu, Stone, Nguyen, Gibescu &
//! Liotta, Nature Communications 2018).
//!
//! Starts from a random Erdős–Rényi mask (choose `Distribution::Er`, ε = 20 in the
//! paper, i.e. the target density) and at every update drops the fraction ζ of
//! active weights with the smallest magnitude and regrows as many at uniformly
//! random inactive positions:
//!
//! ```text
//! M' = TopK(|θ| ⊙ M, n_active − k) ∪ Random(¬TopK(|θ| ⊙ M, n_active − k), k),  k = ⌊ζ·n_active⌋
//! ```
//!
//! Defaults: ζ = 0.3 (constant; RigL's re-implementation also allows cosine
//! decay), updates every ΔT steps (the paper updates once per epoch: set ΔT to the
//! steps per epoch). Deviation: the paper drops ζ/2 of the largest negative and
//! ζ/2 of the smallest positive weights; we drop by |w| as RigL's and
//! jaxpruner's re-implementations do. Regrowth happens inside the pattern.

use burn::config::Config;
use sparse_core::method::{CompactRule, Growth, StepContext};
use sparse_core::{DropFraction, DropSchedule, Result, UpdateSchedule};

use crate::drop_grow::{DropGrow, DropGrowMethod, switches};
use crate::registry::{BuildContext, MethodSpec, Switch};
use crate::scores::magnitudes;

/// SET settings.
#[derive(Config, Debug, PartialEq)]
pub struct SetConfig {
    /// Steps between topology updates (ΔT; the paper: one epoch).
    #[config(default = 100)]
    pub delta_t: u64,
    /// No update from this fraction of training on.
    #[config(default = 0.75)]
    pub end_fraction: f64,
    /// ζ, the fraction of active weights exchanged.
    #[config(default = 0.3)]
    pub drop_fraction: f64,
    /// How ζ changes over the updates (constant in the paper).
    #[config(default = "DropSchedule::Constant")]
    pub drop_schedule: DropSchedule,
    /// Exponent k of the exponential change.
    #[config(default = 3.0)]
    pub drop_exponent: f64,
}

/// SET's updater: magnitude drop, random grow.
#[derive(Debug)]
pub struct SetUpdate {
    updates: UpdateSchedule,
    drop: DropFraction,
}

/// SET.
pub type Set = DropGrowMethod<SetUpdate>;

impl Set {
    /// SET with `config` for a run of `total_steps`.
    pub fn new(config: &SetConfig, total_steps: u64) -> Result<Self> {
        let updates = UpdateSchedule::until_fraction(total_steps, config.end_fraction, config.delta_t)?;
        Self::with_schedule(config, updates)
    }

    /// SET with `config`, updating on `updates` (its ΔT and end fraction unused).
    pub fn with_schedule(config: &SetConfig, updates: UpdateSchedule) -> Result<Self> {
        updates.validate()?;
        let drop = config
            .drop_schedule
            .with_alpha(config.drop_fraction, config.drop_exponent)?;
        Ok(Self::from_updater(SetUpdate { updates, drop }))
    }
}

impl DropGrow for SetUpdate {
    fn name(&self) -> &'static str {
        "set"
    }

    fn updates(&self) -> &UpdateSchedule {
        &self.updates
    }

    fn drop_fraction(&self) -> Option<&DropFraction> {
        Some(&self.drop)
    }

    fn compact_rule(&self) -> Option<CompactRule> {
        Some(CompactRule {
            growth: Growth::Random,
            drop_noise: 0.0,
        })
    }

    fn scores(&self, ctx: &StepContext<'_>, l: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let grow = ctx.rng(l, "set-grow").scores(ctx.layers()[l].numel());
        Ok((magnitudes(&ctx.weights()?[l]), grow))
    }
}

impl MethodSpec for SetConfig {
    const NAME: &'static str = "set";
    const SUMMARY: &'static str = "drop by magnitude, grow at random (Mocanu et al. 2018)";
    const CHANGES_MASK: &'static str = "drop / random grow";
    const SWITCHES: &'static [Switch] = &[
        switches::DELTA_T,
        switches::END_FRACTION,
        switches::DROP_FRACTION,
        switches::DROP_SCHEDULE,
        switches::DROP_EXPONENT,
    ];

    fn default_config() -> Self {
        Self::new()
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn sparse_core::Method>> {
        Ok(Box::new(Set::new(self, ctx.total_steps)?))
    }
}
