//! The sparse twin of [`MobileNetV1`]: BN folded and ReLU fused into every
//! conv; under `auto` the stem and the depthwise convs run the direct conv
//! kernel over all their weights (few input channels per group, see
//! `sparse_kernels::modules::choice`), pointwise convs the sparse
//! pixel-strip kernel below their crossover density; all in contiguous NCHW.

use burn::module::Module;
use burn::tensor::Tensor;
use sparse_kernels::{Activation, KernelError, SparseConv2d, SparseLinear};

use crate::mobilenet::MobileNetV1;
use crate::to_sparse::{SparseMasks, SparseOptions, ToSparse, conv, linear};

/// One separable block of the twin.
#[derive(Module, Debug)]
pub struct SparseSeparable {
    /// Depthwise 3×3 + BN + ReLU.
    pub dw: SparseConv2d,
    /// Pointwise 1×1 + BN + ReLU.
    pub pw: SparseConv2d,
}

/// Inference-only sparse MobileNetV1.
#[derive(Module, Debug)]
pub struct SparseMobileNetV1 {
    /// Stem conv + BN + ReLU.
    pub stem: SparseConv2d,
    /// The 13 separable blocks.
    pub blocks: Vec<SparseSeparable>,
    /// Classifier.
    pub fc: SparseLinear,
}

impl SparseMobileNetV1 {
    /// Logits `[B, classes]` for images `[B, C, H, W]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = self.stem.forward(images);
        for b in &self.blocks {
            x = b.pw.forward(b.dw.forward(x));
        }
        let [b, c, _, _] = x.dims();
        self.fc.forward(x.flatten::<3>(2, 3).mean_dim(2).reshape([b, c]))
    }
}

impl ToSparse for MobileNetV1 {
    type Sparse = SparseMobileNetV1;

    fn to_sparse(&self, masks: &SparseMasks, o: &SparseOptions) -> Result<SparseMobileNetV1, KernelError> {
        let relu = Activation::Relu;
        let blocks = self
            .blocks
            .iter()
            .enumerate()
            .map(|(i, b)| {
                Ok(SparseSeparable {
                    dw: conv(&b.dw, Some(&b.dw_bn), masks, o, &format!("blocks.{i}.dw.weight"), relu)?,
                    pw: conv(&b.pw, Some(&b.pw_bn), masks, o, &format!("blocks.{i}.pw.weight"), relu)?,
                })
            })
            .collect::<Result<Vec<_>, KernelError>>()?;
        Ok(SparseMobileNetV1 {
            stem: conv(&self.stem.0, Some(&self.stem.1), masks, o, "stem.0.weight", relu)?,
            blocks,
            fc: linear(&self.fc, masks, o, "fc.weight", Activation::None)?,
        })
    }
}
