//! Train an MLP in sparse execution: its layers hold only their active
//! weights, so a step costs what the nonzeros cost. RigL at 90%, the same
//! decisions as the masked-dense `sparse.step(..)` of `custom_model.rs`.
//!
//! ```text
//! cargo run --release --example sparse_execution              # 784-300-100-10
//! cargo run --release --example sparse_execution -- 4096      # 784-4096-4096-10
//! ```
//!
//! Three calls differ from the masked-dense loop, marked `// +compact`: the
//! model moves into its compact twin after `sparse.init`, each step is
//! prepared (a dense probe on the steps RigL reads the dense gradient) and
//! taken by `compact_step` instead of `sparse.step`.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor};
use sparseburn::data::{BatchOrder, ImageBatcher, ImageSet, synthetic::synthetic};
use sparseburn::prelude::*;
use sparseburn::sparse_kernels::train::{compact_prepare, compact_step};
use sparseburn::sparse_models::{Classifier, CompactMlp, MlpConfig};

fn accuracy(model: &CompactMlp, set: &ImageSet, batcher: &ImageBatcher, device: &Device) -> f64 {
    let indices: Vec<usize> = (0..set.len()).collect();
    let batch = batcher.batch_indices(set, &indices, device, None);
    let predicted = model.forward(batch.images).argmax(1).squeeze_dim::<1>(1);
    let correct: Tensor<1, Int> = predicted.equal(batch.targets).int();
    correct.sum().into_scalar::<i64>() as f64 / set.len() as f64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let width: usize = std::env::args().nth(1).map_or(Ok(0), |w| w.parse())?;
    let hidden = if width == 0 { vec![300, 100] } else { vec![width, width] };
    let device = Device::flex().autodiff();
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

    let model = MlpConfig::new().with_hidden(hidden).init(&device);
    let rigl = RigL::new(&RigLConfig::new().with_delta_t(25), total_steps)?;
    let config = SparsityConfig::new().with_sparsity(0.9);
    let mut sparse = Sparsifier::new(&model, config, rigl, &OptimizerConfig::sgd(0.9, 5e-4))?;
    let model = sparse.init(model)?;
    let mut model = CompactMlp::from_dense(&model, &sparse)?; // +compact: active weights only
    sparse.release_device_masks();

    for epoch in 0..epochs as u64 {
        let started = std::time::Instant::now();
        for indices in order.batches(epoch) {
            let batch = batcher.batch_indices(&train, &indices, &device, None);
            model = compact_prepare(model, &sparse, Some(indices.len()))?; // +compact
            let loss = loss_fn.forward(model.forward(batch.images), batch.targets);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = compact_step(model, &mut sparse, grads, 0.05)?; // +compact: replaces `sparse.step(..)`
        }
        println!(
            "epoch {epoch}: {:.1} s, test accuracy {:.1}%, sparsity {:.1}%, ITOP {:.2}, {} trainable values",
            started.elapsed().as_secs_f64(),
            100.0 * accuracy(&model, &test, &batcher, &device),
            100.0 * sparse.report().sparsity(),
            sparse.itop_rate(),
            burn::module::Module::num_params(&model)
        );
    }
    Ok(())
}
