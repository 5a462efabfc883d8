//! Typed errors of sparse-kernels. Every variant names the layer, the problem and the fix.

/// Result type of sparse-kernels.
pub type Result<T, E = KernelError> = std::result::Result<T, E>;

/// Everything that can go wrong when building a sparse format or module.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The mask does not have the structure the requested format needs.
    #[error("layer `{layer}`: the mask does not fit the {format} format: {detail}; {fix}")]
    PatternMismatch {
        /// Weight path.
        layer: String,
        /// Format name.
        format: &'static str,
        /// The first violation found.
        detail: String,
        /// How to fix it.
        fix: String,
    },
    /// Shapes that do not agree (mask, weights, layer geometry).
    #[error("layer `{layer}`: {detail}")]
    Shape {
        /// Weight path.
        layer: String,
        /// What differs.
        detail: String,
    },
    /// A format name that is not known.
    #[error("unknown sparse format `{0}`; expected one of auto, csr, condensed, nm, bsr, channel, dense")]
    UnknownFormat(String),
    /// A configuration that cannot work.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// Reading a tensor from its device failed.
    #[error("reading a tensor from its device failed: {0}")]
    TensorRead(String),
    /// Serialising or reading a sparse model failed.
    #[error("sparse model file: {0}")]
    Serialization(String),
}

impl KernelError {
    /// A [`KernelError::Shape`] for `layer`.
    pub fn shape(layer: &str, detail: impl Into<String>) -> Self {
        Self::Shape {
            layer: layer.to_string(),
            detail: detail.into(),
        }
    }
}

impl From<sparse_core::SparseError> for KernelError {
    fn from(e: sparse_core::SparseError) -> Self {
        Self::InvalidConfig(e.to_string())
    }
}
