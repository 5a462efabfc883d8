//! [`CompactConv2d`]: a convolution in sparse execution, as a Burn module.
//!
//! A convolution is a linear map of its input patches: output channel `o`
//! at pixel `p` is `Σ_j W[o, j]·patch_p[j]` over the fan-in `j = position ·
//! c_in + channel` (channel-last, the order of [`sparse_core::SparseLayer::flat`]).
//! Its weight is therefore held exactly as a linear layer's, by a
//! [`CompactLinear`] over the `[c_out, fan-in]` matrix: the active values,
//! the optional bias, the probe of a step that reads the dense gradient, the
//! re-planning after a topology update. This module adds the geometry and
//! the forward pass, the direct sparse convolution of
//! [`crate::ops::sparse_conv2d`] (with its handwritten backward under
//! autodiff: `dX` through the transposed sparse convolution, `dW` at the
//! stored positions only).

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use burn::tensor::module::conv2d;
use sparse_core::{Mask, SparseLayer};

use super::compact_linear::CompactLinear;
use crate::activation::Activation;
use crate::error::{KernelError, Result};
use crate::modules::conv::ConvConfig;
use crate::modules::host;

/// A 2-D convolution `act(conv(x, W) + b)` whose weight is stored as its
/// active values only. One group: [`CompactConv2d::new`] refuses grouped and
/// depthwise convolutions (train those masked-dense). The output probe of
/// the compact gradient growth ([`CompactLinear::with_output_probe`]) is for
/// linear layers; a convolution's forward pass does not add it.
#[derive(Module, Debug)]
pub struct CompactConv2d {
    /// The weight (and bias) as a matrix `[c_out, fan-in]` of active values.
    pub weight: CompactLinear,
    #[module(skip)]
    config: ConvConfig,
}

impl CompactConv2d {
    /// The convolution `conv` (its weight's path and shape in `layer`) under
    /// `mask`, with the active entries of its weight (read once here).
    pub fn new(conv: &Conv2d, layer: SparseLayer, mask: Mask) -> Result<Self> {
        let config = ConvConfig::of(conv);
        if config.groups != 1 {
            return Err(KernelError::InvalidConfig(format!(
                "`{}`: sparse execution trains convolutions of one group (this one has {}); train it with `--execution dense`",
                layer.path, config.groups
            )));
        }
        if layer.shape != config.shape {
            return Err(KernelError::shape(
                &layer.path,
                format!(
                    "the sparse layer has shape {:?}, the convolution {:?}",
                    layer.shape, config.shape
                ),
            ));
        }
        let weight = conv.weight.val();
        let device = weight.device();
        let (bias, has_bias) = match &conv.bias {
            Some(b) => (host(b.val())?, true),
            None => (vec![0.0; config.shape[0]], false),
        };
        let compact = CompactLinear::new(layer, mask, &host(weight)?, bias, &device)?;
        let weight = if has_bias { compact } else { compact.without_bias() };
        Ok(Self { weight, config })
    }

    /// `act(conv(x, W) + b)` for `x: [n, c_in, h, w]`: the sparse kernels,
    /// or Burn's dense convolution on a step that multiplies densely (the
    /// probe of a gradient-reading step, or a layer above the crossover).
    pub fn forward(&self, x: Tensor<4>, act: Activation) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let options = self.config.options([h, w]);
        let bias = self.weight.bias_or_zeros();
        let Some(dense) = self.weight.dense_weight_tensor() else {
            return crate::ops::sparse_conv2d(x, self.weight.values.val(), bias, self.weight.plan(), options, act);
        };
        let y = conv2d(x, dense.reshape(self.config.shape), Some(bias), options);
        match act {
            Activation::None => y,
            Activation::Relu => burn::tensor::activation::relu(y),
        }
    }

    /// `into` (a `Conv2d` of the same geometry) with this layer's weight
    /// (zeros at inactive positions) and bias.
    pub fn to_conv(&self, mut into: Conv2d) -> Result<Conv2d> {
        let path = &self.weight.layer().path;
        if ConvConfig::of(&into) != self.config || into.bias.is_some() != self.weight.bias.is_some() {
            return Err(KernelError::shape(
                path,
                "the dense convolution's geometry or bias differs from the compact one's",
            ));
        }
        // as a checkpoint loads: the parameter's id, device and gradient
        // tracking kept, a fresh model's lazy initial values never drawn
        let device = into.weight.lazy_device();
        let weight = self.weight.dense_weight()?;
        let shape = self.config.shape;
        let id = into.weight.id;
        let weight = Tensor::from_data(burn::tensor::TensorData::new(weight, shape), &device);
        into.weight = into.weight.transform_for_load(weight, id);
        if let (Some(b), Some(values)) = (into.bias.take(), self.weight.bias_values()?) {
            let (n, id) = (values.len(), b.id);
            let values = Tensor::from_data(burn::tensor::TensorData::new(values, [n]), &device);
            into.bias = Some(b.transform_for_load(values, id));
        }
        Ok(into)
    }
}
