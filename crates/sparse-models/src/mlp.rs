//! A multi-layer perceptron; the default is LeNet-300-100 (LeCun et al. 1998),
//! the MLP of the pruning literature (784-300-100-10).

use std::collections::BTreeMap;

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::tensor::{Device, Tensor};
use sparse_core::LayerFilter;

use crate::Classifier;

/// MLP shape.
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// Input features (`C·H·W` of the images).
    #[config(default = 784)]
    pub input: usize,
    /// Hidden layer widths.
    #[config(default = "vec![300, 100]")]
    pub hidden: Vec<usize>,
    /// Classes.
    #[config(default = 10)]
    pub classes: usize,
}

/// Linear layers with ReLU between them; images are flattened.
#[derive(Module, Debug)]
pub struct Mlp {
    /// The layers, input to output.
    pub layers: Vec<Linear>,
    relu: Relu,
}

impl MlpConfig {
    /// Builds the model on `device`.
    pub fn init(&self, device: &Device) -> Mlp {
        let widths: Vec<usize> = std::iter::once(self.input)
            .chain(self.hidden.iter().copied())
            .chain(std::iter::once(self.classes))
            .collect();
        Mlp {
            layers: widths
                .windows(2)
                .map(|w| LinearConfig::new(w[0], w[1]).init(device))
                .collect(),
            relu: Relu::new(),
        }
    }
}

impl Classifier for Mlp {
    fn to_sparse_model(
        &self,
        masks: &crate::to_sparse::SparseMasks,
        options: &crate::to_sparse::SparseOptions,
    ) -> Result<crate::SparseModel, sparse_kernels::KernelError> {
        Ok(crate::SparseModel::Mlp(crate::to_sparse::ToSparse::to_sparse(
            self, masks, options,
        )?))
    }

    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = images.flatten::<2>(1, 3);
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = self.relu.forward(x);
            }
        }
        x
    }

    /// Every layer sparse (as in the LTH and DST MLP experiments).
    fn sparsity_filter(&self) -> LayerFilter {
        LayerFilter::new()
    }

    fn output_positions(&self, _input: [usize; 3]) -> BTreeMap<String, usize> {
        BTreeMap::new()
    }
}
