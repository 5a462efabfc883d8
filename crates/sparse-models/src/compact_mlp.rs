//! [`CompactMlp`]: the [`Mlp`] in sparse execution, for training (issue 10):
//! every linear layer a [`CompactLinear`] holding its active weights only,
//! so a step's time and memory follow the nonzeros. The weights, the masks
//! and the forward pass are the `Mlp`'s; [`CompactMlp::to_dense`] writes the
//! weights back into an `Mlp` (checkpoints, the final model, export).

use std::collections::BTreeMap;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use sparse_core::capture::{Capture, CaptureInputs, CaptureStop};
use sparse_core::{Distribution, LayerFilter, Pattern, Plan, Rng, SparseLayer, Sparsifier, SparsityConfig};
use sparse_kernels::train::{CompactLinear, CompactModel, random_mask, try_map_layers};
use sparse_kernels::{Activation, KernelError};

use crate::compact_twin::{compact_linear, no_capture, write_linear};
use crate::{Classifier, Mlp};

/// An MLP whose linear layers keep only their active weights.
#[derive(Module, Debug)]
pub struct CompactMlp {
    /// The layers, input to output (`layers.{i}.values`, `layers.{i}.bias`).
    pub layers: Vec<CompactLinear>,
}

impl CompactMlp {
    /// The sparse-execution twin of `mlp` under the masks of `sparse` (a
    /// layer the plan does not manage keeps every weight), on `mlp`'s device.
    pub fn from_dense(mlp: &Mlp, sparse: &Sparsifier) -> Result<Self, KernelError> {
        let layers = mlp
            .layers
            .iter()
            .enumerate()
            .map(|(i, linear)| compact_linear(linear, &format!("layers.{i}.weight"), sparse))
            .collect::<Result<_, _>>()?;
        Ok(Self { layers })
    }

    /// An MLP of widths `widths` (`[input, hidden.., classes]`) built without
    /// its dense twin, for networks whose dense weights do not fit in memory:
    /// the plan of `config` (its distribution and sparsity) over the layers
    /// `layers.{i}.weight` gives each layer's count; the masks are the random
    /// initial masks of the drop/grow methods ([`random_mask`], the same
    /// positions `sparse-methods`' `random_masks` picks for these layers and
    /// seed); each active weight and each bias is drawn from the distribution
    /// of Burn's `Linear` default initialisation, `U(−1/√d_in, 1/√d_in)`, by the
    /// counter-based generator (seeded by `config.seed` and the path).
    ///
    /// Every layer is sparsified, unstructured, with per-layer counts: a
    /// layer filter, another pattern or the global distribution is refused.
    pub fn random(widths: &[usize], config: &SparsityConfig, device: &Device) -> Result<Self, KernelError> {
        if widths.len() < 2 || widths.contains(&0) {
            return Err(KernelError::InvalidConfig(format!(
                "MLP widths {widths:?}: give at least an input and an output width, none of them 0"
            )));
        }
        let unsupported = if config.filter != LayerFilter::new() {
            Some("a layer filter")
        } else if config.pattern != Pattern::Unstructured {
            Some("a structured pattern")
        } else if config.distribution == Distribution::Global {
            Some("the global distribution")
        } else {
            None
        };
        if let Some(what) = unsupported {
            return Err(KernelError::InvalidConfig(format!(
                "a compact MLP initialised without its dense twin sparsifies every layer, unstructured, with per-layer counts; {what} is not supported here (use ERK, ER or uniform, or start from a dense model with `CompactMlp::from_dense`)"
            )));
        }
        let last = widths.len() - 2;
        let layers: Vec<SparseLayer> = widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let mut layer = SparseLayer::linear(&format!("layers.{i}.weight"), w[0], w[1]);
                layer.roles.first = i == 0;
                layer.roles.last = i == last;
                layer
            })
            .collect();
        let plan = Plan::new(layers, config.clone()).map_err(|e| KernelError::InvalidConfig(e.to_string()))?;
        let counts = plan
            .counts(config.sparsity)
            .map_err(|e| KernelError::InvalidConfig(e.to_string()))?;
        let layers = plan
            .layers()
            .iter()
            .zip(counts)
            .map(|(layer, count)| {
                let mask = random_mask(layer, count, config.seed)?;
                let bound = 1.0 / (layer.shape[0] as f64).sqrt();
                let mut rng = Rng::for_layer(config.seed, &layer.path, 0, "values");
                let mut uniform = || ((2.0 * rng.next_f64() - 1.0) * bound) as f32;
                let values: Vec<f32> = (0..count).map(|_| uniform()).collect();
                let bias: Vec<f32> = (0..layer.shape[1]).map(|_| uniform()).collect();
                CompactLinear::from_values(layer.clone(), mask, values, bias, device)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { layers })
    }

    /// `into` (an `Mlp` of the same widths, e.g. fresh from its config) with
    /// this model's weights and biases.
    pub fn to_dense(&self, mut into: Mlp) -> Result<Mlp, KernelError> {
        if into.layers.len() != self.layers.len() {
            return Err(KernelError::InvalidConfig(format!(
                "the dense MLP has {} layers, the compact one {}",
                into.layers.len(),
                self.layers.len()
            )));
        }
        for (linear, compact) in into.layers.iter_mut().zip(&self.layers) {
            write_linear(compact, linear)?;
        }
        Ok(into)
    }
}

impl CompactModel for CompactMlp {
    fn compact_layers(&self) -> Vec<&CompactLinear> {
        self.layers.iter().collect()
    }

    fn try_map_compact(
        mut self,
        f: &mut dyn FnMut(usize, CompactLinear) -> Result<CompactLinear, KernelError>,
    ) -> Result<Self, KernelError> {
        self.layers = try_map_layers(std::mem::take(&mut self.layers), f)?;
        Ok(self)
    }
}

impl Classifier for CompactMlp {
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = images.flatten::<2>(1, 3);
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x, if i < last { Activation::Relu } else { Activation::None });
        }
        x
    }

    fn sparsity_filter(&self) -> LayerFilter {
        LayerFilter::new()
    }

    fn output_positions(&self, _input: [usize; 3]) -> BTreeMap<String, usize> {
        BTreeMap::new()
    }
}

impl CaptureInputs for CompactMlp {
    type Batch = Tensor<4>;
    type Output = Tensor<2>;

    fn forward_capture(&self, _images: Tensor<4>, _cap: &mut Capture<'_>) -> Result<Tensor<2>, CaptureStop> {
        Err(no_capture())
    }
}
