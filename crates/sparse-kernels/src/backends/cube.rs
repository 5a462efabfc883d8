//! CubeCL (wgpu, cuda): placeholder until the kernels land; uses the primitive bodies.

/// Device-side index cache (filled by the CubeCL kernels).
#[derive(Debug, Clone)]
pub struct CubeIndex;

impl crate::ops::SparseOps for burn_cubecl::CubeBackend {}
