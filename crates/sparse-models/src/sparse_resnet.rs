//! The sparse twin of [`ResNet`]: every conv with its BN folded and ReLU fused
//! where it is not followed by the residual add; the add and its ReLU run on
//! Burn ops. The whole network stays in contiguous NCHW (CHW per image), the
//! layout the direct sparse convolution reads and writes, so no transposes
//! happen between sparse layers.

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use sparse_kernels::{Activation, KernelError, SparseConv2d, SparseLinear};

use crate::resnet::{Block, ResNet};
use crate::to_sparse::{SparseMasks, SparseOptions, ToSparse, conv, linear};

/// A residual block of the twin.
#[derive(Module, Debug)]
pub struct SparseBlock {
    /// conv1 + bn1 + ReLU.
    pub conv1: SparseConv2d,
    /// conv2 + bn2 (+ ReLU in a bottleneck).
    pub conv2: SparseConv2d,
    /// conv3 + bn3 (bottleneck).
    pub conv3: Option<SparseConv2d>,
    /// Projection shortcut with its BN.
    pub downsample: Option<SparseConv2d>,
}

impl SparseBlock {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some(d) => d.forward(x.clone()),
            None => x.clone(),
        };
        let out = self.conv2.forward(self.conv1.forward(x));
        let out = match &self.conv3 {
            Some(c) => c.forward(out),
            None => out,
        };
        relu(out + identity)
    }

    fn from_block(b: &Block, prefix: &str, masks: &SparseMasks, o: &SparseOptions) -> Result<Self, KernelError> {
        let p = |n: &str| format!("{prefix}.{n}.weight");
        let bottleneck = b.conv3.is_some();
        let act2 = if bottleneck { Activation::Relu } else { Activation::None };
        Ok(Self {
            conv1: conv(&b.conv1, Some(&b.bn1), masks, o, &p("conv1"), Activation::Relu)?,
            conv2: conv(&b.conv2, Some(&b.bn2), masks, o, &p("conv2"), act2)?,
            conv3: match (&b.conv3, &b.bn3) {
                (Some(c), Some(n)) => Some(conv(c, Some(n), masks, o, &p("conv3"), Activation::None)?),
                _ => None,
            },
            downsample: match &b.downsample {
                Some((c, n)) => Some(conv(
                    c,
                    Some(n),
                    masks,
                    o,
                    &format!("{prefix}.downsample.0.weight"),
                    Activation::None,
                )?),
                None => None,
            },
        })
    }
}

/// Inference-only sparse ResNet.
#[derive(Module, Debug)]
pub struct SparseResNet {
    /// Stem conv + BN + ReLU.
    pub conv1: SparseConv2d,
    /// The ImageNet stem's 3×3/2 max-pool.
    pub maxpool: Option<MaxPool2d>,
    /// Stages 1–4.
    pub stages: Vec<Vec<SparseBlock>>,
    /// Classifier.
    pub fc: SparseLinear,
}

impl SparseResNet {
    /// Logits `[B, classes]` for images `[B, C, H, W]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = self.conv1.forward(images);
        if let Some(p) = &self.maxpool {
            x = p.forward(x);
        }
        for block in self.stages.iter().flatten() {
            x = block.forward(x);
        }
        let [b, c, _, _] = x.dims();
        let x = x.flatten::<3>(2, 3).mean_dim(2).reshape([b, c]);
        self.fc.forward(x)
    }
}

/// The ImageNet stem's max-pool (the twin infers the stem from the 7×7 first conv).
pub fn imagenet_maxpool() -> MaxPool2d {
    MaxPool2dConfig::new([3, 3])
        .with_strides([2, 2])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init()
}

impl ToSparse for ResNet {
    type Sparse = SparseResNet;

    fn to_sparse(&self, masks: &SparseMasks, o: &SparseOptions) -> Result<SparseResNet, KernelError> {
        let stages = [
            ("layer1", &self.layer1),
            ("layer2", &self.layer2),
            ("layer3", &self.layer3),
            ("layer4", &self.layer4),
        ]
        .into_iter()
        .map(|(name, blocks)| {
            blocks
                .iter()
                .enumerate()
                .map(|(i, b)| SparseBlock::from_block(b, &format!("{name}.{i}"), masks, o))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
        Ok(SparseResNet {
            conv1: conv(&self.conv1, Some(&self.bn1), masks, o, "conv1.weight", Activation::Relu)?,
            maxpool: (self.conv1.kernel_size == [7, 7]).then(imagenet_maxpool),
            stages,
            fc: linear(&self.fc, masks, o, "fc.weight", Activation::None)?,
        })
    }
}
