//! ResNet (He, Zhang, Ren & Sun, CVPR 2016), as torchvision builds it (v1.5:
//! in a bottleneck the stride sits on the 3×3 conv).
//!
//! * depths 18 and 34 use basic blocks, 50 uses bottlenecks (expansion 4);
//! * ImageNet stem: 7×7/2 conv, BN, ReLU, 3×3/2 max-pool; CIFAR stem: 3×3/1 conv, no pool;
//! * Kaiming-normal (fan-out, ReLU gain) conv init, BN γ = 1, β = 0; optionally γ = 0 in
//!   the last BN of each block (Goyal et al. 2017, torchvision `zero_init_residual`).
//!
//! Parameter paths follow torchvision (`layer1.0.conv1.weight`,
//! `layer2.0.downsample.0.weight`), with Burn's BN names (`gamma`, `beta`).

use std::collections::BTreeMap;

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::tensor::{Device, Tensor};
use sparse_core::LayerFilter;
use sparse_kernels::Activation;
use sparse_kernels::norm::batch_norm;

use crate::Classifier;
use crate::error::ModelError;
use crate::flops::{conv_out, window_out};

/// ResNet depth.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum ResNetDepth {
    /// Basic blocks `[2, 2, 2, 2]`.
    R18,
    /// Basic blocks `[3, 4, 6, 3]`.
    R34,
    /// Bottlenecks `[3, 4, 6, 3]`.
    R50,
}

impl ResNetDepth {
    /// From 18, 34 or 50.
    pub fn from_layers(n: usize) -> Result<Self, ModelError> {
        match n {
            18 => Ok(Self::R18),
            34 => Ok(Self::R34),
            50 => Ok(Self::R50),
            _ => Err(ModelError::InvalidConfig(format!(
                "ResNet depth {n} is not supported; use 18, 34 or 50"
            ))),
        }
    }

    fn blocks(self) -> [usize; 4] {
        match self {
            Self::R18 => [2, 2, 2, 2],
            Self::R34 | Self::R50 => [3, 4, 6, 3],
        }
    }

    fn bottleneck(self) -> bool {
        self == Self::R50
    }
}

/// The first layers.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Stem {
    /// 7×7/2 conv + 3×3/2 max-pool (224 px images).
    ImageNet,
    /// 3×3/1 conv, no pool (28–32 px images).
    Cifar,
}

/// ResNet settings.
#[derive(Config, Debug)]
pub struct ResNetConfig {
    /// 18, 34 or 50 layers.
    pub depth: ResNetDepth,
    /// Classes.
    #[config(default = 1000)]
    pub classes: usize,
    /// Input channels (1 for Fashion-MNIST).
    #[config(default = 3)]
    pub in_channels: usize,
    /// Stem.
    #[config(default = "Stem::ImageNet")]
    pub stem: Stem,
    /// γ = 0 in the last BN of every block.
    #[config(default = false)]
    pub zero_init_residual: bool,
    /// Keep the first conv dense in the default sparsity policy.
    #[config(default = false)]
    pub dense_first_layer: bool,
}

/// A residual block: basic (`conv3`/`bn3` absent) or bottleneck.
#[derive(Module, Debug)]
pub struct Block {
    /// First conv (3×3 basic, 1×1 bottleneck).
    pub conv1: Conv2d,
    /// BN after `conv1`.
    pub bn1: BatchNorm,
    /// Second conv (3×3, carries the stride).
    pub conv2: Conv2d,
    /// BN after `conv2`.
    pub bn2: BatchNorm,
    /// Third conv (bottleneck 1×1 expansion).
    pub conv3: Option<Conv2d>,
    /// BN after `conv3`.
    pub bn3: Option<BatchNorm>,
    /// Projection shortcut: (1×1 conv, BN), torchvision's `downsample.0/.1`.
    pub downsample: Option<(Conv2d, BatchNorm)>,
    relu: Relu,
}

/// ResNet.
#[derive(Module, Debug)]
pub struct ResNet {
    /// Stem conv.
    pub conv1: Conv2d,
    /// Stem BN.
    pub bn1: BatchNorm,
    /// Stage 1.
    pub layer1: Vec<Block>,
    /// Stage 2.
    pub layer2: Vec<Block>,
    /// Stage 3.
    pub layer3: Vec<Block>,
    /// Stage 4.
    pub layer4: Vec<Block>,
    /// Classifier.
    pub fc: Linear,
    pub(crate) maxpool: Option<MaxPool2d>,
    avgpool: AdaptiveAvgPool2d,
    relu: Relu,
    dense_first_layer: bool,
}

fn conv(i: usize, o: usize, k: usize, stride: usize, device: &Device) -> Conv2d {
    let p = k / 2;
    Conv2dConfig::new([i, o], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(device)
}

fn bn(c: usize, zero: bool, device: &Device) -> BatchNorm {
    let mut norm = BatchNormConfig::new(c).init(device);
    if zero {
        norm.gamma = norm.gamma.map(|g| g.zeros_like());
    }
    norm
}

impl Block {
    fn new(in_ch: usize, width: usize, stride: usize, bottleneck: bool, zero_init: bool, device: &Device) -> Self {
        let out = if bottleneck { width * 4 } else { width };
        let downsample =
            (stride != 1 || in_ch != out).then(|| (conv(in_ch, out, 1, stride, device), bn(out, false, device)));
        if bottleneck {
            Self {
                conv1: conv(in_ch, width, 1, 1, device),
                bn1: bn(width, false, device),
                conv2: conv(width, width, 3, stride, device),
                bn2: bn(width, false, device),
                conv3: Some(conv(width, out, 1, 1, device)),
                bn3: Some(bn(out, zero_init, device)),
                downsample,
                relu: Relu::new(),
            }
        } else {
            Self {
                conv1: conv(in_ch, width, 3, stride, device),
                bn1: bn(width, false, device),
                conv2: conv(width, width, 3, 1, device),
                bn2: bn(width, zero_init, device),
                conv3: None,
                bn3: None,
                downsample,
                relu: Relu::new(),
            }
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some((c, n)) => batch_norm(n, c.forward(x.clone()), Activation::None),
            None => x.clone(),
        };
        let out = batch_norm(&self.bn1, self.conv1.forward(x), Activation::Relu);
        let out = match (&self.conv3, &self.bn3) {
            (Some(c), Some(n)) => {
                let out = batch_norm(&self.bn2, self.conv2.forward(out), Activation::Relu);
                batch_norm(n, c.forward(out), Activation::None)
            }
            _ => batch_norm(&self.bn2, self.conv2.forward(out), Activation::None),
        };
        self.relu.forward(out + identity)
    }

    fn positions(&self, prefix: &str, input: [usize; 2], out: &mut BTreeMap<String, usize>) -> [usize; 2] {
        let s1 = conv_out(&self.conv1, input);
        let s2 = conv_out(&self.conv2, s1);
        out.insert(format!("{prefix}.conv1.weight"), s1[0] * s1[1]);
        out.insert(format!("{prefix}.conv2.weight"), s2[0] * s2[1]);
        let mut end = s2;
        if let Some(c) = &self.conv3 {
            end = conv_out(c, s2);
            out.insert(format!("{prefix}.conv3.weight"), end[0] * end[1]);
        }
        if let Some((c, _)) = &self.downsample {
            let s = conv_out(c, input);
            out.insert(format!("{prefix}.downsample.0.weight"), s[0] * s[1]);
        }
        end
    }
}

impl ResNetConfig {
    /// Builds the model on `device`.
    pub fn init(&self, device: &Device) -> ResNet {
        let (k, stride) = match self.stem {
            Stem::ImageNet => (7, 2),
            Stem::Cifar => (3, 1),
        };
        let bottleneck = self.depth.bottleneck();
        let expansion = if bottleneck { 4 } else { 1 };
        let mut in_ch = 64;
        let mut stages = Vec::new();
        for (stage, (blocks, width)) in self.depth.blocks().into_iter().zip([64, 128, 256, 512]).enumerate() {
            let stage_stride = if stage == 0 { 1 } else { 2 };
            let layer: Vec<Block> = (0..blocks)
                .map(|b| {
                    let block = Block::new(
                        in_ch,
                        width,
                        if b == 0 { stage_stride } else { 1 },
                        bottleneck,
                        self.zero_init_residual,
                        device,
                    );
                    in_ch = width * expansion;
                    block
                })
                .collect();
            stages.push(layer);
        }
        let mut stages = stages.into_iter();
        let mut next = || stages.next().unwrap_or_default();
        ResNet {
            conv1: conv(self.in_channels, 64, k, stride, device),
            bn1: bn(64, false, device),
            layer1: next(),
            layer2: next(),
            layer3: next(),
            layer4: next(),
            fc: LinearConfig::new(512 * expansion, self.classes).init(device),
            maxpool: (self.stem == Stem::ImageNet).then(|| {
                MaxPool2dConfig::new([3, 3])
                    .with_strides([2, 2])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init()
            }),
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            relu: Relu::new(),
            dense_first_layer: self.dense_first_layer,
        }
    }
}

impl ResNet {
    fn stages(&self) -> [(&str, &Vec<Block>); 4] {
        [
            ("layer1", &self.layer1),
            ("layer2", &self.layer2),
            ("layer3", &self.layer3),
            ("layer4", &self.layer4),
        ]
    }
}

impl Classifier for ResNet {
    fn to_sparse_model(
        &self,
        masks: &crate::to_sparse::SparseMasks,
        options: &crate::to_sparse::SparseOptions,
    ) -> Result<crate::SparseModel, sparse_kernels::KernelError> {
        Ok(crate::SparseModel::ResNet(crate::to_sparse::ToSparse::to_sparse(
            self, masks, options,
        )?))
    }

    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = batch_norm(&self.bn1, self.conv1.forward(images), Activation::Relu);
        if let Some(pool) = &self.maxpool {
            x = pool.forward(x);
        }
        for (_, stage) in self.stages() {
            for block in stage {
                x = block.forward(x);
            }
        }
        let x = self.avgpool.forward(x).flatten::<2>(1, 3);
        self.fc.forward(x)
    }

    /// All convolutions and the classifier (RigL's ResNet-50 setting); the first
    /// conv stays dense when configured so.
    fn sparsity_filter(&self) -> LayerFilter {
        LayerFilter::new().with_skip_first(self.dense_first_layer)
    }

    fn output_positions(&self, input: [usize; 3]) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        let mut s = conv_out(&self.conv1, [input[1], input[2]]);
        out.insert("conv1.weight".to_string(), s[0] * s[1]);
        if let Some(p) = &self.maxpool {
            s = window_out(s, p.kernel_size, p.stride, p.dilation, &p.padding);
        }
        for (name, stage) in self.stages() {
            for (b, block) in stage.iter().enumerate() {
                s = block.positions(&format!("{name}.{b}"), s, &mut out);
            }
        }
        out
    }
}
