//! [`SparseLinear`]: a Burn `Linear` whose weight is stored sparse.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor, TensorData};
use sparse_core::{Mask, SparseLayer};

use super::weight::SparseWeight;
use super::{choose, host};
use crate::activation::Activation;
use crate::error::{KernelError, Result};
use crate::formats::{self, FormatKind, channel};
use crate::ops::sparse_linear;
use crate::plan::OpKind;

/// How the weight is held.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // one weight per layer: size does not matter
pub enum LinearWeight {
    /// A sparse format (CSR, condensed, N:M, BSR).
    Sparse(SparseWeight),
    /// Whole neurons removed: a dense `[d_input, kept]` weight.
    Pruned(PrunedLinear),
    /// Dense, masked.
    Dense(Param<Tensor<2>>),
}

/// A channel-pruned linear weight.
#[derive(Module, Debug)]
pub struct PrunedLinear {
    /// `[d_input, kept]`.
    pub weight: Param<Tensor<2>>,
    /// Kept output neurons.
    pub kept: Tensor<1, Int>,
}

/// A linear layer with a sparse weight: `act(x·W + b)`, `x: [batch, d_input]`.
#[derive(Module, Debug)]
pub struct SparseLinear {
    /// The weight.
    pub weight: LinearWeight,
    /// Bias (zeros when the source layer had none).
    pub bias: Param<Tensor<1>>,
    /// Input features.
    #[module(skip)]
    pub d_input: usize,
    /// Output features.
    #[module(skip)]
    pub d_output: usize,
    /// Fused activation.
    #[module(skip)]
    pub act: Activation,
}

impl SparseLinear {
    /// Converts `linear` under `mask` (over its `[d_input, d_output]` weight) to `format`.
    /// `path` names the layer in errors; `act` is fused into the output.
    pub fn from_linear(linear: &Linear, mask: &Mask, path: &str, format: FormatKind, act: Activation) -> Result<Self> {
        let [d_input, d_output] = linear.weight.dims();
        let weights = host(linear.weight.val())?;
        let bias = match &linear.bias {
            Some(b) => host(b.val())?,
            None => vec![0.0; d_output],
        };
        Self::from_parts(
            d_input,
            d_output,
            weights,
            bias,
            mask,
            path,
            format,
            act,
            &linear.weight.device(),
        )
    }

    /// Builds from host weights `[d_input, d_output]` (Burn layout) and bias.
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        d_input: usize,
        d_output: usize,
        mut weights: Vec<f32>,
        bias: Vec<f32>,
        mask: &Mask,
        path: &str,
        format: FormatKind,
        act: Activation,
        device: &Device,
    ) -> Result<Self> {
        let layer = SparseLayer::linear(path, d_input, d_output);
        if bias.len() != d_output {
            return Err(KernelError::shape(
                path,
                format!("bias has {} entries, expected {d_output}", bias.len()),
            ));
        }
        formats::check_inputs(&layer, OpKind::Linear, mask, &weights)?;
        let format = match format {
            FormatKind::Auto => {
                let choice = choose(&layer, OpKind::Linear, mask);
                tracing::debug!(layer = path, format = choice.format.name(), reason = %choice.reason, "auto format");
                choice.format
            }
            f => f,
        };
        let weight = match format {
            FormatKind::Dense => {
                mask.apply(&mut weights);
                LinearWeight::Dense(Param::from_tensor(Tensor::from_data(
                    TensorData::new(weights, [d_input, d_output]),
                    device,
                )))
            }
            FormatKind::Channel => {
                let p = channel::build(&layer, mask, &weights)?;
                let kept = p.kept.iter().map(|&k| k as i32).collect::<Vec<_>>();
                LinearWeight::Pruned(PrunedLinear {
                    weight: Param::from_tensor(Tensor::from_data(
                        TensorData::new(p.weights, [d_input, kept.len()]),
                        device,
                    )),
                    kept: Tensor::from_data(TensorData::new(kept.clone(), [kept.len()]), device),
                })
            }
            f => LinearWeight::Sparse(SparseWeight::new(
                formats::build(&layer, OpKind::Linear, mask, &weights, f, None)?,
                device,
            )),
        };
        Ok(Self {
            weight,
            bias: Param::from_tensor(Tensor::from_data(TensorData::new(bias, [d_output]), device)),
            d_input,
            d_output,
            act,
        })
    }

    /// `act(x·W + b)` for `x: [batch, d_input]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let bias = self.bias.val();
        let y = match &self.weight {
            LinearWeight::Sparse(w) => return sparse_linear(x, w.values.val(), bias, &w.plan, self.act),
            LinearWeight::Dense(w) => x.matmul(w.val()) + bias.unsqueeze_dim(0),
            LinearWeight::Pruned(p) => {
                let [batch, _] = x.dims();
                let small = x.matmul(p.weight.val()) + bias.clone().select(0, p.kept.clone()).unsqueeze_dim(0);
                let full = bias.unsqueeze_dim::<2>(0).expand([batch, self.d_output]);
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
            LinearWeight::Sparse(w) => w.plan.storage_name(),
            LinearWeight::Pruned(_) => "channel",
            LinearWeight::Dense(_) => "dense",
        }
    }
}
