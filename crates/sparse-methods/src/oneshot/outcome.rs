//! What one-shot pruning returns: per layer, the mask, the new weights and the
//! reconstruction error.

use std::collections::BTreeMap;

use burn::module::Module;
use sparse_core::{Mask, Result};

use super::weights::write_weights;

/// The result for one layer.
#[derive(Clone, Debug)]
pub struct LayerReport {
    /// Weight path (as [`sparse_core::discover`] spells it).
    pub path: String,
    /// Weight shape.
    pub shape: Vec<usize>,
    /// Kept weights (`true`), over the tensor's row-major elements.
    pub mask: Mask,
    /// The pruned weights, row-major: the originals masked (magnitude, Wanda) or
    /// reconstructed (SparseGPT); pruned entries are exactly 0.
    pub weights: Vec<f32>,
    /// The sparsity this layer was asked for (`1 − N/M` under N:M).
    pub target_sparsity: f64,
    /// Calibration tokens this layer saw (0 without calibration data).
    pub tokens: u64,
    /// `‖W·X − Ŵ·X‖²_F` over the calibration tokens, when reported. In sequential mode
    /// `X` is the input of the already-pruned model, in one-pass mode of the dense one.
    pub error: Option<f64>,
    /// `‖W·X‖²_F` of the dense weights on the same inputs (`error / output_energy` is
    /// the relative error).
    pub output_energy: Option<f64>,
}

impl LayerReport {
    /// Achieved sparsity (pruned fraction).
    pub fn sparsity(&self) -> f64 {
        1.0 - self.mask.density()
    }

    /// `error / output_energy`, when both are known and the energy is positive.
    pub fn relative_error(&self) -> Option<f64> {
        match (self.error, self.output_energy) {
            (Some(e), Some(o)) if o > 0.0 => Some(e / o),
            _ => None,
        }
    }
}

/// The result of [`super::prune`]: one report per pruned layer, in pruning order.
#[derive(Clone, Debug)]
pub struct OneShotOutcome {
    /// Per layer.
    pub layers: Vec<LayerReport>,
}

impl OneShotOutcome {
    /// The masks by weight path.
    pub fn masks(&self) -> BTreeMap<String, Mask> {
        self.layers.iter().map(|l| (l.path.clone(), l.mask.clone())).collect()
    }

    /// The pruned weights by path.
    pub fn weights(&self) -> BTreeMap<String, Vec<f32>> {
        self.layers
            .iter()
            .map(|l| (l.path.clone(), l.weights.clone()))
            .collect()
    }

    /// Sum of the layers' reconstruction errors, when reported.
    pub fn total_error(&self) -> Option<f64> {
        self.layers.iter().map(|l| l.error).sum()
    }

    /// Pruned fraction of all pruned layers' weights.
    pub fn sparsity(&self) -> f64 {
        let total: usize = self.layers.iter().map(|l| l.mask.len()).sum();
        let kept: usize = self.layers.iter().map(|l| l.mask.count_ones()).sum();
        if total == 0 {
            0.0
        } else {
            1.0 - kept as f64 / total as f64
        }
    }

    /// Writes the pruned weights into `model` (an instance of the pruned architecture,
    /// on any device, in training or inference mode: parameter ids and training
    /// settings are kept).
    pub fn apply<M: Module>(&self, model: M) -> Result<M> {
        write_weights(model, &self.weights())
    }
}
