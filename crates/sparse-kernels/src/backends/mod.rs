//! [`crate::ops::SparseOps`] for each backend.

pub mod autodiff;
#[cfg(all(any(feature = "wgpu", feature = "cuda"), not(feature = "cube-kernels")))]
pub mod cube;
#[cfg(feature = "cube-kernels")]
pub mod cube_kernels;
#[cfg(feature = "flex")]
pub mod flex;
#[cfg(feature = "ndarray")]
pub mod ndarray;
pub mod shape;
