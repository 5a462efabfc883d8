//! Sparse training inside burn-train's `SupervisedTraining` loop.
//!
//! ```text
//! cargo run --release --example burn_train
//! ```
//!
//! The model is a plain burn-train model (its own `TrainStep::step` and
//! `InferenceStep::step`), the optimizer any Burn optimizer; `sparsify` makes the
//! setup sparse. Sparsity, nonzeros and ITOP are burn-train metrics, and the
//! sparse state is in burn-train's checkpoints: `.checkpoint(epoch)` resumes exactly.

use burn::data::dataloader::DataLoaderBuilder;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::AdamWConfig;
use burn::train::metric::{AccuracyMetric, LossMetric};
use burn::train::{ClassificationOutput, InferenceStep, Learner, SupervisedTraining, TrainOutput, TrainStep};
use sparseburn::burn_train::sparsify;
use sparseburn::data::{ImageBatch, ImageBatcher, synthetic::synthetic};
use sparseburn::prelude::*;
use sparseburn::sparse_models::{Classifier, Mlp, MlpConfig};

/// The user's burn-train model: nothing sparse in it.
#[derive(Module, Debug)]
struct Net {
    mlp: Mlp,
}

impl Net {
    fn classify(&self, batch: ImageBatch) -> ClassificationOutput {
        let logits = self.mlp.forward(batch.images);
        let loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits.clone(), batch.targets.clone());
        ClassificationOutput::new(loss, logits, batch.targets)
    }
}

impl TrainStep for Net {
    type Input = ImageBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: ImageBatch) -> TrainOutput<ClassificationOutput> {
        let output = self.classify(batch);
        TrainOutput::new(self, output.loss.backward(), output)
    }
}

impl InferenceStep for Net {
    type Input = ImageBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: ImageBatch) -> ClassificationOutput {
        self.classify(batch)
    }
}

fn main() -> Result<(), SparseError> {
    let backend: BackendKind = std::env::args().nth(1).as_deref().unwrap_or("flex").parse()?;
    let device = backend.device()?;
    let (train, valid) = (
        synthetic(4_000, [1, 28, 28], 10, 1, "train"),
        synthetic(1_000, [1, 28, 28], 10, 1, "test"),
    );
    let batcher = ImageBatcher::new(&train);
    let (epochs, batch_size) = (3, 64);
    let loader_train = DataLoaderBuilder::new(batcher.clone())
        .batch_size(batch_size)
        .shuffle(1)
        .build(train);
    let loader_valid = DataLoaderBuilder::new(batcher).batch_size(256).build(valid);
    let artifacts = std::env::temp_dir().join("sparseburn-burn-train");
    let training = SupervisedTraining::new(&artifacts, loader_train, loader_valid)
        .metrics((AccuracyMetric::new(), LossMetric::new()))
        .with_default_checkpointers()
        .with_application_logger(None)
        .num_epochs(epochs)
        .summary();

    let net = Net {
        mlp: MlpConfig::new().init(&device.autodiff()),
    };
    let rigl = RigL::new(
        &RigLConfig::new().with_delta_t(25),
        (epochs * 4_000 / batch_size) as u64,
    )?;
    let (training, model) = sparsify(training, net, SparsityConfig::new().with_sparsity(0.9), rigl)?;
    let result = training.launch(Learner::new(model, AdamWConfig::new().init(), 1e-3));
    if let Some(error) = result.model.take_error() {
        return Err(error); // a failed sparse step stopped the run
    }
    let s = result.model.sparsifier().lock();
    println!(
        "done: sparsity {:.1}%, ITOP {:.2}, {} steps, interrupted: {:?}",
        100.0 * s.report().sparsity(),
        s.itop_rate(),
        s.step_count(),
        result.interrupted
    );
    Ok(())
}
