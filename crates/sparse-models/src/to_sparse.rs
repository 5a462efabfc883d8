//! Inference-only sparse twins of a model: [`ToSparse`] turns a dense model and
//! its per-layer masks (keyed by weight path, e.g. `layer1.0.conv1.weight`)
//! into a model whose conv/linear layers run the kernels of `sparse-kernels`,
//! with BatchNorm folded into the preceding convolution and ReLU fused into
//! the layer's store.
//!
//! A user makes their own model sparse in a few lines with the per-layer
//! conversions [`linear`] and [`conv`]:
//!
//! ```ignore
//! impl ToSparse for MyNet {
//!     type Sparse = MySparseNet;
//!     fn to_sparse(&self, masks: &SparseMasks, opts: &SparseOptions) -> Result<MySparseNet, KernelError> {
//!         Ok(MySparseNet {
//!             conv: conv(&self.conv, Some(&self.bn), masks, opts, "conv.weight", Activation::Relu)?,
//!             fc: linear(&self.fc, masks, opts, "fc.weight", Activation::None)?,
//!         })
//!     }
//! }
//! ```

use std::collections::BTreeMap;

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear};
use sparse_core::Mask;
use sparse_kernels::{Activation, FormatKind, KernelError, SparseConv2d, SparseLinear};

/// Per-layer masks by weight path; a layer without a mask stays dense.
#[derive(Clone, Debug, Default)]
pub struct SparseMasks(pub BTreeMap<String, Mask>);

impl SparseMasks {
    /// The mask of `path`, or all-ones of `len` when the layer has none.
    pub fn get_or_dense(&self, path: &str, len: usize) -> Mask {
        self.0.get(path).cloned().unwrap_or_else(|| Mask::ones(len))
    }
}

/// How layers are converted.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseOptions {
    /// The format of every layer without an override (`auto` by default).
    pub format: FormatKind,
    /// Formats by weight path.
    pub overrides: BTreeMap<String, FormatKind>,
}

impl Default for SparseOptions {
    fn default() -> Self {
        Self {
            format: FormatKind::Auto,
            overrides: BTreeMap::new(),
        }
    }
}

impl SparseOptions {
    /// The format of `path`.
    pub fn format_for(&self, path: &str) -> FormatKind {
        self.overrides.get(path).copied().unwrap_or(self.format)
    }
}

/// A model that has an inference-only sparse twin.
pub trait ToSparse {
    /// The twin.
    type Sparse;
    /// Converts the model with `masks` (by weight path) and `options`.
    fn to_sparse(&self, masks: &SparseMasks, options: &SparseOptions) -> Result<Self::Sparse, KernelError>;
}

/// Converts one linear layer (weight path `path`).
pub fn linear(
    layer: &Linear,
    masks: &SparseMasks,
    options: &SparseOptions,
    path: &str,
    act: Activation,
) -> Result<SparseLinear, KernelError> {
    let mask = masks.get_or_dense(path, layer.weight.shape().num_elements());
    SparseLinear::from_linear(layer, &mask, path, options.format_for(path), act)
}

/// Converts one convolution (weight path `path`) with `bn` folded in.
pub fn conv(
    layer: &Conv2d,
    bn: Option<&BatchNorm>,
    masks: &SparseMasks,
    options: &SparseOptions,
    path: &str,
    act: Activation,
) -> Result<SparseConv2d, KernelError> {
    let mask = masks.get_or_dense(path, layer.weight.shape().num_elements());
    SparseConv2d::from_conv(layer, bn, &mask, path, options.format_for(path), act)
}
