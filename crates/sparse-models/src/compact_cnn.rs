//! [`CompactCnn`]: the [`SmallCnn`] in sparse execution, for training (issue
//! 10): both convolutions [`CompactConv2d`]s and both linear layers
//! [`CompactLinear`]s holding their active weights only; the pooling and the
//! forward pass are the `SmallCnn`'s, and so are the batch norms, run by the
//! fused operator of `sparse_kernels::norm` (with the ReLU after them) while
//! training.
//! [`CompactCnn::to_dense`] writes the weights back into a `SmallCnn`.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::nn::BatchNorm;
use burn::nn::pool::MaxPool2d;
use burn::tensor::Tensor;
use sparse_core::capture::{Capture, CaptureInputs, CaptureStop};
use sparse_core::{LayerFilter, Sparsifier};
use sparse_kernels::norm::batch_norm;
use sparse_kernels::train::{CompactConv2d, CompactLinear, CompactModel};
use sparse_kernels::{Activation, KernelError};

use crate::compact_twin::{compact_conv, compact_linear, no_capture, write_linear};
use crate::{Classifier, SmallCnn};

/// The small CNN whose convolutions and linear layers keep only their
/// active weights.
#[derive(Module, Debug)]
pub struct CompactCnn {
    /// First convolution (`conv1.weight.values`).
    pub conv1: CompactConv2d,
    bn1: BatchNorm,
    /// Second convolution (`conv2.weight.values`).
    pub conv2: CompactConv2d,
    bn2: BatchNorm,
    /// Hidden linear layer (`fc1.values`, `fc1.bias`).
    pub fc1: CompactLinear,
    /// Classifier (`fc2.values`, `fc2.bias`).
    pub fc2: CompactLinear,
    pool: MaxPool2d,
}

impl CompactCnn {
    /// The sparse-execution twin of `cnn` under the masks of `sparse` (a
    /// layer the plan does not manage keeps every weight), on `cnn`'s device.
    pub fn from_dense(cnn: &SmallCnn, sparse: &Sparsifier) -> Result<Self, KernelError> {
        Ok(Self {
            conv1: compact_conv(&cnn.conv1, "conv1.weight", sparse)?,
            bn1: cnn.bn1.clone(),
            conv2: compact_conv(&cnn.conv2, "conv2.weight", sparse)?,
            bn2: cnn.bn2.clone(),
            fc1: compact_linear(&cnn.fc1, "fc1.weight", sparse)?,
            fc2: compact_linear(&cnn.fc2, "fc2.weight", sparse)?,
            pool: cnn.pool.clone(),
        })
    }

    /// `into` (a `SmallCnn` of the same shape, e.g. fresh from its config)
    /// with this model's weights, biases and batch-norm parameters and statistics.
    pub fn to_dense(&self, mut into: SmallCnn) -> Result<SmallCnn, KernelError> {
        into.conv1 = self.conv1.to_conv(into.conv1)?;
        into.conv2 = self.conv2.to_conv(into.conv2)?;
        into.bn1 = self.bn1.clone();
        into.bn2 = self.bn2.clone();
        write_linear(&self.fc1, &mut into.fc1)?;
        write_linear(&self.fc2, &mut into.fc2)?;
        Ok(into)
    }
}

impl CompactModel for CompactCnn {
    fn compact_layers(&self) -> Vec<&CompactLinear> {
        vec![&self.conv1.weight, &self.conv2.weight, &self.fc1, &self.fc2]
    }

    fn try_map_compact(
        mut self,
        f: &mut dyn FnMut(usize, CompactLinear) -> Result<CompactLinear, KernelError>,
    ) -> Result<Self, KernelError> {
        self.conv1.weight = f(0, self.conv1.weight)?;
        self.conv2.weight = f(1, self.conv2.weight)?;
        self.fc1 = f(2, self.fc1)?;
        self.fc2 = f(3, self.fc2)?;
        Ok(self)
    }
}

impl Classifier for CompactCnn {
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.conv1.forward(images, Activation::None);
        let x = self.pool.forward(batch_norm(&self.bn1, x, Activation::Relu));
        let x = self.conv2.forward(x, Activation::None);
        let x = self.pool.forward(batch_norm(&self.bn2, x, Activation::Relu));
        let x = self.fc1.forward(x.flatten::<2>(1, 3), Activation::Relu);
        self.fc2.forward(x, Activation::None)
    }

    fn sparsity_filter(&self) -> LayerFilter {
        LayerFilter::new()
    }

    fn output_positions(&self, _input: [usize; 3]) -> BTreeMap<String, usize> {
        BTreeMap::new()
    }
}

impl CaptureInputs for CompactCnn {
    type Batch = Tensor<4>;
    type Output = Tensor<2>;

    fn forward_capture(&self, _images: Tensor<4>, _cap: &mut Capture<'_>) -> Result<Tensor<2>, CaptureStop> {
        Err(no_capture())
    }
}
