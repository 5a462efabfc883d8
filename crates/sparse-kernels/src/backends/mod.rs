//! [`crate::ops::SparseOps`] for each backend.

pub mod autodiff;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub mod cube;
#[cfg(feature = "flex")]
pub mod flex;
#[cfg(feature = "ndarray")]
pub mod ndarray;
pub mod shape;
