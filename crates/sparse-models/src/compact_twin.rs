//! [`CompactTwin`]: a model that has a sparse-execution twin for training,
//! and the moves between the two (the masked-dense model holds the final
//! weights and is what a compact checkpoint is read back into; the twin takes
//! the steps and writes the checkpoints), and the per-layer moves every twin
//! is built from.

use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor, TensorData};
use sparse_core::capture::CaptureStop;
use sparse_core::{Mask, SparseError, SparseLayer, Sparsifier};
use sparse_kernels::KernelError;
use sparse_kernels::modules::host;
use sparse_kernels::train::{CompactConv2d, CompactLinear, CompactModel};

use crate::{Classifier, CompactCnn, CompactMlp, CompactMobileNet, CompactResNet, Mlp, MobileNetV1, ResNet, SmallCnn};

/// A model with a sparse-execution twin ([`CompactModel`]).
pub trait CompactTwin: Classifier + Sized + 'static {
    /// The twin: the same layers, the sparse ones as their active values.
    type Compact: CompactModel + Classifier + 'static;

    /// The twin of this model under the masks of `sparse`, on its device.
    fn to_compact(&self, sparse: &Sparsifier) -> Result<Self::Compact, KernelError>;

    /// `self` (e.g. fresh from its config) with the weights of `compact`.
    fn with_compact(self, compact: &Self::Compact) -> Result<Self, KernelError>;
}

impl CompactTwin for Mlp {
    type Compact = CompactMlp;

    fn to_compact(&self, sparse: &Sparsifier) -> Result<CompactMlp, KernelError> {
        CompactMlp::from_dense(self, sparse)
    }

    fn with_compact(self, compact: &CompactMlp) -> Result<Self, KernelError> {
        compact.to_dense(self)
    }
}

impl CompactTwin for SmallCnn {
    type Compact = CompactCnn;

    fn to_compact(&self, sparse: &Sparsifier) -> Result<CompactCnn, KernelError> {
        CompactCnn::from_dense(self, sparse)
    }

    fn with_compact(self, compact: &CompactCnn) -> Result<Self, KernelError> {
        compact.to_dense(self)
    }
}

impl CompactTwin for ResNet {
    type Compact = CompactResNet;

    fn to_compact(&self, sparse: &Sparsifier) -> Result<CompactResNet, KernelError> {
        CompactResNet::from_dense(self, sparse)
    }

    fn with_compact(self, compact: &CompactResNet) -> Result<Self, KernelError> {
        compact.to_dense(self)
    }
}

impl CompactTwin for MobileNetV1 {
    type Compact = CompactMobileNet;

    fn to_compact(&self, sparse: &Sparsifier) -> Result<CompactMobileNet, KernelError> {
        CompactMobileNet::from_dense(self, sparse)
    }

    fn with_compact(self, compact: &CompactMobileNet) -> Result<Self, KernelError> {
        compact.to_dense(self)
    }
}

/// The layer at `path` of the plan of `sparse` and its mask, or `None`
/// when the plan does not manage it.
pub(crate) fn plan_mask(sparse: &Sparsifier, path: &str) -> Option<(SparseLayer, Mask)> {
    let i = sparse.layers().iter().position(|l| l.path == path)?;
    Some((sparse.layers()[i].clone(), sparse.masks()[i].clone()))
}

/// The sparse-execution twin of `linear` (the weight at `path`) under its
/// mask in `sparse` (every weight when the plan does not manage it).
pub(crate) fn compact_linear(linear: &Linear, path: &str, sparse: &Sparsifier) -> Result<CompactLinear, KernelError> {
    let weight = linear.weight.val();
    let [d_in, d_out] = weight.dims();
    let (layer, mask) =
        plan_mask(sparse, path).unwrap_or_else(|| (SparseLayer::linear(path, d_in, d_out), Mask::ones(d_in * d_out)));
    let Some(bias) = &linear.bias else {
        return Err(KernelError::shape(
            path,
            "the layer has no bias; sparse execution trains linear layers with a bias (train it with `--execution dense`)",
        ));
    };
    CompactLinear::new(layer, mask, &host(weight.clone())?, host(bias.val())?, &weight.device())
}

/// Writes the weight and bias of `compact` into `linear` (same shape).
pub(crate) fn write_linear(compact: &CompactLinear, linear: &mut Linear) -> Result<(), KernelError> {
    let shape = compact.layer().shape.clone();
    let weight = compact.dense_weight()?;
    let bias = compact.bias_values()?;
    // as a checkpoint loads: the parameter's id, device and gradient
    // tracking kept, a fresh model's lazy initial values never drawn
    let device: Device = linear.weight.lazy_device();
    let id = linear.weight.id;
    linear.weight = linear
        .weight
        .clone()
        .transform_for_load(tensor(weight, shape, &device), id);
    if let (Some(b), Some(bias)) = (linear.bias.take(), bias) {
        let (n, id) = (bias.len(), b.id);
        linear.bias = Some(b.transform_for_load(tensor(bias, vec![n], &device), id));
    }
    Ok(())
}

/// The sparse-execution twin of `conv` (the weight at `path`) under its
/// mask in `sparse` (every weight when the plan does not manage it).
pub(crate) fn compact_conv(conv: &Conv2d, path: &str, sparse: &Sparsifier) -> Result<CompactConv2d, KernelError> {
    let shape = conv.weight.dims();
    let (layer, mask) = plan_mask(sparse, path)
        .unwrap_or_else(|| (SparseLayer::conv(path, &shape), Mask::ones(shape.iter().product())));
    CompactConv2d::new(conv, layer, mask)
}

/// Why a model in sparse execution does not capture its layers' inputs.
pub(crate) fn no_capture() -> CaptureStop {
    CaptureStop::Error(SparseError::InvalidConfig(
        "a model in sparse execution cannot report its layers' dense inputs for one-shot pruning; prune with `--execution dense`".into(),
    ))
}

fn tensor<const D: usize>(values: Vec<f32>, shape: Vec<usize>, device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}
