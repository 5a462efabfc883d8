//! The dense twin of a sparse model: every layer converted back to a dense,
//! masked weight (the same numbers in Burn's own dense layers), for measuring
//! what the sparse formats gain (`sparseburn bench MODEL`). Also the input
//! shape of every layer, for timing layers on their own.

use burn::tensor::{Device, Int, Tensor};
use sparse_core::{Mask, SparseLayer};
use sparse_kernels::modules::conv::{ConvWeight, padding_pairs};
use sparse_kernels::modules::linear::LinearWeight;
use sparse_kernels::{FormatKind, KernelError, SparseConv2d, SparseLinear};

use crate::exported::SparseModel;
use crate::sparse_cnn::SparseSmallCnn;
use crate::sparse_mlp::SparseMlp;
use crate::sparse_mobilenet::{SparseMobileNetV1, SparseSeparable};
use crate::sparse_resnet::{SparseBlock, SparseResNet};
use sparse_kernels::modules::host;

fn kept(t: &Tensor<1, Int>) -> Result<Vec<usize>, KernelError> {
    t.clone()
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .map(|v| v.into_iter().map(|k| k as usize).collect())
        .map_err(|e| KernelError::TensorRead(format!("{e:?}")))
}

/// The dense twin of one linear layer.
pub fn dense_linear(l: &SparseLinear, name: &str) -> Result<SparseLinear, KernelError> {
    let (d_in, d_out) = (l.d_input, l.d_output);
    let weights = match &l.weight {
        LinearWeight::Dense(w) => host(w.val())?,
        LinearWeight::Sparse(w) => {
            let layer = SparseLayer::linear(name, d_in, d_out);
            let rows = w.plan.to_dense_rows(&host(w.values.val())?);
            scatter_rows(&layer, &rows)
        }
        LinearWeight::Pruned(p) => {
            let small = host(p.weight.val())?;
            let kept = kept(&p.kept)?;
            let mut out = vec![0.0; d_in * d_out];
            for i in 0..d_in {
                for (k, &o) in kept.iter().enumerate() {
                    out[i * d_out + o] = small[i * kept.len() + k];
                }
            }
            out
        }
    };
    let bias = host(l.bias.val())?;
    let device = l.bias.device();
    SparseLinear::from_parts(
        d_in,
        d_out,
        weights,
        bias,
        &Mask::ones(d_in * d_out),
        name,
        FormatKind::Dense,
        l.act,
        &device,
    )
}

/// The dense twin of one convolution.
pub fn dense_conv(c: &SparseConv2d, name: &str) -> Result<SparseConv2d, KernelError> {
    let shape = c.config.shape;
    let numel: usize = shape.iter().product();
    let weights = match &c.weight {
        ConvWeight::Dense(w) => host(w.val())?,
        ConvWeight::Sparse(w) => {
            let layer = SparseLayer::conv(name, &shape);
            let rows = w.plan.to_dense_rows(&host(w.values.val())?);
            scatter_rows(&layer, &rows)
        }
        ConvWeight::Pruned(p) => {
            let small = host(p.weight.val())?;
            let per = numel / shape[0];
            let mut out = vec![0.0; numel];
            for (k, &o) in kept(&p.kept)?.iter().enumerate() {
                out[o * per..(o + 1) * per].copy_from_slice(&small[k * per..(k + 1) * per]);
            }
            out
        }
    };
    let bias = host(c.bias.val())?;
    let device = c.bias.device();
    SparseConv2d::from_parts(
        c.config.clone(),
        weights,
        bias,
        &Mask::ones(numel),
        name,
        FormatKind::Dense,
        c.act,
        &device,
    )
}

/// Dense rows `[neurons, fan_in]` (fan-in in `SparseLayer::flat` order) to Burn's layout.
fn scatter_rows(layer: &SparseLayer, rows: &[f32]) -> Vec<f32> {
    let cols = layer.fan_in();
    let mut out = vec![0.0f32; layer.numel()];
    for o in 0..layer.neurons() {
        for j in 0..cols {
            out[layer.flat(o, j)] = rows[o * cols + j];
        }
    }
    out
}

/// The output shape `[C, H, W]` of `c` for an input `[C, H, W]`.
pub fn conv_output(c: &SparseConv2d, [_, h, w]: [usize; 3]) -> [usize; 3] {
    let cfg = &c.config;
    let k = [cfg.shape[2], cfg.shape[3]];
    let pads = padding_pairs(&cfg.padding, [h, w], k, cfg.stride);
    let out = |n: usize, (a, b): (usize, usize), i: usize| {
        (n + a + b).saturating_sub(cfg.dilation[i] * (k[i] - 1) + 1) / cfg.stride[i] + 1
    };
    [cfg.shape[0], out(h, pads[0], 0), out(w, pads[1], 1)]
}

impl SparseModel {
    /// The dense twin: the same model with every layer dense (masked weights).
    pub fn to_dense(&self) -> Result<SparseModel, KernelError> {
        Ok(match self {
            Self::Mlp(m) => Self::Mlp(SparseMlp {
                layers: m
                    .layers
                    .iter()
                    .enumerate()
                    .map(|(i, l)| dense_linear(l, &format!("layers.{i}")))
                    .collect::<Result<_, _>>()?,
            }),
            Self::Cnn(m) => Self::Cnn(SparseSmallCnn {
                conv1: dense_conv(&m.conv1, "conv1")?,
                conv2: dense_conv(&m.conv2, "conv2")?,
                fc1: dense_linear(&m.fc1, "fc1")?,
                fc2: dense_linear(&m.fc2, "fc2")?,
                pool: m.pool.clone(),
            }),
            Self::ResNet(m) => {
                let mut stages = Vec::new();
                for (s, stage) in m.stages.iter().enumerate() {
                    let mut blocks = Vec::new();
                    for (b, block) in stage.iter().enumerate() {
                        let p = format!("layer{}.{b}", s + 1);
                        blocks.push(SparseBlock {
                            conv1: dense_conv(&block.conv1, &format!("{p}.conv1"))?,
                            conv2: dense_conv(&block.conv2, &format!("{p}.conv2"))?,
                            conv3: block
                                .conv3
                                .as_ref()
                                .map(|c| dense_conv(c, &format!("{p}.conv3")))
                                .transpose()?,
                            downsample: block
                                .downsample
                                .as_ref()
                                .map(|c| dense_conv(c, &format!("{p}.downsample")))
                                .transpose()?,
                        });
                    }
                    stages.push(blocks);
                }
                Self::ResNet(SparseResNet {
                    conv1: dense_conv(&m.conv1, "conv1")?,
                    maxpool: m.maxpool.clone(),
                    stages,
                    fc: dense_linear(&m.fc, "fc")?,
                })
            }
            Self::MobileNetV1(m) => Self::MobileNetV1(SparseMobileNetV1 {
                stem: dense_conv(&m.stem, "stem")?,
                blocks: m
                    .blocks
                    .iter()
                    .enumerate()
                    .map(|(i, b)| {
                        Ok(SparseSeparable {
                            dw: dense_conv(&b.dw, &format!("blocks.{i}.dw"))?,
                            pw: dense_conv(&b.pw, &format!("blocks.{i}.pw"))?,
                        })
                    })
                    .collect::<Result<_, KernelError>>()?,
                fc: dense_linear(&m.fc, "fc")?,
            }),
        })
    }

    /// The input shape of every layer of [`SparseModel::layers`] (same order)
    /// for one image `[C, H, W]`: `[C, H, W]` for a conv, `[d_input]` for a linear layer.
    pub fn layer_inputs(&self, input: [usize; 3]) -> Vec<Vec<usize>> {
        let halve = |[c, h, w]: [usize; 3]| [c, h / 2, w / 2];
        match self {
            Self::Mlp(m) => m.layers.iter().map(|l| vec![l.d_input]).collect(),
            Self::Cnn(m) => {
                let a = conv_output(&m.conv1, input);
                vec![
                    input.to_vec(),
                    halve(a).to_vec(),
                    vec![m.fc1.d_input],
                    vec![m.fc2.d_input],
                ]
            }
            Self::ResNet(m) => {
                let mut out = vec![input.to_vec()];
                let mut x = conv_output(&m.conv1, input);
                if m.maxpool.is_some() {
                    // 3×3, stride 2, padding 1
                    x = [x[0], (x[1] + 2 - 3) / 2 + 1, (x[2] + 2 - 3) / 2 + 1];
                }
                for block in m.stages.iter().flatten() {
                    if block.downsample.is_some() {
                        out.push(x.to_vec());
                    }
                    out.push(x.to_vec());
                    let a = conv_output(&block.conv1, x);
                    out.push(a.to_vec());
                    let mut y = conv_output(&block.conv2, a);
                    if let Some(c) = &block.conv3 {
                        out.push(y.to_vec());
                        y = conv_output(c, y);
                    }
                    x = y;
                }
                out.push(vec![m.fc.d_input]);
                out
            }
            Self::MobileNetV1(m) => {
                let mut out = vec![input.to_vec()];
                let mut x = conv_output(&m.stem, input);
                for b in &m.blocks {
                    out.push(x.to_vec());
                    let a = conv_output(&b.dw, x);
                    out.push(a.to_vec());
                    x = conv_output(&b.pw, a);
                }
                out.push(vec![m.fc.d_input]);
                out
            }
        }
    }
}

/// Random-looking but fixed inputs `[batch, dims…]` for timing.
pub fn timing_input<const D: usize>(dims: [usize; D], device: &Device) -> Tensor<D> {
    let n: usize = dims.iter().product();
    let values: Vec<f32> = (0..n).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
    Tensor::from_data(burn::tensor::TensorData::new(values, dims), device)
}
