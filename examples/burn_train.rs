//! Sparse training inside burn-train's `SupervisedTraining` loop.
//!
//! ```text
//! cargo run --release --example burn_train
//! ```
//!
//! The sparse state lives in the model as a `#[module(skip)]` [`SharedSparsifier`];
//! `TrainStep::optimize` (and `optimize_multi`, used by the multi-device strategy)
//! hand the step to it instead of Burn's optimizer. burn-train does not checkpoint
//! the sparse state: save it yourself with `Sparsifier::save` (see `sparseburn train`
//! for a loop that resumes exactly).

use burn::data::dataloader::DataLoaderBuilder;
use burn::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsParams, ModuleOptimizer, MultiGradientsParams, SgdConfig};
use burn::train::metric::{AccuracyMetric, LossMetric};
use burn::train::{ClassificationOutput, InferenceStep, Learner, SupervisedTraining, TrainOutput, TrainStep};
use sparseburn::data::{ImageBatch, ImageBatcher, synthetic::synthetic};
use sparseburn::prelude::*;
use sparseburn::sparse_models::{Classifier, Mlp, MlpConfig};

/// The user's model plus the shared sparse state.
#[derive(Module, Debug)]
struct SparseMlp {
    net: Mlp,
    #[module(skip)]
    sparse: SharedSparsifier,
}

impl SparseMlp {
    fn classify(&self, batch: ImageBatch) -> ClassificationOutput {
        let logits = self.net.forward(batch.images);
        let loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits.clone(), batch.targets.clone());
        ClassificationOutput::new(loss, logits, batch.targets)
    }
}

impl TrainStep for SparseMlp {
    type Input = ImageBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: ImageBatch) -> TrainOutput<ClassificationOutput> {
        let output = self.classify(batch);
        TrainOutput::new(self, output.loss.backward(), output)
    }

    fn optimize(self, _: &mut ModuleOptimizer, lr: ModuleLearningRate, grads: GradientsParams) -> Self {
        let sparse = self.sparse.clone();
        sparse.optimize(self, grads, lr)
    }

    fn optimize_multi(self, _: &mut ModuleOptimizer, lr: ModuleLearningRate, grads: MultiGradientsParams) -> Self {
        let sparse = self.sparse.clone();
        sparse.optimize_multi(self, grads, lr)
    }
}

impl InferenceStep for SparseMlp {
    type Input = ImageBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: ImageBatch) -> ClassificationOutput {
        self.classify(batch)
    }
}

fn main() -> Result<(), SparseError> {
    let backend: BackendKind = std::env::args().nth(1).as_deref().unwrap_or("flex").parse()?;
    let device = backend.device()?;
    let train = synthetic(4_000, [1, 28, 28], 10, 1, "train");
    let valid = synthetic(1_000, [1, 28, 28], 10, 1, "test");
    let batcher = ImageBatcher::new(&train);
    let (epochs, batch_size) = (3, 64);
    let total_steps = (epochs * train.len() / batch_size) as u64;

    let net = MlpConfig::new().init(&device.clone().autodiff());
    let rigl = RigL::new(&RigLConfig::new().with_delta_t(25), total_steps)?;
    let sparse = Sparsifier::new(
        &net,
        SparsityConfig::new().with_sparsity(0.9),
        rigl,
        &OptimizerConfig::sgd(0.9, 5e-4),
    )?;
    let sparse = SharedSparsifier::new(sparse);
    let net = sparse.lock().init(net)?;
    let model = SparseMlp {
        net,
        sparse: sparse.clone(),
    };

    let loader_train = DataLoaderBuilder::new(batcher.clone())
        .batch_size(batch_size)
        .shuffle(1)
        .build(train);
    let loader_valid = DataLoaderBuilder::new(batcher).batch_size(256).build(valid);
    let artifacts = std::env::temp_dir().join("sparseburn-burn-train");
    let result = SupervisedTraining::new(&artifacts, loader_train, loader_valid)
        .metrics((AccuracyMetric::new(), LossMetric::new()))
        .with_application_logger(None)
        .num_epochs(epochs)
        .summary()
        .launch(Learner::new(model, SgdConfig::new().init(), 0.05));

    let s = sparse.lock();
    println!(
        "done: sparsity {:.1}%, ITOP {:.2}, {} steps, interrupted: {:?}",
        100.0 * s.report().sparsity(),
        s.itop_rate(),
        s.step_count(),
        result.interrupted
    );
    s.save(artifacts.join("sparse-state.safetensors"))?;
    Ok(())
}
