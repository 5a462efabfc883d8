//! Capturing the inputs of a model's linear and convolution layers during a forward pass.
//!
//! Burn has no forward hooks, so a model that wants its layer inputs observed (one-shot
//! pruning with Wanda or SparseGPT needs them) implements [`CaptureInputs`]: a second
//! forward pass that sends every linear/conv layer call through a [`Capture`]:
//!
//! ```ignore
//! impl CaptureInputs for Net {
//!     type Batch = Tensor<4>;
//!     type Output = Tensor<2>;
//!     fn forward_capture(&self, x: Tensor<4>, cap: &mut Capture<'_>) -> Result<Tensor<2>, CaptureStop> {
//!         let x = relu(cap.conv2d("conv.weight", &self.conv, x)?);
//!         cap.linear("fc.weight", &self.fc, x.flatten(1, 3))
//!     }
//! }
//! ```
//!
//! The path is the layer's **weight path** as [`crate::discover`] spells it. [`Capture`]
//! asks its [`InputSink`] whether it wants that layer; if so it hands over the input
//! as **fan-in features** ([`LayerFeatures`]): one row per token (a sample for a
//! Linear, a sample × output position for a conv) and one column per fan-in weight,
//! in the channel-last order of [`crate::SparseLayer::flat`] (`j = kernel_position ·
//! c_in + channel`, the input index for a Linear). So `Σ_j W[o, j] · X[t, j]` is the
//! layer's output `o` at token `t` (bias excluded), and per-feature norms and
//! `XᵀX` are over the same index `j` as the layer's masks. When the sink has all it
//! needs, [`Capture`] returns [`CaptureStop::Done`], which `?` carries out of the
//! forward pass so later layers are not computed.

use burn::module::{Param, ParamId};
use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::tensor::{Tensor, TensorData};

use crate::error::SparseError;

/// Why a capturing forward pass ended early.
#[derive(Debug)]
pub enum CaptureStop {
    /// The sink has every input it asked for; the rest of the forward pass is skipped.
    Done,
    /// The sink failed (e.g. reading a tensor back from its device).
    Error(SparseError),
}

impl From<SparseError> for CaptureStop {
    fn from(e: SparseError) -> Self {
        Self::Error(e)
    }
}

/// The input of one layer as fan-in features.
#[derive(Clone, Debug)]
pub struct LayerFeatures {
    /// `[groups, tokens, fan_in]`: group `g` holds the inputs of the neurons
    /// `g·(neurons/groups) .. (g+1)·(neurons/groups)` (1 group for Linear and ordinary convs).
    pub x: Tensor<3>,
}

impl LayerFeatures {
    /// Groups (1 unless a grouped or depthwise conv).
    pub fn groups(&self) -> usize {
        self.x.dims()[0]
    }

    /// Tokens (rows).
    pub fn tokens(&self) -> usize {
        self.x.dims()[1]
    }

    /// Fan-in features per group (columns).
    pub fn fan_in(&self) -> usize {
        self.x.dims()[2]
    }
}

/// Receives layer inputs from a capturing forward pass.
pub trait InputSink {
    /// Called for every captured layer, in forward order, before the layer runs;
    /// returns whether the sink wants this layer's features.
    fn wants(&mut self, path: &str) -> bool;

    /// The features of a layer for which [`InputSink::wants`] returned `true`.
    fn record(&mut self, path: &str, features: LayerFeatures) -> Result<(), SparseError>;

    /// Whether the sink has everything it needs from this forward pass, so the
    /// pass may stop (checked after every captured layer).
    fn is_done(&self) -> bool {
        false
    }
}

/// A model whose linear/conv layer inputs can be captured.
pub trait CaptureInputs: burn::module::Module {
    /// One calibration batch (images `[B, C, H, W]` for image classifiers).
    type Batch: Clone;
    /// What the forward pass returns (logits for classifiers).
    type Output;

    /// Runs the model's forward pass on `batch`, sending every sparsifiable layer
    /// call through `capture` ([`Capture::linear`], [`Capture::conv2d`]) with the
    /// layer's weight path, and returns the same output as the model's own forward.
    fn forward_capture(&self, batch: Self::Batch, capture: &mut Capture<'_>) -> Result<Self::Output, CaptureStop>;
}

/// Runs layers on behalf of a capturing forward pass and reports their inputs.
pub struct Capture<'a> {
    sink: &'a mut dyn InputSink,
}

impl<'a> Capture<'a> {
    /// A capture that reports to `sink`.
    pub fn new(sink: &'a mut dyn InputSink) -> Self {
        Self { sink }
    }

    /// Reports the input of the Linear layer whose weight is at `path`, then runs it.
    /// Every leading dimension of `input` is a token.
    pub fn linear<const D: usize>(
        &mut self,
        path: &str,
        layer: &Linear,
        input: Tensor<D>,
    ) -> Result<Tensor<D>, CaptureStop> {
        self.report(path, || linear_features(&input))?;
        Ok(layer.forward(input))
    }

    /// Reports the input of the Conv2d layer whose weight is at `path` (unfolded
    /// with the layer's own kernel, stride, padding, dilation and groups), then runs it.
    pub fn conv2d(&mut self, path: &str, layer: &Conv2d, input: Tensor<4>) -> Result<Tensor<4>, CaptureStop> {
        self.report(path, || conv2d_features(layer, input.clone()))?;
        Ok(layer.forward(input))
    }

    fn report(&mut self, path: &str, features: impl FnOnce() -> LayerFeatures) -> Result<(), CaptureStop> {
        if self.sink.wants(path) {
            self.sink.record(path, features())?;
        }
        if self.sink.is_done() {
            return Err(CaptureStop::Done);
        }
        Ok(())
    }
}

/// Fan-in features of a Linear input `[.., d_input]`: `[1, tokens, d_input]`.
pub fn linear_features<const D: usize>(input: &Tensor<D>) -> LayerFeatures {
    let dims = input.dims();
    let d_input = dims[D - 1];
    let tokens = dims[..D - 1].iter().product::<usize>();
    LayerFeatures {
        x: input.clone().detach().reshape([1, tokens, d_input]),
    }
}

/// Fan-in features of a Conv2d input `[B, C, H, W]`: `[groups, B·H_out·W_out, k·C/groups]`
/// with column `j = kernel_position · (C/groups) + channel` ([`crate::SparseLayer::flat`]).
///
/// The patches come from a convolution with one-hot kernels that copies each input
/// channel at each kernel position to its own output channel, run with a copy of the
/// layer's own geometry, so padding (explicit, valid, same) follows the layer exactly.
pub fn conv2d_features(layer: &Conv2d, input: Tensor<4>) -> LayerFeatures {
    let [batch, channels, _, _] = input.dims();
    let [kh, kw] = layer.kernel_size;
    let k = kh * kw;
    let device = input.device();
    let mut onehot = vec![0.0f32; channels * k * k];
    for c in 0..channels {
        for p in 0..k {
            onehot[(c * k + p) * k + p] = 1.0;
        }
    }
    let extractor = Conv2d {
        weight: Param::initialized(
            ParamId::new(),
            Tensor::from_data(TensorData::new(onehot, [channels * k, 1, kh, kw]), &device),
        ),
        bias: None,
        stride: layer.stride,
        kernel_size: layer.kernel_size,
        dilation: layer.dilation,
        groups: channels,
        padding: layer.padding.clone(),
    };
    // [B, C·k, Ho, Wo], output channel c·k + p
    let patches = extractor.forward(input.detach());
    let [_, _, ho, wo] = patches.dims();
    let groups = layer.groups.max(1);
    let per_group = channels / groups;
    let x = patches
        .reshape([batch, groups, per_group, k, ho * wo])
        .permute([1, 0, 4, 3, 2]) // [G, B, L, k, C/G]
        .reshape([groups, batch * ho * wo, k * per_group]);
    LayerFeatures { x }
}
