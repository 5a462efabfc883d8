//! # sparse-models
//!
//! Reference models for sparseburn, written for Burn 0.22:
//! * [`ResNet`] 18/34/50 (torchvision v1.5: stride on the 3×3 conv), ImageNet or CIFAR stem;
//! * [`MobileNetV1`] with width multiplier α, optional small-image stem;
//! * [`Mlp`] (LeNet-300-100) and [`SmallCnn`] baselines for fast CPU work;
//! * [`CharTransformer`], a decoder-only character/byte-level language model.
//!
//! Every image model implements [`Classifier`]: a forward pass from images to logits,
//! the RigL reference code's default sparsity policy, and the output size of each
//! conv for FLOP accounting.

pub mod capture;
pub mod char_transformer;
pub mod cnn;
pub mod compact_cnn;
pub mod compact_mlp;
pub mod compact_mobilenet;
pub mod compact_resnet;
pub mod compact_rule;
pub mod compact_twin;
pub mod dense_twin;
pub mod error;
pub mod exported;
pub mod exported_lm;
pub mod flops;
pub mod import;
pub mod mlp;
pub mod mobilenet;
pub mod packing;
pub mod resnet;
pub mod sparse_char_transformer;
pub mod sparse_cnn;
pub mod sparse_mlp;
pub mod sparse_mobilenet;
pub mod sparse_resnet;
pub mod sparse_store;
pub mod to_sparse;

use std::collections::BTreeMap;

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use sparse_core::LayerFilter;
use sparse_core::capture::CaptureInputs;
use sparse_core::walk::{self, ParamPath, PathVisitor};

pub use char_transformer::{CharTransformer, CharTransformerConfig, NextToken};
pub use cnn::{SmallCnn, SmallCnnConfig};
pub use compact_cnn::CompactCnn;
pub use compact_mlp::CompactMlp;
pub use compact_mobilenet::CompactMobileNet;
pub use compact_resnet::CompactResNet;
pub use compact_rule::{compact_rule_step, rigl_rule, set_rule};
pub use compact_twin::CompactTwin;
pub use error::ModelError;
pub use exported::{ExportError, ExportInfo, ExportedModel, SparseModel};
pub use exported_lm::{ExportedLanguageModel, TextExportInfo};
pub use mlp::{Mlp, MlpConfig};
pub use mobilenet::{MobileNetV1, MobileNetV1Config};
pub use resnet::{ResNet, ResNetConfig, ResNetDepth, Stem};
pub use sparse_char_transformer::SparseCharTransformer;
pub use sparse_kernels::FormatKind;

/// An image classifier usable by sparseburn's trainer; its conv/linear inputs can be
/// captured ([`CaptureInputs`], for one-shot pruning).
pub trait Classifier: Module + CaptureInputs<Batch = Tensor<4>, Output = Tensor<2>> {
    /// Logits `[B, classes]` for images `[B, C, H, W]`.
    fn forward(&self, images: Tensor<4>) -> Tensor<2>;

    /// The weights that are sparse by default (RigL reference policy).
    fn sparsity_filter(&self) -> LayerFilter;

    /// Output positions (`H_out·W_out`) of every conv for one input `[C, H, W]`,
    /// keyed by weight path (linear layers are omitted: 1 position).
    fn output_positions(&self, input: [usize; 3]) -> BTreeMap<String, usize>;

    /// The inference-only sparse twin under `masks` (by weight path), for
    /// `sparseburn export`. Models without one return an error saying so.
    fn to_sparse_model(
        &self,
        masks: &to_sparse::SparseMasks,
        options: &to_sparse::SparseOptions,
    ) -> Result<SparseModel, sparse_kernels::KernelError> {
        let _ = (masks, options);
        Err(sparse_kernels::KernelError::InvalidConfig(
            "this model has no sparse twin to export; implement `Classifier::to_sparse_model` with `ToSparse`".into(),
        ))
    }
}

#[derive(Default)]
struct ParamCounter {
    count: usize,
}

impl PathVisitor for ParamCounter {
    fn visit<const D: usize>(&mut self, path: &ParamPath, param: &Param<Tensor<D>>) {
        if !matches!(path.leaf(), "running_mean" | "running_var") {
            self.count += param.lazy_shape().num_elements();
        }
    }
}

/// Trainable parameters (BatchNorm running statistics excluded), as papers count them.
pub fn count_params<M: Module>(model: &M) -> usize {
    let mut counter = ParamCounter::default();
    walk::visit(model, &mut counter);
    counter.count
}

/// Dense and sparse forward multiply–adds per sample of every conv and linear
/// layer of `model` for an input `[C, H, W]`; `active` gives the nonzeros of the
/// sparse layers by path (e.g. `Sparsifier::active_counts`), others count dense.
pub fn model_macs<M: Classifier>(
    model: &M,
    input: [usize; 3],
    active: &BTreeMap<String, usize>,
) -> sparse_core::Result<Vec<sparse_core::stats::LayerMacs>> {
    let layers = sparse_core::discovery::all_weights(model);
    sparse_core::stats::forward_macs(&layers, active, &model.output_positions(input))
}
