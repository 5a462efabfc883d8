//! Settings of a one-shot pruning run.

use burn::config::Config;
use sparse_core::distribution::Distribution;
use sparse_core::{LayerFilter, Pattern, SparseError};

use super::sparsegpt::SparseGptSettings;

/// Which weights go (and whether the rest is updated). Written as its name
/// (`"magnitude"`, `"wanda"`, `"sparsegpt"`) in config files, as on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OneShotMethod {
    /// Smallest `|W|` per layer ([`super::magnitude`]); needs no calibration data.
    Magnitude,
    /// Smallest `|W_ij|·‖X_j‖` per neuron ([`super::wanda`]).
    Wanda,
    /// OBS pruning with weight reconstruction ([`super::sparsegpt`]).
    SparseGpt,
}

impl OneShotMethod {
    /// Every method, in the order the help lists them.
    pub const ALL: [Self; 3] = [Self::Magnitude, Self::Wanda, Self::SparseGpt];

    /// Name as used on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Magnitude => "magnitude",
            Self::Wanda => "wanda",
            Self::SparseGpt => "sparsegpt",
        }
    }

    /// Whether it scores the weights on the layers' calibration inputs (Wanda,
    /// SparseGPT); magnitude pruning needs no data.
    pub fn needs_calibration(&self) -> bool {
        *self != Self::Magnitude
    }

    /// Whether it reconstructs the kept weights (SparseGPT), the only method
    /// whose [`SparseGptSettings`] (block size, dampening) take effect.
    pub fn reconstructs(&self) -> bool {
        *self == Self::SparseGpt
    }
}

impl std::fmt::Display for OneShotMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for OneShotMethod {
    type Err = SparseError;

    fn from_str(s: &str) -> Result<Self, SparseError> {
        Self::ALL.into_iter().find(|m| m.name() == s.trim()).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|m| m.name()).collect();
            SparseError::InvalidConfig(format!(
                "unknown one-shot pruning method `{s}`; use {}",
                names.join(", ")
            ))
        })
    }
}

impl serde::Serialize for OneShotMethod {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for OneShotMethod {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl burn::config::Config for OneShotMethod {}

/// Where each layer's calibration inputs come from.
#[derive(Config, Debug, PartialEq)]
pub enum CaptureMode {
    /// Layer by layer in forward order: each layer's inputs are captured from the model
    /// whose earlier layers are already pruned (and, with SparseGPT, updated), so each
    /// layer compensates the errors of those before it (SparseGPT's sequential scheme,
    /// done per layer rather than per transformer block). One (early-stopped)
    /// forward pass over the calibration set per layer.
    Sequential,
    /// One forward pass of the dense model captures every layer's inputs, and every
    /// layer is pruned from them. Faster (one pass), but holds every layer's statistics
    /// at once (SparseGPT: a `fan-in²` Hessian per layer) and ignores error propagation.
    OnePass,
}

/// A one-shot pruning run: method, sparsity, pattern and where the inputs come from.
#[derive(Config, Debug, PartialEq)]
pub struct OneShotConfig {
    /// The method.
    pub method: OneShotMethod,
    /// Target sparsity in `[0, 1)`; must be `1 − N/M` under an N:M pattern.
    #[config(default = 0.5)]
    pub sparsity: f64,
    /// `Unstructured` or `NM { n, m }` (`n` kept of every `m` fan-in weights).
    #[config(default = "Pattern::Unstructured")]
    pub pattern: Pattern,
    /// How the sparsity is spread over layers. `Uniform` (the papers' setting) prunes
    /// every layer to the target; `Global` ranks every weight of every layer by the
    /// method's layer-comparable saliency (magnitude: `|W|`; Wanda and SparseGPT:
    /// `|W_ij|` times the RMS of input feature `j` over its tokens, from the dense model)
    /// to set each layer's sparsity, then prunes each layer with the method at that
    /// sparsity; ER/ERK/explicit set per-layer sparsities the same way.
    #[config(default = "Distribution::Uniform { dense_first_layer: false }")]
    pub distribution: Distribution,
    /// Sequential (default) or one pass.
    #[config(default = "CaptureMode::Sequential")]
    pub mode: CaptureMode,
    /// Which conv/linear weights are pruned.
    #[config(default = "LayerFilter::new()")]
    pub filter: LayerFilter,
    /// SparseGPT: columns per lazy-update and mask-selection block (paper: 128).
    #[config(default = 128)]
    pub block_size: usize,
    /// SparseGPT: dampening as a fraction of the mean Hessian diagonal (paper: 0.01).
    #[config(default = 0.01)]
    pub dampening: f64,
    /// Report each layer's reconstruction error `‖WX − ŴX‖²` (needs the `fan-in²` Gram
    /// matrix of every layer's inputs, which Wanda alone would not).
    #[config(default = true)]
    pub report_error: bool,
}

impl OneShotConfig {
    /// SparseGPT's settings.
    pub fn sparsegpt(&self) -> SparseGptSettings {
        SparseGptSettings {
            block_size: self.block_size,
            dampening: self.dampening,
        }
    }
}
