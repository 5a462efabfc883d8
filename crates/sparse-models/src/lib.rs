//! # sparse-models
//!
//! Reference models for sparseburn, written for Burn 0.22:
//! * [`ResNet`] 18/34/50 (torchvision v1.5: stride on the 3×3 conv), ImageNet or CIFAR stem;
//! * [`MobileNetV1`] with width multiplier α, optional small-image stem;
//! * [`Mlp`] (LeNet-300-100) and [`SmallCnn`] baselines for fast CPU work.
//!
//! Every model implements [`Classifier`]: a forward pass from images to logits,
//! the RigL reference code's default sparsity policy, and the output size of each
//! conv for FLOP accounting.

pub mod capture;
pub mod cnn;
pub mod error;
pub mod flops;
pub mod import;
pub mod mlp;
pub mod mobilenet;
pub mod resnet;

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use sparse_core::LayerFilter;

pub use cnn::{SmallCnn, SmallCnnConfig};
pub use error::ModelError;
pub use mlp::{Mlp, MlpConfig};
pub use mobilenet::{MobileNetV1, MobileNetV1Config};
pub use resnet::{ResNet, ResNetConfig, ResNetDepth, Stem};

/// An image classifier usable by sparseburn's trainer.
pub trait Classifier: Module {
    /// Logits `[B, classes]` for images `[B, C, H, W]`.
    fn forward(&self, images: Tensor<4>) -> Tensor<2>;

    /// The weights that are sparse by default (RigL reference policy).
    fn sparsity_filter(&self) -> LayerFilter;

    /// Output positions (`H_out·W_out`) of every conv for one input `[C, H, W]`,
    /// keyed by weight path (linear layers are omitted: 1 position).
    fn output_positions(&self, input: [usize; 3]) -> BTreeMap<String, usize>;
}

#[derive(Default)]
struct ParamCounter {
    leaf: Vec<String>,
    count: usize,
}

impl ModuleVisitor for ParamCounter {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.leaf.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.leaf.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let leaf = self.leaf.last().map(String::as_str).unwrap_or("");
        if leaf != "running_mean" && leaf != "running_var" {
            self.count += param.lazy_shape().num_elements();
        }
    }
}

/// Trainable parameters (BatchNorm running statistics excluded), as papers count them.
pub fn count_params<M: Module>(model: &M) -> usize {
    let mut counter = ParamCounter::default();
    model.visit(&mut counter);
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
