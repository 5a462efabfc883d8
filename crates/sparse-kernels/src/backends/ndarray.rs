//! NdArray: the primitive default bodies (dense scatter + dense matmul/conv).

#[allow(deprecated)]
impl crate::ops::SparseOps for burn::backend::NdArray {}
