//! Optimizer settings: SGD (PyTorch semantics) and Adam/AdamW, and their checks.

use burn::config::Config;
use serde::{Deserialize, Serialize};

use super::MaskedOptimizer;
use crate::error::{Result, SparseError};

/// SGD settings (PyTorch semantics: dampening 0 by default, unlike Burn's 0.1).
#[derive(Config, Debug, PartialEq)]
pub struct SgdSettings {
    /// Momentum μ (0 disables momentum).
    #[config(default = 0.0)]
    pub momentum: f64,
    /// Dampening applied to the gradient in the velocity update (not on the first step).
    #[config(default = 0.0)]
    pub dampening: f64,
    /// Nesterov momentum.
    #[config(default = false)]
    pub nesterov: bool,
    /// L2 penalty added to the gradient.
    #[config(default = 0.0)]
    pub weight_decay: f64,
}

/// Adam / AdamW settings (the update itself runs in f32, as Burn's).
#[derive(Config, Debug, PartialEq)]
pub struct AdamSettings {
    /// β1.
    #[config(default = 0.9)]
    pub beta_1: f64,
    /// β2.
    #[config(default = 0.999)]
    pub beta_2: f64,
    /// ε (PyTorch's 1e-8; Burn's default is 1e-5).
    #[config(default = 1e-8)]
    pub epsilon: f64,
    /// Weight decay: an L2 term in the gradient (Adam) or decoupled (AdamW).
    #[config(default = 0.0)]
    pub weight_decay: f64,
    /// Decoupled weight decay (AdamW, Loshchilov & Hutter 2019).
    #[config(default = false)]
    pub decoupled: bool,
}

/// Which optimizer; in a config file a table tagged by `name` (`"sgd"` or `"adam"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum OptimizerConfig {
    /// Stochastic gradient descent with optional momentum.
    Sgd(SgdSettings),
    /// Adam or AdamW.
    Adam(AdamSettings),
}

impl OptimizerConfig {
    /// SGD with momentum `μ` (PyTorch semantics) and L2 weight decay.
    pub fn sgd(momentum: f64, weight_decay: f64) -> Self {
        Self::Sgd(
            SgdSettings::new()
                .with_momentum(momentum)
                .with_weight_decay(weight_decay),
        )
    }

    /// Adam with PyTorch defaults.
    pub fn adam() -> Self {
        Self::Adam(AdamSettings::new())
    }

    /// Number of state tensors per parameter (SGD with momentum: 1, Adam: 2).
    pub fn slots(&self) -> usize {
        match self {
            Self::Sgd(s) if s.momentum == 0.0 => 0,
            Self::Sgd(_) => 1,
            Self::Adam(_) => 2,
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(SparseError::InvalidConfig(m));
        match self {
            Self::Sgd(s) if !(0.0..1.0).contains(&s.momentum) || !(0.0..=1.0).contains(&s.dampening) => bad(format!(
                "SGD momentum {} must be in [0, 1) and dampening {} in [0, 1]",
                s.momentum, s.dampening
            )),
            Self::Sgd(s) if s.weight_decay.is_nan() || s.weight_decay < 0.0 => {
                bad(format!("weight decay {} must be >= 0", s.weight_decay))
            }
            Self::Adam(a) if a.epsilon.is_nan() || a.epsilon <= 0.0 => {
                bad(format!("Adam epsilon {} must be > 0 (1e-8 is usual)", a.epsilon))
            }
            Self::Adam(a) if !(0.0..1.0).contains(&a.beta_1) || !(0.0..1.0).contains(&a.beta_2) => {
                bad(format!("Adam betas ({}, {}) must be in [0, 1)", a.beta_1, a.beta_2))
            }
            Self::Adam(a) if a.weight_decay.is_nan() || a.weight_decay < 0.0 => {
                bad(format!("weight decay {} must be >= 0", a.weight_decay))
            }
            _ => Ok(()),
        }
    }

    /// Builds the optimizer.
    pub fn init(&self) -> MaskedOptimizer {
        MaskedOptimizer::new(self.clone())
    }
}

impl Config for OptimizerConfig {}
