//! One-shot pruning of a trained model, no training needed: magnitude, Wanda
//! (Sun et al. 2023) and SparseGPT (Frantar & Alistarh 2023).
//!
//! ```ignore
//! use sparse_methods::oneshot::{self, OneShotConfig, OneShotMethod};
//! use sparse_core::Pattern;
//!
//! // `model` implements `sparse_core::capture::CaptureInputs` (every sparse-models
//! // network does); `images` is a slice of calibration batches.
//! let config = OneShotConfig::new(OneShotMethod::SparseGpt)
//!     .with_sparsity(0.5)
//!     .with_pattern(Pattern::NM { n: 2, m: 4 });
//! let outcome = oneshot::prune(&model, &images, &config)?;
//! for layer in &outcome.layers {
//!     println!("{} {:.3} {:?}", layer.path, layer.sparsity(), layer.relative_error());
//! }
//! let model = outcome.apply(model)?;          // pruned (and for SparseGPT updated) weights
//! let masks = outcome.masks();                // kept weights per weight path
//! ```
//!
//! How it works:
//! * [`sparse_core::capture`] runs the model's forward pass while reporting each
//!   linear/conv layer's input as fan-in features (im2col in the masks' channel-last
//!   order for convs);
//! * [`calibration`] turns them into streaming statistics (`Σ X_j²` per feature, and
//!   `Σ x xᵀ` for SparseGPT and for the reported errors);
//! * the per-layer algorithms ([`magnitude`], [`wanda`], [`sparsegpt`]) work on
//!   `neurons × fan-in` `f64` matrices ([`matrix`], [`cholesky`]);
//! * [`prune`] orders the layers as the forward pass reaches them and, in the default
//!   [`CaptureMode::Sequential`], captures each layer's inputs from the model whose
//!   earlier layers are already pruned; [`CaptureMode::OnePass`] captures every layer
//!   from the dense model in one pass;
//! * [`reconstruction`] reports `‖WX − ŴX‖²` per layer.

pub mod calibration;
pub mod cholesky;
pub mod config;
pub mod magnitude;
pub mod matrix;
pub mod outcome;
pub mod pruner;
pub mod reconstruction;
pub mod sparsegpt;
pub mod target;
pub mod wanda;
mod weights;

pub use calibration::{LayerStats, calibration_stats};
pub use config::{CaptureMode, OneShotConfig, OneShotMethod};
pub use matrix::Matrix;
pub use outcome::{LayerReport, OneShotOutcome};
pub use pruner::{check, check_settings, prune};
pub use sparsegpt::{SparseGptSettings, sparsegpt_prune};
pub use target::Target;
