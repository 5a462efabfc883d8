//! # sparse-kernels
//!
//! Real sparse execution for sparseburn, part 1: the kernel layer.
//!
//! * [`formats`]: host formats built from a [`sparse_core::SparseLayer`], its
//!   [`sparse_core::Mask`] and dense weights (CSR with `u16`/`u32` indices,
//!   condensed constant fan-in in SELL-16 layout, N:M, BSR, channel pruning),
//!   each checking that the mask fits it, with a way back to dense;
//! * [`ops`]: the operators as a Burn backend extension, callable on
//!   `Tensor`s of any device (flex kernels, CubeCL kernels, a primitive
//!   fallback, and a handwritten backward under autodiff);
//! * [`modules`]: [`SparseLinear`] and [`SparseConv2d`], built from Burn's
//!   `Linear`/`Conv2d` (optionally with a folded `BatchNorm`) and a mask, with
//!   a per-layer format choice;
//! * [`train`]: training in sparse execution (part 2):
//!   [`train::CompactLinear`], a layer whose weight is its active values, and
//!   [`train::compact_step()`], the training step of a model of such layers.
//!
//! See `docs/sparse-execution.md` for the dispatch per backend and the
//! measured speed.

pub mod activation;
pub mod backends;
pub mod cpu;
pub mod error;
pub mod formats;
pub mod indices;
pub mod modules;
pub mod norm;
pub mod ops;
pub mod plan;
pub mod timing;
pub mod train;

pub use activation::Activation;
pub use error::{KernelError, Result};
pub use formats::{Built, FormatKind};
pub use modules::{SparseConv2d, SparseLinear};
pub use norm::NormOps;
pub use ops::SparseOps;
pub use plan::{OpKind, SparsePlan};
