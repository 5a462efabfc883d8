//! Make your own Burn model sparse with RigL: five added lines, marked `// +sparse`.
//!
//! ```text
//! cargo run --release --example custom_model                 # flex (CPU)
//! cargo run --release --example custom_model -- wgpu         # with --features wgpu
//! ```
//!
//! The model and the training loop are plain Burn; sparseburn replaces the
//! optimizer step by `sparse.step(..)`, which masks gradients, steps a
//! mask-aware SGD, re-applies the masks and runs RigL's drop/grow updates.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor};
use sparseburn::data::{BatchOrder, ImageBatcher, ImageSet, synthetic::synthetic};
use sparseburn::prelude::*;

/// A user's model: nothing sparse about it.
#[derive(Module, Debug)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
    relu: Relu,
}

impl Mlp {
    fn new(device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(784, 300).init(device),
            fc2: LinearConfig::new(300, 100).init(device),
            fc3: LinearConfig::new(100, 10).init(device),
            relu: Relu::new(),
        }
    }

    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = images.flatten::<2>(1, 3);
        let x = self.relu.forward(self.fc1.forward(x));
        let x = self.relu.forward(self.fc2.forward(x));
        self.fc3.forward(x)
    }
}

fn accuracy(model: &Mlp, set: &ImageSet, batcher: &ImageBatcher, device: &Device) -> f64 {
    let indices: Vec<usize> = (0..set.len()).collect();
    let batch = batcher.batch_indices(set, &indices, device, None);
    let predicted = model.forward(batch.images).argmax(1).squeeze_dim::<1>(1);
    let correct: Tensor<1, Int> = predicted.equal(batch.targets).int();
    correct.sum().into_scalar::<i64>() as f64 / set.len() as f64
}

fn main() -> Result<(), SparseError> {
    let backend: BackendKind = std::env::args().nth(1).as_deref().unwrap_or("flex").parse()?;
    let device = backend.device()?.autodiff();
    let train = synthetic(4_000, [1, 28, 28], 10, 1, "train");
    let test = synthetic(1_000, [1, 28, 28], 10, 1, "test");
    let batcher = ImageBatcher::new(&train);
    let order = BatchOrder {
        len: train.len(),
        batch_size: 64,
        seed: 1,
    };
    let epochs = 3;
    let total_steps = (epochs * order.batches_per_epoch()) as u64;
    let loss_fn = CrossEntropyLossConfig::new().init(&device);

    let model = Mlp::new(&device);
    let rigl = RigL::new(&RigLConfig::new().with_delta_t(25), total_steps)?; // +sparse
    let config = SparsityConfig::new().with_sparsity(0.9); // +sparse: 90% sparse, ERK
    let mut sparse = Sparsifier::new(&model, config, rigl, &OptimizerConfig::sgd(0.9, 5e-4))?; // +sparse
    let mut model = sparse.init(model)?; // +sparse

    for epoch in 0..epochs as u64 {
        for indices in order.batches(epoch) {
            let batch = batcher.batch_indices(&train, &indices, &device, None);
            let loss = loss_fn.forward(model.forward(batch.images), batch.targets);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = sparse.step(model, grads, 0.05)?; // +sparse: replaces `optim.step(lr, model, grads)`
        }
        let report = sparse.report();
        println!(
            "epoch {epoch}: test accuracy {:.1}%  sparsity {:.1}%  ITOP {:.2}",
            100.0 * accuracy(&model.valid(), &test, &batcher, &device.clone().inner()),
            100.0 * report.sparsity(),
            sparse.itop_rate()
        );
    }
    for layer in sparse.report().layers {
        println!(
            "  {:<12} {:>7} of {:>7} weights kept ({:.1}%)",
            layer.path,
            layer.nonzeros,
            layer.numel,
            100.0 * layer.density()
        );
    }
    Ok(())
}
