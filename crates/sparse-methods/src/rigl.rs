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
//! * `drop_noise` (default `1e-5`, as rigl's TF1 code, the paper's ImageNet
//!   code: `generic_mask_update(..., noise_std=1e-5)` adds `N(0, 1e-5²)` to the
//!   drop scores `|θ|` only, re-drawn at every update): breaks ties among
//!   equal magnitudes at random; 0 breaks them by flat index, as rigl's TF2 code
//!   and jaxpruner (no noise);
//! * `grow_noise` (default 0; in no reference, our variant): the same noise on
//!   the grow scores. `drop_noise = grow_noise = x` is what the former
//!   `tie_noise = x` did (noise on both scores, same draws).
//!
//! Remaining differences to the TF1 code: its drop ranking runs over all
//! entries, so an inactive entry (score = noise) could in principle outrank an
//! active weight with `|θ| ≲ 4·10⁻⁵`; ours ranks only active weights for keeping.
//! Its noise generator is TensorFlow's stateless normal seeded by the layer and
//! step; ours is the run's counter-based generator for (layer, step), so the draws
//! differ but have the same distribution.

use burn::config::Config;
use sparse_core::method::{CompactRule, Growth, MethodState, SparseExecution, StepContext};
use sparse_core::{DropFraction, DropSchedule, Result, Rng, SparseError, UpdateSchedule};

use crate::drop_grow::{DropGrow, DropGrowMethod, switches};
use crate::grad_window::GradWindow;
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
    /// Std of Gaussian noise on the drop scores (1e-5: rigl's TF1 code; 0 = off).
    #[config(default = 1e-5)]
    pub drop_noise: f64,
    /// Std of Gaussian noise on the grow scores (0 = off, as every reference).
    #[config(default = 0.0)]
    pub grow_noise: f64,
}

/// RigL's updater: magnitude drop, dense-gradient grow.
#[derive(Debug)]
pub struct RigLUpdate {
    updates: UpdateSchedule,
    drop: DropFraction,
    skip_weight_update: bool,
    window: GradWindow,
    drop_noise: f64,
    grow_noise: f64,
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
        let bad_noise = |x: f64| x.is_nan() || x < 0.0;
        if config.grad_window == 0 || bad_noise(config.drop_noise) || bad_noise(config.grow_noise) {
            return Err(SparseError::method(
                "rigl",
                "grad_window must be at least 1, drop_noise and grow_noise >= 0",
            ));
        }
        Ok(Self::from_updater(RigLUpdate {
            updates,
            drop: config
                .drop_schedule
                .with_alpha(config.drop_fraction, config.drop_exponent)?,
            skip_weight_update: config.skip_weight_update,
            window: GradWindow::new(config.grad_window),
            drop_noise: config.drop_noise,
            grow_noise: config.grow_noise,
        }))
    }

    /// RigL with the paper's defaults for a run of `total_steps`.
    pub fn paper(total_steps: u64) -> Self {
        Self::from_updater(RigLUpdate {
            updates: UpdateSchedule::rigl(total_steps),
            drop: DropFraction::Cosine { alpha: 0.3 },
            skip_weight_update: true,
            window: GradWindow::new(1),
            drop_noise: 1e-5,
            grow_noise: 0.0,
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

/// [`add_noise`] at the positions of `only` alone: the same noise there (the
/// stream is skipped to each position's draws), the other scores unchanged,
/// and `rng` left where [`add_noise`] leaves it. The drop scores are read at
/// active positions only, so their noise is drawn there only: `nnz` normal
/// samples instead of one per weight.
pub(crate) fn add_noise_at(scores: &mut [f32], std: f64, rng: &mut Rng, only: &sparse_core::Mask) {
    if std <= 0.0 {
        return;
    }
    let start = rng.clone();
    for i in only.iter_ones() {
        let mut r = start.clone();
        r.skip(2 * i as u64); // a normal sample takes two draws
        scores[i] += (r.normal() * std) as f32;
    }
    rng.skip(2 * scores.len() as u64);
}

impl DropGrow for RigLUpdate {
    fn sparse_execution(&self) -> SparseExecution {
        // grows by the dense gradient's magnitude on update steps
        SparseExecution::DenseGradientAtUpdates
    }

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

    fn compact_rule(&self) -> Option<CompactRule> {
        // the compact growth reads the update step's gradient only, unperturbed
        (self.window.span() == 1 && self.grow_noise == 0.0).then_some(CompactRule {
            growth: Growth::Gradient,
            drop_noise: self.drop_noise,
        })
    }

    fn needs_grads(&self, step: u64) -> bool {
        self.window.needs(&self.updates, step)
    }

    fn observe(&mut self, ctx: &StepContext<'_>) -> Result<()> {
        self.window.observe(&self.updates, ctx)
    }

    fn scores(&self, ctx: &StepContext<'_>, l: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let mut rng = ctx.rng(l, "rigl-noise");
        let mut drop = magnitudes(&ctx.weights()?[l]);
        let mut grow = self.window.grow_scores(ctx, l)?;
        // the drop scores are read at active positions only (`Pattern::exchange`)
        add_noise_at(&mut drop, self.drop_noise, &mut rng, &ctx.masks()[l]);
        add_noise(&mut grow, self.grow_noise, &mut rng);
        Ok((drop, grow))
    }

    fn end_update(&mut self) {
        self.window.clear();
    }

    fn save_state(&self) -> MethodState {
        self.window.save_state()
    }

    fn load_state(&mut self, state: MethodState) -> Result<()> {
        self.window.load_state(&state);
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
        Switch::new(
            "drop_noise",
            "std of Gaussian noise on the drop scores (rigl TF1: 1e-5)",
        ),
        Switch::new("grow_noise", "std of Gaussian noise on the grow scores (ours; 0 = off)"),
    ];

    fn default_config() -> Self {
        Self::new()
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn sparse_core::Method>> {
        Ok(Box::new(RigL::new(self, ctx.total_steps)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The noise drawn at the active positions alone equals the noise drawn
    /// at every position, there, bit for bit; the stream ends at the same place.
    #[test]
    fn noise_at_active_positions_equals_the_full_draw_there() {
        let n = 257;
        let only = sparse_core::Mask::from_indices(n, (0..n).filter(|i| i % 3 == 1 || i % 7 == 0));
        let base: Vec<f32> = (0..n).map(|i| i as f32 * 0.01).collect();
        let (mut full, mut sparse) = (base.clone(), base.clone());
        let (mut a, mut b) = (Rng::new(11), Rng::new(11));
        add_noise(&mut full, 1e-3, &mut a);
        add_noise_at(&mut sparse, 1e-3, &mut b, &only);
        for i in 0..n {
            let want = if only.get(i) { full[i] } else { base[i] };
            assert_eq!(sparse[i].to_bits(), want.to_bits(), "position {i}");
        }
        assert_eq!(a.next_u64(), b.next_u64());
        assert!(full.iter().zip(&base).any(|(f, b)| f != b), "no noise drawn");
    }
}
