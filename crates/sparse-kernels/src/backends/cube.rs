//! CubeCL (wgpu, cuda): the primitive default bodies of [`crate::ops::SparseOps`]
//! (values scattered into a dense weight, then Burn's matmul / conv2d). The
//! gather-form GPU kernels live in `cube_kernels.rs` behind the
//! `cube-kernels` feature.

impl crate::ops::SparseOps for burn::backend::Cube {}
