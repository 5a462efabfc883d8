//! Sparse-aware initialisation: after the first masks are set, every output
//! neuron `o` of every sparse layer (a layer whose mask is not all-ones) is
//! redrawn from a normal distribution scaled by its *sparse* fan-in
//! `k_o = Σ_j M(o, j)`, so that the signal through a sparse layer keeps the scale
//! a dense initialisation gives a dense layer (Evci, Ioannou, Keskin & Dauphin,
//! *Gradient Flow in Sparse Neural Networks and How Lottery Tickets Win*, AAAI 2022):
//!
//! ```text
//! grad-flow:       θ(o, j) ~ N(0, (2/k_o)²)      (condensed-sparsity `grad_flow_init`)
//! sparse-kaiming:  θ(o, j) ~ N(0, 2/k_o)          (the paper; condensed-sparsity `sparse_kaiming_normal`)
//! ```
//!
//! `grad-flow` is the one condensed-sparsity (SRigL's reference) uses by default;
//! it passes `2/k_o` as torch's *standard deviation*, where the paper scales the
//! *variance* by `2/k_o`; `sparse-kaiming` is the paper's rule. Inactive entries
//! and neurons with no active weight are 0; biases and dense layers are left
//! alone. The draws come from `Rng::for_layer(seed, path, 0, "sparse-init")`,
//! neuron by neuron, fan-in position by fan-in position, active entries only.

use serde::{Deserialize, Serialize};

use crate::layer::SparseLayer;
use crate::mask::Mask;
use crate::rng::Rng;

/// How sparse weights are initialised after the first masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SparseInit {
    /// Std `2/k_o` per neuron (condensed-sparsity's `grad_flow_init`, SRigL's reference).
    GradFlow,
    /// Std `√(2/k_o)` per neuron (Evci et al. 2022, He initialisation on the sparse fan-in).
    SparseKaiming,
    /// Keep the model's own initialisation (masked).
    None,
}

impl SparseInit {
    /// The standard deviation for a neuron with `k` active inputs.
    pub fn std(self, k: usize) -> Option<f64> {
        let k = k as f64;
        match self {
            Self::GradFlow => Some(2.0 / k),
            Self::SparseKaiming => Some((2.0 / k).sqrt()),
            Self::None => None,
        }
    }

    /// Redraws the weights of every layer whose mask is not all-ones; returns
    /// whether any weight changed.
    pub fn apply(self, layers: &[SparseLayer], masks: &[Mask], weights: &mut [Vec<f32>], seed: u64) -> bool {
        if self == Self::None {
            return false;
        }
        let mut changed = false;
        for ((layer, mask), w) in layers.iter().zip(masks).zip(weights.iter_mut()) {
            if mask.count_ones() == layer.numel() {
                continue;
            }
            self.apply_layer(layer, mask, w, seed);
            changed = true;
        }
        changed
    }

    fn apply_layer(self, layer: &SparseLayer, mask: &Mask, w: &mut [f32], seed: u64) {
        let mut rng = Rng::for_layer(seed, &layer.path, 0, "sparse-init");
        for o in 0..layer.neurons() {
            let k = (0..layer.fan_in()).filter(|&j| mask.get(layer.flat(o, j))).count();
            for j in 0..layer.fan_in() {
                let f = layer.flat(o, j);
                w[f] = match self.std(k) {
                    Some(std) if mask.get(f) => (rng.normal() * std) as f32,
                    _ => 0.0,
                };
            }
        }
    }
}

impl std::fmt::Display for SparseInit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::GradFlow => "grad-flow",
            Self::SparseKaiming => "sparse-kaiming",
            Self::None => "none",
        })
    }
}

impl std::str::FromStr for SparseInit {
    type Err = crate::error::SparseError;

    /// Parses `grad-flow`, `sparse-kaiming` or `none`.
    fn from_str(s: &str) -> crate::error::Result<Self> {
        match s.trim() {
            "grad-flow" => Ok(Self::GradFlow),
            "sparse-kaiming" => Ok(Self::SparseKaiming),
            "none" => Ok(Self::None),
            other => Err(crate::error::SparseError::InvalidConfig(format!(
                "sparse init `{other}`; use grad-flow, sparse-kaiming or none"
            ))),
        }
    }
}
