//! Sparsity regularization: L1 (Tibshirani 1996; Han et al. 2015) and group lasso
//! over output neurons (Yuan & Lin 2006; Wen et al. 2016, "structured sparsity
//! learning") on the sparse weights, with a strength schedule.
//!
//! ```text
//! L1:          R(W) = λ_t · Σ_j |w_j|          ∂R/∂W = λ_t · sign(W)
//! group lasso: R(W) = λ_t · Σ_i ‖W_i‖₂         ∂R/∂W_i = λ_t · W_i / ‖W_i‖₂   (W_i: neuron i's fan-in)
//! λ_t = λ · min(1, t / warmup)   for t < end, 0 after
//! ```
//!
//! The gradient is added by the hook before each optimizer step. [`Regularized`]
//! wraps any method: alone (around [`crate::StaticRandom`] at sparsity 0, or a dense
//! mask) it drives weights or whole neurons towards zero; around GMP or a
//! lottery-ticket round it prepares magnitude pruning.

use burn::config::Config;
use sparse_core::method::{GradTerm, InitContext, Method, MethodState, Needs, StepContext};
use sparse_core::{Mask, Result, SparseLayer};

/// Which penalty.
#[derive(Config, Debug, PartialEq, Eq, Copy)]
pub enum Penalty {
    /// `Σ|w|`.
    L1,
    /// `Σ_i ‖W_i‖₂` over output neurons (channels).
    GroupLasso,
}

/// Regularization settings.
#[derive(Config, Debug)]
pub struct RegularizationConfig {
    /// The penalty.
    pub penalty: Penalty,
    /// λ.
    pub strength: f64,
    /// Steps of linear warm-up of λ.
    #[config(default = 0)]
    pub warmup: u64,
    /// No penalty from this step on.
    #[config(default = "u64::MAX")]
    pub end: u64,
}

impl RegularizationConfig {
    /// λ_t.
    pub fn strength_at(&self, step: u64) -> f64 {
        if step >= self.end {
            return 0.0;
        }
        let ramp = if self.warmup == 0 {
            1.0
        } else {
            (step as f64 / self.warmup as f64).min(1.0)
        };
        self.strength * ramp
    }
}

/// The penalty value `R(W)` (without λ) of one layer.
pub fn penalty_value(penalty: Penalty, layer: &SparseLayer, weights: &[f32]) -> f64 {
    match penalty {
        Penalty::L1 => weights.iter().map(|w| f64::from(w.abs())).sum(),
        Penalty::GroupLasso => (0..layer.neurons())
            .map(|o| {
                layer
                    .neuron_indices(o)
                    .map(|f| f64::from(weights[f]).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .sum(),
    }
}

/// The gradient `∂R/∂W` (without λ) of one layer, on the host.
pub fn penalty_gradient(penalty: Penalty, layer: &SparseLayer, weights: &[f32]) -> Vec<f32> {
    match penalty {
        Penalty::L1 => weights
            .iter()
            .map(|w| if *w == 0.0 { 0.0 } else { w.signum() })
            .collect(),
        Penalty::GroupLasso => {
            let mut g = vec![0.0; weights.len()];
            for o in 0..layer.neurons() {
                let norm = layer.neuron_indices(o).map(|f| weights[f].powi(2)).sum::<f32>().sqrt();
                if norm > 0.0 {
                    for f in layer.neuron_indices(o) {
                        g[f] = weights[f] / norm;
                    }
                }
            }
            g
        }
    }
}

/// Any method plus a sparsity penalty.
pub struct Regularized {
    inner: Box<dyn Method>,
    config: RegularizationConfig,
    step: u64,
}

impl std::fmt::Debug for Regularized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Regularized")
            .field("inner", &self.inner.name())
            .field("config", &self.config)
            .finish()
    }
}

impl Regularized {
    /// `inner` with the penalty of `config`.
    pub fn new(inner: impl Method + 'static, config: RegularizationConfig) -> Self {
        Self {
            inner: Box::new(inner),
            config,
            step: 0,
        }
    }
}

impl Method for Regularized {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn init(&mut self, ctx: &mut InitContext<'_>, masks: &mut [Mask]) -> Result<()> {
        if self.config.strength.is_nan() || self.config.strength < 0.0 {
            return Err(sparse_core::SparseError::method(
                "regularization",
                "strength must be >= 0",
            ));
        }
        self.inner.init(ctx, masks)
    }

    fn begin_step(&mut self, step: u64) {
        self.step = step;
        self.inner.begin_step(step);
    }

    fn hard_masks(&self) -> bool {
        self.inner.hard_masks()
    }

    fn extra_params(&self) -> Vec<String> {
        self.inner.extra_params()
    }

    fn decay_overrides(&self) -> Vec<(String, f64)> {
        self.inner.decay_overrides()
    }

    fn grad_terms(&self) -> Vec<GradTerm> {
        let mut terms = self.inner.grad_terms();
        let lambda = self.config.strength_at(self.step) as f32;
        if lambda > 0.0 {
            terms.push(match self.config.penalty {
                Penalty::L1 => GradTerm::L1 { lambda },
                Penalty::GroupLasso => GradTerm::GroupLasso { lambda },
            });
        }
        terms
    }

    fn needs(&self, step: u64) -> Needs {
        self.inner.needs(step)
    }

    fn on_step(&mut self, ctx: &mut StepContext<'_>) -> Result<()> {
        self.inner.on_step(ctx)
    }

    fn save_state(&self) -> MethodState {
        self.inner.save_state()
    }

    fn load_state(&mut self, state: MethodState) -> Result<()> {
        self.inner.load_state(state)
    }

    fn drop_fraction(&self, step: u64) -> Option<f64> {
        self.inner.drop_fraction(step)
    }
}
