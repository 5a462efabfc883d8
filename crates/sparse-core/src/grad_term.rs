//! Terms added to the gradients of the sparse weights before every optimizer
//! step, computed on the device: SR-STE's sparse-refined decay, L1 and
//! group-lasso penalties, or any other. The hook knows no term by name: a term
//! is anything that implements [`GradTerm`].

use burn::tensor::Tensor;

use crate::layer::SparseLayer;

/// A term added to the gradient of every sparse weight.
pub trait GradTerm: Send + Sync + std::fmt::Debug {
    /// The term for the weight of `layer` at `step` (flat, row-major, on the
    /// weight's device), or `None` when it is zero at this step. `weight` is the
    /// stored weight (before any reparameterization).
    fn term(&self, step: u64, layer: &SparseLayer, weight: Tensor<1>) -> Option<Tensor<1>>;
}
