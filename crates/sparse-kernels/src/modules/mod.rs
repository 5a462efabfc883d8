//! Burn modules over the sparse formats, and the per-layer conversions a user
//! calls from their own model's `to_sparse`.

pub mod choice;
pub mod conv;
pub mod fold;
pub mod linear;
pub mod store;
pub mod weight;

pub use choice::{Choice, choose};
pub use conv::SparseConv2d;
pub use fold::fold_batch_norm;
pub use linear::SparseLinear;
pub use store::TensorMap;
pub use weight::SparseWeight;

use burn::tensor::Tensor;

use crate::error::{KernelError, Result};

/// Host values of a float tensor (a read-back error as a [`KernelError`]).
pub fn host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    sparse_core::host::to_vec(t).map_err(|e| KernelError::TensorRead(e.to_string()))
}
