//! [`SparseConv2d`]: a Burn `Conv2d` (optionally with a folded BatchNorm and a
//! fused ReLU) whose weight is stored sparse.

use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor, TensorData};
use sparse_core::{Mask, SparseLayer};

use super::weight::SparseWeight;
use super::{choose, fold_batch_norm, host};
use crate::activation::Activation;
use crate::error::{KernelError, Result};
use crate::formats::{self, FormatKind, channel};
use crate::ops::sparse_conv2d;
use crate::plan::OpKind;

/// How the weight is held.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // one weight per layer: size does not matter
pub enum ConvWeight {
    /// A sparse format (all run the direct sparse convolution over CSR rows).
    Sparse(SparseWeight),
    /// Whole output channels removed: a dense `[kept, c_in/groups, kh, kw]` weight.
    Pruned(PrunedConv),
    /// Dense, masked (denser than the crossover, or asked for).
    Dense(Param<Tensor<4>>),
}

/// A channel-pruned conv weight.
#[derive(Module, Debug)]
pub struct PrunedConv {
    /// `[kept, c_in/groups, kh, kw]`.
    pub weight: Param<Tensor<4>>,
    /// Kept output channels.
    pub kept: Tensor<1, Int>,
}

/// Conv geometry copied from the source `Conv2d`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvConfig {
    /// `[c_out, c_in / groups, kh, kw]`.
    pub shape: [usize; 4],
    /// Stride.
    pub stride: [usize; 2],
    /// Dilation.
    pub dilation: [usize; 2],
    /// Groups.
    pub groups: usize,
    /// Padding.
    pub padding: PaddingConfig2d,
}

/// The shape of a convolution weight, read without initialising a lazy
/// parameter (a fresh model that a trained one is written into).
fn lazy_dims(weight: &Param<Tensor<4>>) -> [usize; 4] {
    let shape = weight.lazy_shape().to_vec();
    [shape[0], shape[1], shape[2], shape[3]]
}

impl ConvConfig {
    /// The geometry of `conv`.
    pub fn of(conv: &Conv2d) -> Self {
        Self {
            shape: lazy_dims(&conv.weight),
            stride: conv.stride,
            dilation: conv.dilation,
            groups: conv.groups,
            padding: conv.padding.clone(),
        }
    }

    /// Burn's conv options for an input of `[h, w]`.
    pub fn options(&self, hw: [usize; 2]) -> ConvOptions<2> {
        let pairs = padding_pairs(&self.padding, hw, [self.shape[2], self.shape[3]], self.stride);
        ConvOptions::new_with_padding(self.stride, pairs, self.dilation, self.groups)
    }
}

/// A 2-D convolution with a sparse weight: `act(conv(x, W) + b)`.
#[derive(Module, Debug)]
pub struct SparseConv2d {
    /// The weight.
    pub weight: ConvWeight,
    /// Bias (zeros when the source had none; BN folded in).
    pub bias: Param<Tensor<1>>,
    /// Geometry.
    #[module(skip)]
    pub config: ConvConfig,
    /// Fused activation.
    #[module(skip)]
    pub act: Activation,
}

impl SparseConv2d {
    /// Converts `conv` (with `bn` folded in, if given) under `mask` (over its weight) to `format`.
    pub fn from_conv(
        conv: &Conv2d,
        bn: Option<&BatchNorm>,
        mask: &Mask,
        path: &str,
        format: FormatKind,
        act: Activation,
    ) -> Result<Self> {
        let shape = conv.weight.dims();
        let mut weights = host(conv.weight.val())?;
        let mut bias = match &conv.bias {
            Some(b) => host(b.val())?,
            None => vec![0.0; shape[0]],
        };
        if let Some(bn) = bn {
            fold_batch_norm(bn, &mut weights, &mut bias)?;
        }
        let config = ConvConfig::of(conv);
        Self::from_parts(config, weights, bias, mask, path, format, act, &conv.weight.device())
    }

    /// Builds from host weights (Burn layout `[c_out, c_in/groups, kh, kw]`) and bias.
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        config: ConvConfig,
        mut weights: Vec<f32>,
        bias: Vec<f32>,
        mask: &Mask,
        path: &str,
        format: FormatKind,
        act: Activation,
        device: &Device,
    ) -> Result<Self> {
        let [c_out, cin_g, kh, kw] = config.shape;
        let layer = SparseLayer::conv(path, &config.shape);
        let op = OpKind::Conv {
            cin_g,
            kernel: [kh, kw],
            groups: config.groups,
        };
        if bias.len() != c_out {
            return Err(KernelError::shape(
                path,
                format!("bias has {} entries, expected {c_out}", bias.len()),
            ));
        }
        formats::check_inputs(&layer, op, mask, &weights)?;
        let format = match format {
            FormatKind::Auto => {
                let choice = choose(&layer, op, mask);
                tracing::debug!(layer = path, format = choice.format.name(), reason = %choice.reason, "auto format");
                choice.format
            }
            f => f,
        };
        let weight = match format {
            FormatKind::Dense => {
                mask.apply(&mut weights);
                ConvWeight::Dense(Param::from_tensor(Tensor::from_data(
                    TensorData::new(weights, config.shape),
                    device,
                )))
            }
            FormatKind::Channel if config.groups == 1 => {
                let p = channel::build(&layer, mask, &weights)?;
                let kept = p.kept.iter().map(|&k| k as i32).collect::<Vec<_>>();
                ConvWeight::Pruned(PrunedConv {
                    weight: Param::from_tensor(Tensor::from_data(
                        TensorData::new(p.weights, [kept.len(), cin_g, kh, kw]),
                        device,
                    )),
                    kept: Tensor::from_data(TensorData::new(kept.clone(), [kept.len()]), device),
                })
            }
            FormatKind::Channel => {
                return Err(KernelError::InvalidConfig(format!(
                    "`{path}`: the channel format needs groups = 1 (this conv has {}); use csr",
                    config.groups
                )));
            }
            f => ConvWeight::Sparse(SparseWeight::new(
                formats::build(&layer, op, mask, &weights, f, None)?,
                device,
            )),
        };
        Ok(Self {
            weight,
            bias: Param::from_tensor(Tensor::from_data(TensorData::new(bias, [c_out]), device)),
            config,
            act,
        })
    }

    /// Burn's conv options for an input of `[h, w]`.
    pub fn options(&self, hw: [usize; 2]) -> ConvOptions<2> {
        self.config.options(hw)
    }

    /// `act(conv(x, W) + b)` for `x: [n, c_in, h, w]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let options = self.options([h, w]);
        let bias = self.bias.val();
        let y = match &self.weight {
            ConvWeight::Sparse(sw) => return sparse_conv2d(x, sw.values.val(), bias, &sw.plan, options, self.act),
            ConvWeight::Dense(wt) => conv2d(x, wt.val(), Some(bias), options),
            ConvWeight::Pruned(p) => {
                let small = conv2d(x, p.weight.val(), Some(bias.clone().select(0, p.kept.clone())), options);
                let [n, _, ho, wo] = small.dims();
                let full = bias
                    .reshape([1, self.config.shape[0], 1, 1])
                    .expand([n, self.config.shape[0], ho, wo]);
                full.select_assign(1, p.kept.clone(), small, IndexingUpdateOp::Assign)
            }
        };
        match self.act {
            Activation::None => y,
            Activation::Relu => burn::tensor::activation::relu(y),
        }
    }

    /// The format in use.
    pub fn format(&self) -> &'static str {
        match &self.weight {
            ConvWeight::Sparse(w) => w.plan.storage_name(),
            ConvWeight::Pruned(_) => "channel",
            ConvWeight::Dense(_) => "dense",
        }
    }
}

/// `(begin, end)` padding per dimension, as `burn::nn::Conv2d` computes it
/// (`Same` as TensorFlow does, from the kernel size and stride).
pub fn padding_pairs(
    p: &PaddingConfig2d,
    hw: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
) -> [(usize, usize); 2] {
    let same = |k: usize, s: usize, n: usize| {
        let out = n.div_ceil(s);
        let total = if out > 0 {
            ((out - 1) * s + k).saturating_sub(n)
        } else {
            0
        };
        (total / 2, total - total / 2)
    };
    match p {
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Same => [same(kernel[0], stride[0], hw[0]), same(kernel[1], stride[1], hw[1])],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(*top, *bottom), (*left, *right)],
    }
}
