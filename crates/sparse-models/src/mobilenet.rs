//! MobileNetV1 (Howard et al. 2017): a 3×3/2 conv stem, 13 depthwise-separable
//! blocks (depthwise 3×3 + BN + ReLU, pointwise 1×1 + BN + ReLU), global average
//! pooling and a classifier. Channels scale with the width multiplier α
//! (`max(8, ⌊c·α⌋)`, TF-slim's `min_depth = 8`).
//!
//! The RigL reference keeps the first conv and the depthwise convs dense and
//! makes the pointwise convs and the classifier sparse; that is
//! [`Classifier::sparsity_filter`] here. The optional small-image stem uses
//! stride 1 in the first conv for 28–32 px inputs.

use std::collections::BTreeMap;

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};
use sparse_core::LayerFilter;
use sparse_kernels::Activation;
use sparse_kernels::norm::batch_norm;

use crate::Classifier;
use crate::error::ModelError;
use crate::flops::conv_out;

/// `(output channels, stride)` of the 13 separable blocks at α = 1.
const BLOCKS: [(usize, usize); 13] = [
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
];

/// MobileNetV1 settings.
#[derive(Config, Debug)]
pub struct MobileNetV1Config {
    /// Width multiplier α (0.25, 0.5, 0.75, 1.0).
    #[config(default = 1.0)]
    pub width: f64,
    /// Classes.
    #[config(default = 1000)]
    pub classes: usize,
    /// Input channels.
    #[config(default = 3)]
    pub in_channels: usize,
    /// Stride-1 stem for 28–32 px images.
    #[config(default = false)]
    pub small_input: bool,
}

/// One depthwise-separable block.
#[derive(Module, Debug)]
pub struct Separable {
    /// Depthwise 3×3 conv (groups = channels).
    pub dw: Conv2d,
    /// BN after `dw`.
    pub dw_bn: BatchNorm,
    /// Pointwise 1×1 conv.
    pub pw: Conv2d,
    /// BN after `pw`.
    pub pw_bn: BatchNorm,
}

/// MobileNetV1.
#[derive(Module, Debug)]
pub struct MobileNetV1 {
    /// Stem conv and BN.
    pub stem: (Conv2d, BatchNorm),
    /// The 13 separable blocks.
    pub blocks: Vec<Separable>,
    /// Classifier.
    pub fc: Linear,
    avgpool: AdaptiveAvgPool2d,
}

fn kaiming() -> Initializer {
    Initializer::KaimingNormal {
        gain: std::f64::consts::SQRT_2,
        fan_out_only: true,
    }
}

fn conv3(i: usize, o: usize, stride: usize, groups: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([i, o], [3, 3])
        .with_stride([stride, stride])
        .with_groups(groups)
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .with_initializer(kaiming())
        .init(device)
}

impl MobileNetV1Config {
    /// Channels at this width.
    pub fn channels(&self, c: usize) -> usize {
        ((c as f64 * self.width).floor() as usize).max(8)
    }

    /// Builds the model on `device`.
    pub fn init(&self, device: &Device) -> Result<MobileNetV1, ModelError> {
        if !(self.width > 0.0 && self.width <= 4.0) {
            return Err(ModelError::InvalidConfig(format!(
                "MobileNetV1 width multiplier {} must be in (0, 4] (e.g. 0.25, 0.5, 0.75, 1.0)",
                self.width
            )));
        }
        let mut c = self.channels(32);
        let stem = (
            conv3(self.in_channels, c, if self.small_input { 1 } else { 2 }, 1, device),
            BatchNormConfig::new(c).init(device),
        );
        let blocks = BLOCKS
            .iter()
            .map(|&(out, stride)| {
                let o = self.channels(out);
                let block = Separable {
                    dw: conv3(c, c, stride, c, device),
                    dw_bn: BatchNormConfig::new(c).init(device),
                    pw: Conv2dConfig::new([c, o], [1, 1])
                        .with_bias(false)
                        .with_initializer(kaiming())
                        .init(device),
                    pw_bn: BatchNormConfig::new(o).init(device),
                };
                c = o;
                block
            })
            .collect();
        Ok(MobileNetV1 {
            stem,
            blocks,
            fc: LinearConfig::new(c, self.classes).init(device),
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
        })
    }
}

impl Classifier for MobileNetV1 {
    fn to_sparse_model(
        &self,
        masks: &crate::to_sparse::SparseMasks,
        options: &crate::to_sparse::SparseOptions,
    ) -> Result<crate::SparseModel, sparse_kernels::KernelError> {
        Ok(crate::SparseModel::MobileNetV1(crate::to_sparse::ToSparse::to_sparse(
            self, masks, options,
        )?))
    }

    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = batch_norm(&self.stem.1, self.stem.0.forward(images), Activation::Relu);
        for b in &self.blocks {
            x = batch_norm(&b.dw_bn, b.dw.forward(x), Activation::Relu);
            x = batch_norm(&b.pw_bn, b.pw.forward(x), Activation::Relu);
        }
        self.fc.forward(self.avgpool.forward(x).flatten::<2>(1, 3))
    }

    /// Pointwise convs and the classifier; the first conv and the depthwise convs dense.
    fn sparsity_filter(&self) -> LayerFilter {
        LayerFilter::new()
            .with_skip_first(true)
            .with_exclude(vec!["blocks.*.dw.weight".into()])
    }

    fn output_positions(&self, input: [usize; 3]) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        let mut s = conv_out(&self.stem.0, [input[1], input[2]]);
        out.insert("stem.0.weight".to_string(), s[0] * s[1]);
        for (i, b) in self.blocks.iter().enumerate() {
            s = conv_out(&b.dw, s);
            out.insert(format!("blocks.{i}.dw.weight"), s[0] * s[1]);
            s = conv_out(&b.pw, s);
            out.insert(format!("blocks.{i}.pw.weight"), s[0] * s[1]);
        }
        out
    }
}
