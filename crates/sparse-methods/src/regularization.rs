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
//! The gradient is added by the hook before each optimizer step: a penalty is a
//! [`GradTerm`] given to the `Sparsifier` (`Sparsifier::with_grad_term`), so it
//! combines with any method: alone (the dense baseline, or static random at
//! sparsity 0) it drives weights or whole neurons towards zero; with GMP or a
//! lottery-ticket round it prepares magnitude pruning.

use burn::config::Config;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};
use sparse_core::{GradTerm, LayerKind, Result, SparseError, SparseLayer};

/// Which penalty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Penalty {
    /// `Σ|w|`.
    L1,
    /// `Σ_i ‖W_i‖₂` over output neurons (channels).
    GroupLasso,
}

/// Regularization settings.
#[derive(Config, Debug, PartialEq)]
pub struct RegularizationConfig {
    /// The penalty.
    pub kind: Penalty,
    /// λ.
    #[config(default = 1e-4)]
    pub strength: f64,
    /// Steps of linear warm-up of λ.
    #[config(default = 0)]
    pub warmup: u64,
    /// No penalty from this step on (none: to the end).
    #[config(default = "None")]
    pub end: Option<u64>,
}

impl RegularizationConfig {
    /// λ_t.
    pub fn strength_at(&self, step: u64) -> f64 {
        if self.end.is_some_and(|end| step >= end) {
            return 0.0;
        }
        let ramp = if self.warmup == 0 {
            1.0
        } else {
            (step as f64 / self.warmup as f64).min(1.0)
        };
        self.strength * ramp
    }

    /// The penalty's gradient term, checked.
    pub fn term(&self) -> Result<Regularization> {
        if !self.strength.is_finite() || self.strength < 0.0 {
            return Err(SparseError::method(
                "regularization",
                format!("strength {} must be a number >= 0", self.strength),
            ));
        }
        Ok(Regularization { config: self.clone() })
    }
}

/// A penalty's gradient term (give it to `Sparsifier::with_grad_term`).
#[derive(Clone, Debug)]
pub struct Regularization {
    config: RegularizationConfig,
}

impl GradTerm for Regularization {
    fn term(&self, step: u64, layer: &SparseLayer, weight: Tensor<1>) -> Option<Tensor<1>> {
        let lambda = self.config.strength_at(step) as f32;
        if lambda <= 0.0 {
            return None;
        }
        Some(match self.config.kind {
            Penalty::L1 => weight.sign().mul_scalar(lambda),
            Penalty::GroupLasso => neuron_unit_directions(layer, weight).mul_scalar(lambda),
        })
    }
}

/// `W_i/‖W_i‖₂` for every output neuron `i` (0 where a neuron is all zero): the
/// gradient of the group-lasso penalty `Σ_i ‖W_i‖₂`.
pub fn neuron_unit_directions<const D: usize>(layer: &SparseLayer, weight: Tensor<D>) -> Tensor<D> {
    let dims = weight.dims();
    let (neurons, fan_in) = (layer.neurons(), layer.fan_in());
    let rows: Tensor<2> = match layer.kind {
        LayerKind::Linear => weight.reshape([fan_in, neurons]).transpose(),
        LayerKind::Conv => weight.reshape([neurons, fan_in]),
    };
    let norms = rows.clone().square().sum_dim(1).sqrt();
    let safe = norms.clone().mask_fill(norms.equal_elem(0.0), 1.0);
    let unit = rows / safe;
    match layer.kind {
        LayerKind::Linear => unit.transpose().reshape(dims),
        LayerKind::Conv => unit.reshape(dims),
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
