//! The sparse twin of [`Mlp`]: every layer a [`SparseLinear`], ReLU fused.

use burn::module::Module;
use burn::tensor::Tensor;
use sparse_kernels::{Activation, KernelError, SparseLinear};

use crate::mlp::Mlp;
use crate::to_sparse::{SparseMasks, SparseOptions, ToSparse, linear};

/// Inference-only sparse MLP.
#[derive(Module, Debug)]
pub struct SparseMlp {
    /// The layers, input to output.
    pub layers: Vec<SparseLinear>,
}

impl SparseMlp {
    /// Logits `[B, classes]` for images `[B, C, H, W]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.layers.iter().fold(images.flatten::<2>(1, 3), |x, l| l.forward(x))
    }
}

impl ToSparse for Mlp {
    type Sparse = SparseMlp;

    fn to_sparse(&self, masks: &SparseMasks, options: &SparseOptions) -> Result<SparseMlp, KernelError> {
        let last = self.layers.len().saturating_sub(1);
        let layers = self
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let act = if i < last { Activation::Relu } else { Activation::None };
                linear(l, masks, options, &format!("layers.{i}.weight"), act)
            })
            .collect::<Result<_, _>>()?;
        Ok(SparseMlp { layers })
    }
}
