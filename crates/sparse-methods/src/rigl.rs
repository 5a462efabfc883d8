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
use sparse_core::method::{InitContext, Method, MethodState, Needs, StepContext};
use sparse_core::{DropFraction, Mask, Result, Rng, UpdateSchedule};

use crate::init::{exchange_all, magnitudes, random_masks};

/// RigL settings.
#[derive(Config, Debug)]
pub struct RigLConfig {
    /// When updates run (RigL: every 100 steps until 75% of training).
    pub updates: UpdateSchedule,
    /// Drop fraction over the update schedule's progress (RigL: cosine, α = 0.3).
    #[config(default = "DropFraction::Cosine { alpha: 0.3 }")]
    pub drop_fraction: DropFraction,
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

/// RigL.
#[derive(Debug)]
pub struct RigL {
    config: RigLConfig,
    accum: Vec<Vec<f32>>,
    accum_steps: u64,
}

impl RigL {
    /// RigL with `config`.
    pub fn new(config: RigLConfig) -> Self {
        Self {
            config,
            accum: Vec::new(),
            accum_steps: 0,
        }
    }

    /// RigL with the paper's defaults for a run of `total_steps`.
    pub fn paper(total_steps: u64) -> Self {
        Self::new(RigLConfig::new(UpdateSchedule::rigl(total_steps)))
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

impl Method for RigL {
    fn name(&self) -> &'static str {
        "rigl"
    }

    fn init(&mut self, ctx: &mut InitContext<'_>, masks: &mut [Mask]) -> Result<()> {
        self.config.updates.validate()?;
        self.config.drop_fraction.validate()?;
        masks.clone_from_slice(&random_masks(ctx)?);
        Ok(())
    }

    fn needs(&self, step: u64) -> Needs {
        let update = self.config.updates.is_update_step(step);
        let window = self.config.grad_window.max(1);
        Needs {
            grads: (0..window).any(|k| self.config.updates.is_update_step(step + k)),
            update,
            skip_optimizer: update && self.config.skip_weight_update,
        }
    }

    fn on_step(&mut self, ctx: &mut StepContext<'_>) -> Result<()> {
        let update = self.config.updates.is_update_step(ctx.step);
        if !update || !self.accum.is_empty() {
            if self.accum.len() != ctx.grads.len() {
                self.accum = ctx.grads.iter().map(|g| vec![0.0; g.len()]).collect();
                self.accum_steps = 0;
            }
            for (acc, g) in self.accum.iter_mut().zip(ctx.grads) {
                for (a, x) in acc.iter_mut().zip(g) {
                    *a += x;
                }
            }
            self.accum_steps += 1;
        }
        if !update {
            return Ok(());
        }
        // a window of one step uses this step's gradient directly, without a copy
        let grads: &[Vec<f32>] = ctx.grads;
        let (sums, scale) = if self.accum.is_empty() {
            (grads, 1.0)
        } else {
            (self.accum.as_slice(), 1.0 / self.accum_steps as f32)
        };
        let fraction = self.drop_fraction(ctx.step).unwrap_or(0.0);
        let noise = self.config.tie_noise;
        exchange_all(ctx, fraction, |ctx, l| {
            let mut rng = ctx.rng(l, "rigl-noise");
            let mut drop = magnitudes(&ctx.weights[l]);
            let mut grow: Vec<f32> = sums[l].iter().map(|g| (g * scale).abs()).collect();
            add_noise(&mut drop, noise, &mut rng);
            add_noise(&mut grow, noise, &mut rng);
            (drop, grow)
        });
        self.accum.clear();
        self.accum_steps = 0;
        Ok(())
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

    fn drop_fraction(&self, step: u64) -> Option<f64> {
        Some(self.config.drop_fraction.at(self.config.updates.progress(step)))
    }
}
