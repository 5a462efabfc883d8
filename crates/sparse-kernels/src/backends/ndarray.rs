//! NdArray: the primitive default bodies (dense scatter + dense matmul/conv).

#[allow(deprecated)]
impl crate::ops::SparseOps for burn::backend::NdArray {}

#[allow(deprecated)]
impl crate::norm::NormOps for burn::backend::NdArray {}
