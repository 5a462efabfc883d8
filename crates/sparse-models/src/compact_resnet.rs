//! [`CompactResNet`]: the [`ResNet`] in sparse execution, for training (issue
//! 10): every convolution a [`CompactConv2d`] and the classifier a
//! [`CompactLinear`], holding their active weights only; the pooling, the
//! residual adds and the forward pass are the `ResNet`'s, and so are the
//! batch norms, run by the fused operator of `sparse_kernels::norm` (with
//! the ReLU after them) while training.
//! The field names are the `ResNet`'s, so parameter paths (and the
//! optimizer state keyed by them) match. [`CompactResNet::to_dense`] writes
//! the weights back into a `ResNet`.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use sparse_core::capture::{Capture, CaptureInputs, CaptureStop};
use sparse_core::{LayerFilter, Sparsifier};
use sparse_kernels::norm::batch_norm;
use sparse_kernels::train::{CompactConv2d, CompactLinear, CompactModel};
use sparse_kernels::{Activation, KernelError};

use crate::Classifier;
use crate::compact_twin::{compact_conv, compact_linear, no_capture, write_linear};
use crate::resnet::{Block, ResNet};

/// A residual block in sparse execution (basic, or bottleneck with `conv3`).
#[derive(Module, Debug)]
pub struct CompactBlock {
    /// First convolution.
    pub conv1: CompactConv2d,
    bn1: BatchNorm,
    /// Second convolution (carries the stride).
    pub conv2: CompactConv2d,
    bn2: BatchNorm,
    /// Third convolution (bottleneck).
    pub conv3: Option<CompactConv2d>,
    bn3: Option<BatchNorm>,
    /// Projection shortcut (1×1 convolution, BN).
    pub downsample: Option<(CompactConv2d, BatchNorm)>,
}

/// The ResNet whose convolutions and classifier keep only their active weights.
#[derive(Module, Debug)]
pub struct CompactResNet {
    /// Stem convolution.
    pub conv1: CompactConv2d,
    bn1: BatchNorm,
    /// Stage 1.
    pub layer1: Vec<CompactBlock>,
    /// Stage 2.
    pub layer2: Vec<CompactBlock>,
    /// Stage 3.
    pub layer3: Vec<CompactBlock>,
    /// Stage 4.
    pub layer4: Vec<CompactBlock>,
    /// Classifier.
    pub fc: CompactLinear,
    maxpool: Option<MaxPool2d>,
}

impl CompactBlock {
    fn from_block(b: &Block, prefix: &str, sparse: &Sparsifier) -> Result<Self, KernelError> {
        let conv = |c: &Conv2d, name: &str| compact_conv(c, &format!("{prefix}.{name}.weight"), sparse);
        Ok(Self {
            conv1: conv(&b.conv1, "conv1")?,
            bn1: b.bn1.clone(),
            conv2: conv(&b.conv2, "conv2")?,
            bn2: b.bn2.clone(),
            conv3: b.conv3.as_ref().map(|c| conv(c, "conv3")).transpose()?,
            bn3: b.bn3.clone(),
            downsample: match &b.downsample {
                Some((c, n)) => Some((conv(c, "downsample.0")?, n.clone())),
                None => None,
            },
        })
    }

    fn write(&self, b: &mut Block) -> Result<(), KernelError> {
        if self.conv3.is_some() != b.conv3.is_some() || self.downsample.is_some() != b.downsample.is_some() {
            return Err(KernelError::InvalidConfig(
                "the dense ResNet's blocks differ from the compact one's (a bottleneck conv or a projection shortcut on one side only); write into a ResNet of the same depth".into(),
            ));
        }
        b.conv1 = self.conv1.to_conv(b.conv1.clone())?;
        b.conv2 = self.conv2.to_conv(b.conv2.clone())?;
        if let (Some(c), Some(d)) = (&self.conv3, b.conv3.take()) {
            b.conv3 = Some(c.to_conv(d)?);
        }
        if let (Some((c, n)), Some((d, _))) = (&self.downsample, b.downsample.take()) {
            b.downsample = Some((c.to_conv(d)?, n.clone()));
        }
        (b.bn1, b.bn2, b.bn3) = (self.bn1.clone(), self.bn2.clone(), self.bn3.clone());
        Ok(())
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some((c, n)) => batch_norm(n, c.forward(x.clone(), Activation::None), Activation::None),
            None => x.clone(),
        };
        let out = batch_norm(&self.bn1, self.conv1.forward(x, Activation::None), Activation::Relu);
        let out = match (&self.conv3, &self.bn3) {
            (Some(c), Some(n)) => {
                let out = batch_norm(&self.bn2, self.conv2.forward(out, Activation::None), Activation::Relu);
                batch_norm(n, c.forward(out, Activation::None), Activation::None)
            }
            _ => batch_norm(&self.bn2, self.conv2.forward(out, Activation::None), Activation::None),
        };
        relu(out + identity)
    }

    /// The block's convolutions in a fixed order.
    fn layers(&self) -> Vec<&CompactLinear> {
        let mut out = vec![&self.conv1.weight, &self.conv2.weight];
        out.extend(self.conv3.iter().map(|c| &c.weight));
        out.extend(self.downsample.iter().map(|(c, _)| &c.weight));
        out
    }

    /// The block with each convolution's weight replaced by `f(next index, weight)`.
    fn map(mut self, next: &mut usize, f: &mut MapFn<'_>) -> Result<Self, KernelError> {
        self.conv1.weight = apply(next, f, self.conv1.weight)?;
        self.conv2.weight = apply(next, f, self.conv2.weight)?;
        if let Some(mut c) = self.conv3.take() {
            c.weight = apply(next, f, c.weight)?;
            self.conv3 = Some(c);
        }
        if let Some((mut c, n)) = self.downsample.take() {
            c.weight = apply(next, f, c.weight)?;
            self.downsample = Some((c, n));
        }
        Ok(self)
    }
}

type MapFn<'a> = dyn FnMut(usize, CompactLinear) -> Result<CompactLinear, KernelError> + 'a;

fn apply(next: &mut usize, f: &mut MapFn<'_>, layer: CompactLinear) -> Result<CompactLinear, KernelError> {
    let i = *next;
    *next += 1;
    f(i, layer)
}

impl CompactResNet {
    /// The sparse-execution twin of `net` under the masks of `sparse` (a
    /// layer the plan does not manage keeps every weight), on its device.
    pub fn from_dense(net: &ResNet, sparse: &Sparsifier) -> Result<Self, KernelError> {
        let stage = |name: &str, blocks: &[Block]| {
            blocks
                .iter()
                .enumerate()
                .map(|(i, b)| CompactBlock::from_block(b, &format!("{name}.{i}"), sparse))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            conv1: compact_conv(&net.conv1, "conv1.weight", sparse)?,
            bn1: net.bn1.clone(),
            layer1: stage("layer1", &net.layer1)?,
            layer2: stage("layer2", &net.layer2)?,
            layer3: stage("layer3", &net.layer3)?,
            layer4: stage("layer4", &net.layer4)?,
            fc: compact_linear(&net.fc, "fc.weight", sparse)?,
            maxpool: net.maxpool.clone(),
        })
    }

    /// `into` (a `ResNet` of the same configuration) with this model's
    /// weights and batch-norm parameters and statistics.
    pub fn to_dense(&self, mut into: ResNet) -> Result<ResNet, KernelError> {
        into.conv1 = self.conv1.to_conv(into.conv1.clone())?;
        into.bn1 = self.bn1.clone();
        for (compact, dense) in
            self.stages()
                .into_iter()
                .zip([&mut into.layer1, &mut into.layer2, &mut into.layer3, &mut into.layer4])
        {
            if compact.len() != dense.len() {
                return Err(KernelError::InvalidConfig(format!(
                    "the dense ResNet has a stage of {} blocks, the compact one {}",
                    dense.len(),
                    compact.len()
                )));
            }
            for (c, d) in compact.iter().zip(dense.iter_mut()) {
                c.write(d)?;
            }
        }
        write_linear(&self.fc, &mut into.fc)?;
        Ok(into)
    }

    fn stages(&self) -> [&Vec<CompactBlock>; 4] {
        [&self.layer1, &self.layer2, &self.layer3, &self.layer4]
    }
}

impl CompactModel for CompactResNet {
    fn compact_layers(&self) -> Vec<&CompactLinear> {
        let mut out = vec![&self.conv1.weight];
        for block in self.stages().into_iter().flatten() {
            out.extend(block.layers());
        }
        out.push(&self.fc);
        out
    }

    fn try_map_compact(mut self, f: &mut MapFn<'_>) -> Result<Self, KernelError> {
        let mut next = 0;
        self.conv1.weight = apply(&mut next, f, self.conv1.weight)?;
        for stage in [&mut self.layer1, &mut self.layer2, &mut self.layer3, &mut self.layer4] {
            *stage = std::mem::take(stage)
                .into_iter()
                .map(|b| b.map(&mut next, f))
                .collect::<Result<_, _>>()?;
        }
        self.fc = apply(&mut next, f, self.fc)?;
        Ok(self)
    }
}

impl Classifier for CompactResNet {
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = batch_norm(
            &self.bn1,
            self.conv1.forward(images, Activation::None),
            Activation::Relu,
        );
        if let Some(pool) = &self.maxpool {
            x = pool.forward(x);
        }
        for block in self.stages().into_iter().flatten() {
            x = block.forward(x);
        }
        let [b, c, _, _] = x.dims();
        let x = x.flatten::<3>(2, 3).mean_dim(2).reshape([b, c]);
        self.fc.forward(x, Activation::None)
    }

    fn sparsity_filter(&self) -> LayerFilter {
        LayerFilter::new()
    }

    fn output_positions(&self, _input: [usize; 3]) -> BTreeMap<String, usize> {
        BTreeMap::new()
    }
}

impl CaptureInputs for CompactResNet {
    type Batch = Tensor<4>;
    type Output = Tensor<2>;

    fn forward_capture(&self, _images: Tensor<4>, _cap: &mut Capture<'_>) -> Result<Tensor<2>, CaptureStop> {
        Err(no_capture())
    }
}
