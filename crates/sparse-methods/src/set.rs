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
use sparse_core::method::{InitContext, Method, Needs, StepContext};
use sparse_core::{DropFraction, Mask, Result, UpdateSchedule};

use crate::init::{exchange_all, magnitudes, random_masks};

/// SET settings.
#[derive(Config, Debug)]
pub struct SetConfig {
    /// When updates run.
    pub updates: UpdateSchedule,
    /// ζ (constant 0.3 in the paper).
    #[config(default = "DropFraction::Constant { alpha: 0.3 }")]
    pub drop_fraction: DropFraction,
}

/// SET.
#[derive(Debug)]
pub struct Set {
    config: SetConfig,
}

impl Set {
    /// SET with `config`.
    pub fn new(config: SetConfig) -> Self {
        Self { config }
    }
}

impl Method for Set {
    fn name(&self) -> &'static str {
        "set"
    }

    fn init(&mut self, ctx: &mut InitContext<'_>, masks: &mut [Mask]) -> Result<()> {
        self.config.updates.validate()?;
        self.config.drop_fraction.validate()?;
        masks.clone_from_slice(&random_masks(ctx)?);
        Ok(())
    }

    fn needs(&self, step: u64) -> Needs {
        Needs {
            grads: false,
            update: self.config.updates.is_update_step(step),
            skip_optimizer: false,
        }
    }

    fn on_step(&mut self, ctx: &mut StepContext<'_>) -> Result<()> {
        let fraction = self.drop_fraction(ctx.step).unwrap_or(0.0);
        exchange_all(ctx, fraction, |ctx, l| {
            let grow = ctx.rng(l, "set-grow").scores(ctx.layers()[l].numel());
            (magnitudes(&ctx.weights[l]), grow)
        });
        Ok(())
    }

    fn drop_fraction(&self, step: u64) -> Option<f64> {
        Some(self.config.drop_fraction.at(self.config.updates.progress(step)))
    }
}
