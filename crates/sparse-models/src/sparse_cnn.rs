//! The sparse twin of [`crate::SmallCnn`]: BN folded into both convolutions,
//! ReLU fused; `ToSparse` is implemented next to the model (its BNs are private).

use burn::module::Module;
use burn::nn::pool::MaxPool2d;
use burn::tensor::Tensor;
use sparse_kernels::{SparseConv2d, SparseLinear};

/// Inference-only sparse small CNN.
#[derive(Module, Debug)]
pub struct SparseSmallCnn {
    /// conv1 + BN + ReLU.
    pub conv1: SparseConv2d,
    /// conv2 + BN + ReLU.
    pub conv2: SparseConv2d,
    /// fc1 + ReLU.
    pub fc1: SparseLinear,
    /// Classifier.
    pub fc2: SparseLinear,
    /// 2×2 max-pool.
    pub pool: MaxPool2d,
}

impl SparseSmallCnn {
    /// Logits `[B, classes]` for images `[B, C, H, W]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.pool.forward(self.conv1.forward(images));
        let x = self.pool.forward(self.conv2.forward(x));
        self.fc2.forward(self.fc1.forward(x.flatten::<2>(1, 3)))
    }
}
