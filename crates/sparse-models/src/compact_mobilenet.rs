//! [`CompactMobileNet`]: the [`MobileNetV1`] in sparse execution, for
//! training: the stem and every pointwise convolution a [`CompactConv2d`]
//! and the classifier a [`CompactLinear`], holding their active weights
//! only. The depthwise convolutions stay Burn's dense `Conv2d` (9 weights
//! per channel, a few percent of the network; MobileNetV1's sparsity
//! filter leaves them dense, and a run that puts one in the sparse set is
//! refused here). The batch norms, the pooling and the forward pass are the
//! `MobileNetV1`'s. The field names are the `MobileNetV1`'s, so parameter
//! paths (and the optimizer state keyed by them) match.
//! [`CompactMobileNet::to_dense`] writes the weights back.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::tensor::Tensor;
use sparse_core::capture::{Capture, CaptureInputs, CaptureStop};
use sparse_core::{LayerFilter, Sparsifier};
use sparse_kernels::norm::batch_norm;
use sparse_kernels::train::{CompactConv2d, CompactLinear, CompactModel};
use sparse_kernels::{Activation, KernelError};

use crate::Classifier;
use crate::compact_twin::{compact_conv, compact_linear, no_capture, plan_mask, write_linear};
use crate::mobilenet::{MobileNetV1, Separable};

/// A depthwise-separable block in sparse execution.
#[derive(Module, Debug)]
pub struct CompactSeparable {
    /// Depthwise 3×3 convolution, dense.
    pub dw: Conv2d,
    dw_bn: BatchNorm,
    /// Pointwise 1×1 convolution.
    pub pw: CompactConv2d,
    pw_bn: BatchNorm,
}

/// The MobileNetV1 whose stem, pointwise convolutions and classifier keep
/// only their active weights.
#[derive(Module, Debug)]
pub struct CompactMobileNet {
    /// Stem convolution and batch norm.
    pub stem: (CompactConv2d, BatchNorm),
    /// The 13 separable blocks.
    pub blocks: Vec<CompactSeparable>,
    /// Classifier.
    pub fc: CompactLinear,
    avgpool: AdaptiveAvgPool2d,
}

impl CompactMobileNet {
    /// The sparse-execution twin of `net` under the masks of `sparse` (a
    /// layer the plan does not manage keeps every weight), on its device;
    /// an error when the plan sparsifies a depthwise convolution.
    pub fn from_dense(net: &MobileNetV1, sparse: &Sparsifier) -> Result<Self, KernelError> {
        let blocks = net
            .blocks
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let dw = format!("blocks.{i}.dw.weight");
                if plan_mask(sparse, &dw).is_some() {
                    return Err(KernelError::InvalidConfig(format!(
                        "`{dw}` is a depthwise convolution in the sparse set; sparse execution keeps MobileNetV1's depthwise convolutions dense, so leave them out of it (the model's default filter does) or train with `--execution dense`"
                    )));
                }
                Ok(CompactSeparable {
                    dw: b.dw.clone(),
                    dw_bn: b.dw_bn.clone(),
                    pw: compact_conv(&b.pw, &format!("blocks.{i}.pw.weight"), sparse)?,
                    pw_bn: b.pw_bn.clone(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            stem: (compact_conv(&net.stem.0, "stem.0.weight", sparse)?, net.stem.1.clone()),
            blocks,
            fc: compact_linear(&net.fc, "fc.weight", sparse)?,
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
        })
    }

    /// `into` (a `MobileNetV1` of the same configuration) with this model's
    /// weights and batch-norm parameters and statistics.
    pub fn to_dense(&self, mut into: MobileNetV1) -> Result<MobileNetV1, KernelError> {
        if into.blocks.len() != self.blocks.len() {
            return Err(KernelError::InvalidConfig(format!(
                "the dense MobileNetV1 has {} blocks, the compact one {}",
                into.blocks.len(),
                self.blocks.len()
            )));
        }
        into.stem = (self.stem.0.to_conv(into.stem.0.clone())?, self.stem.1.clone());
        for (c, d) in self.blocks.iter().zip(into.blocks.iter_mut()) {
            *d = Separable {
                dw: c.dw.clone(),
                dw_bn: c.dw_bn.clone(),
                pw: c.pw.to_conv(d.pw.clone())?,
                pw_bn: c.pw_bn.clone(),
            };
        }
        write_linear(&self.fc, &mut into.fc)?;
        Ok(into)
    }
}

impl CompactModel for CompactMobileNet {
    fn compact_layers(&self) -> Vec<&CompactLinear> {
        let mut out = vec![&self.stem.0.weight];
        out.extend(self.blocks.iter().map(|b| &b.pw.weight));
        out.push(&self.fc);
        out
    }

    fn try_map_compact(
        mut self,
        f: &mut dyn FnMut(usize, CompactLinear) -> Result<CompactLinear, KernelError>,
    ) -> Result<Self, KernelError> {
        self.stem.0.weight = f(0, self.stem.0.weight)?;
        let n = self.blocks.len();
        self.blocks = std::mem::take(&mut self.blocks)
            .into_iter()
            .enumerate()
            .map(|(i, mut b)| {
                b.pw.weight = f(i + 1, b.pw.weight)?;
                Ok(b)
            })
            .collect::<Result<_, KernelError>>()?;
        self.fc = f(n + 1, self.fc)?;
        Ok(self)
    }
}

impl Classifier for CompactMobileNet {
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = batch_norm(
            &self.stem.1,
            self.stem.0.forward(images, Activation::None),
            Activation::Relu,
        );
        for b in &self.blocks {
            x = batch_norm(&b.dw_bn, b.dw.forward(x), Activation::Relu);
            x = batch_norm(&b.pw_bn, b.pw.forward(x, Activation::None), Activation::Relu);
        }
        self.fc
            .forward(self.avgpool.forward(x).flatten::<2>(1, 3), Activation::None)
    }

    fn sparsity_filter(&self) -> LayerFilter {
        LayerFilter::new()
    }

    fn output_positions(&self, _input: [usize; 3]) -> BTreeMap<String, usize> {
        BTreeMap::new()
    }
}

impl CaptureInputs for CompactMobileNet {
    type Batch = Tensor<4>;
    type Output = Tensor<2>;

    fn forward_capture(&self, _images: Tensor<4>, _cap: &mut Capture<'_>) -> Result<Tensor<2>, CaptureStop> {
        Err(no_capture())
    }
}
