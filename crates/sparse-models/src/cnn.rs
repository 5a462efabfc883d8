//! A small CNN for 28×28 and 32×32 images:
//! `conv3×3(32)-BN-ReLU-maxpool2 → conv3×3(64)-BN-ReLU-maxpool2 → fc(256)-ReLU → fc(classes)`.

use std::collections::BTreeMap;

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::tensor::{Device, Tensor};
use sparse_core::LayerFilter;
use sparse_kernels::Activation;
use sparse_kernels::norm::batch_norm;

use crate::Classifier;
use crate::flops::{conv_out, window_out};

/// Small CNN shape.
#[derive(Config, Debug)]
pub struct SmallCnnConfig {
    /// Input `[C, H, W]`.
    #[config(default = "[1, 28, 28]")]
    pub input: [usize; 3],
    /// Classes.
    #[config(default = 10)]
    pub classes: usize,
    /// Channels of the two convolutions.
    #[config(default = "[32, 64]")]
    pub channels: [usize; 2],
    /// Width of the hidden linear layer.
    #[config(default = 256)]
    pub hidden: usize,
}

/// Two conv blocks and two linear layers.
#[derive(Module, Debug)]
pub struct SmallCnn {
    /// First convolution.
    pub conv1: Conv2d,
    pub(crate) bn1: BatchNorm,
    /// Second convolution.
    pub conv2: Conv2d,
    pub(crate) bn2: BatchNorm,
    /// Hidden linear layer.
    pub fc1: Linear,
    /// Classifier.
    pub fc2: Linear,
    pub(crate) pool: MaxPool2d,
    relu: Relu,
}

impl SmallCnnConfig {
    /// Builds the model on `device`.
    pub fn init(&self, device: &Device) -> SmallCnn {
        let [c, h, w] = self.input;
        let [c1, c2] = self.channels;
        let conv = |i, o| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device)
        };
        SmallCnn {
            conv1: conv(c, c1),
            bn1: BatchNormConfig::new(c1).init(device),
            conv2: conv(c1, c2),
            bn2: BatchNormConfig::new(c2).init(device),
            fc1: LinearConfig::new(c2 * (h / 4) * (w / 4), self.hidden).init(device),
            fc2: LinearConfig::new(self.hidden, self.classes).init(device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            relu: Relu::new(),
        }
    }
}

impl Classifier for SmallCnn {
    fn to_sparse_model(
        &self,
        masks: &crate::to_sparse::SparseMasks,
        options: &crate::to_sparse::SparseOptions,
    ) -> Result<crate::SparseModel, sparse_kernels::KernelError> {
        Ok(crate::SparseModel::Cnn(crate::to_sparse::ToSparse::to_sparse(
            self, masks, options,
        )?))
    }

    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self
            .pool
            .forward(batch_norm(&self.bn1, self.conv1.forward(images), Activation::Relu));
        let x = self
            .pool
            .forward(batch_norm(&self.bn2, self.conv2.forward(x), Activation::Relu));
        let x = self.relu.forward(self.fc1.forward(x.flatten::<2>(1, 3)));
        self.fc2.forward(x)
    }

    /// Every conv and linear layer sparse.
    fn sparsity_filter(&self) -> LayerFilter {
        LayerFilter::new()
    }

    fn output_positions(&self, input: [usize; 3]) -> BTreeMap<String, usize> {
        let pool = |s: [usize; 2]| window_out(s, [2, 2], [2, 2], [1, 1], &PaddingConfig2d::Valid);
        let s1 = conv_out(&self.conv1, [input[1], input[2]]);
        let s2 = conv_out(&self.conv2, pool(s1));
        BTreeMap::from([
            ("conv1.weight".to_string(), s1[0] * s1[1]),
            ("conv2.weight".to_string(), s2[0] * s2[1]),
        ])
    }
}

impl crate::to_sparse::ToSparse for SmallCnn {
    type Sparse = crate::sparse_cnn::SparseSmallCnn;

    fn to_sparse(
        &self,
        masks: &crate::to_sparse::SparseMasks,
        o: &crate::to_sparse::SparseOptions,
    ) -> Result<Self::Sparse, sparse_kernels::KernelError> {
        use crate::to_sparse::{conv, linear};
        use sparse_kernels::Activation::{None as Plain, Relu};
        Ok(crate::sparse_cnn::SparseSmallCnn {
            conv1: conv(&self.conv1, Some(&self.bn1), masks, o, "conv1.weight", Relu)?,
            conv2: conv(&self.conv2, Some(&self.bn2), masks, o, "conv2.weight", Relu)?,
            fc1: linear(&self.fc1, masks, o, "fc1.weight", Relu)?,
            fc2: linear(&self.fc2, masks, o, "fc2.weight", Plain)?,
            pool: self.pool.clone(),
        })
    }
}
