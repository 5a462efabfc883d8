//! burn-train integration (`sparseburn::burn_train`): a run interrupted after
//! epoch k and resumed from burn-train's own checkpoint ends bit-identical to an
//! uninterrupted one; sparsity is a burn-train metric; early stopping works; a
//! failed sparse step ends the run with an error, not a panic.

use std::path::Path;

use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::AdamConfig;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use burn::train::metric::LossMetric;
use burn::train::metric::store::{Aggregate, Direction, Split};
use burn::train::{
    ClassificationOutput, InferenceStep, Learner, LearningResult, MetricEarlyStoppingStrategy, StoppingCondition,
    SupervisedTraining, TrainOutput, TrainStep,
};
use sparseburn::burn_train::{SparseMetric, SparseModel, SparseQuantity, sparsify, wrap};
use sparseburn::data::{ImageBatch, ImageBatcher, ImageItem, synthetic::synthetic};
use sparseburn::prelude::*;
use sparseburn::sparse_models::{Classifier, Mlp, MlpConfig};

const EPOCHS: usize = 3;
const RESUME_FROM: usize = 2;
const SPARSITY: f64 = 0.75;

#[derive(Module, Debug)]
struct Net {
    mlp: Mlp,
}

impl Net {
    fn new(device: &Device, hidden: usize) -> Self {
        let config = MlpConfig::new()
            .with_input(16)
            .with_hidden(vec![hidden, 16])
            .with_classes(4);
        Self {
            mlp: config.init(device),
        }
    }

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

fn device() -> Device {
    let name = std::env::var("SPARSEBURN_DEVICE").unwrap_or_else(|_| "flex".into());
    sparseburn::sparse_core::device(&name).expect("test device").autodiff()
}

type Loaders = (
    std::sync::Arc<dyn DataLoader<ImageBatch>>,
    std::sync::Arc<dyn DataLoader<ImageBatch>>,
);

/// Unshuffled loaders: burn-train does not checkpoint a loader's shuffling
/// state, so only an unshuffled order is the same after a resume.
fn loaders() -> Loaders {
    let train = synthetic(256, [1, 4, 4], 4, 7, "train");
    let valid = synthetic(64, [1, 4, 4], 4, 7, "test");
    let batcher = ImageBatcher::new(&train);
    let loader_train = DataLoaderBuilder::<ImageItem, ImageBatch>::new(batcher.clone())
        .batch_size(32)
        .build(train);
    let loader_valid = DataLoaderBuilder::new(batcher).batch_size(64).build(valid);
    (loader_train, loader_valid)
}

fn training(dir: &Path, epochs: usize) -> SupervisedTraining<SparseModel<Net>> {
    let (train, valid) = loaders();
    SupervisedTraining::new(dir, train, valid)
        .metrics((LossMetric::new(),))
        .with_default_checkpointers()
        .with_application_logger(None)
        .num_epochs(epochs)
}

/// RigL with a topology update every 2 of the 8 steps per epoch, in every epoch.
fn rigl() -> RigL {
    RigL::new(&RigLConfig::new().with_delta_t(2), 100).expect("RigL config")
}

/// Trains `net` sparse with burn-train, from `resume` if given.
fn run(dir: &Path, net: Net, epochs: usize, resume: Option<usize>) -> LearningResult<SparseModel<Net>> {
    let training = training(dir, epochs);
    let training = match resume {
        Some(epoch) => training.checkpoint(epoch),
        None => training,
    };
    let config = SparsityConfig::new().with_sparsity(SPARSITY);
    let (training, model) = sparsify(training, net, config, rigl()).expect("sparsify");
    let result = training.launch(Learner::new(model, AdamConfig::new().init(), 1e-2));
    assert!(result.error.is_none(), "training failed: {:?}", result.error);
    assert!(result.interrupted.is_none(), "interrupted: {:?}", result.interrupted);
    result
}

/// The model's weights and the sparse state, as bytes.
fn snapshot(model: &SparseModel<Net>) -> (Vec<u8>, Vec<u8>, Vec<Mask>, u64) {
    let weights = model.inner().clone().into_record().into_bytes().expect("record bytes");
    let sparse = model.sparsifier().lock();
    let state = sparse.to_bytes().expect("state bytes");
    (weights.to_vec(), state, sparse.masks().to_vec(), sparse.step_count())
}

/// The last value of a burn-train metric log (`<value>` or `<value>,<count>` per line).
fn last_logged(dir: &Path, epoch: usize, name: &str) -> f64 {
    let path = dir
        .join("train")
        .join(format!("epoch-{epoch}"))
        .join(format!("{name}.log"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let line = text
        .lines()
        .last()
        .unwrap_or_else(|| panic!("{} is empty", path.display()));
    let value = line.split(',').next().unwrap_or(line);
    value
        .parse()
        .unwrap_or_else(|e| panic!("{}: `{line}`: {e}", path.display()))
}

#[test]
fn resume_from_burn_train_checkpoint_is_bit_identical() {
    let device = device();
    // one set of initial weights for both runs
    let initial: ModuleRecord = Net::new(&device, 32).into_record();
    let start = || Net::new(&device, 32).load_record(initial.clone());

    let whole_dir = tempfile::tempdir().expect("tempdir");
    let whole = run(whole_dir.path(), start(), EPOCHS, None);

    let parts_dir = tempfile::tempdir().expect("tempdir");
    let first = run(parts_dir.path(), start(), RESUME_FROM, None);
    // a fresh process would rebuild the model with other random weights: the
    // checkpoint must bring back weights, masks, method state and step counter
    let resumed = run(parts_dir.path(), Net::new(&device, 32), EPOCHS, Some(RESUME_FROM));

    let (w_whole, s_whole, m_whole, step_whole) = snapshot(&whole.model);
    let (w_resumed, s_resumed, m_resumed, step_resumed) = snapshot(&resumed.model);
    let (_, _, m_first, step_first) = snapshot(&first.model);
    assert_eq!(
        step_whole,
        (EPOCHS * 256 / 32) as u64,
        "one sparse step per optimizer step"
    );
    assert_eq!(step_first, (RESUME_FROM * 256 / 32) as u64);
    assert_eq!(step_resumed, step_whole, "step counter after the resume");
    assert_ne!(
        m_first, m_whole,
        "RigL must change the masks after epoch {RESUME_FROM}, or the test shows nothing"
    );
    assert!(m_resumed == m_whole, "masks differ after the resume");
    assert!(w_resumed == w_whole, "weights differ after the resume");
    assert!(
        s_resumed == s_whole,
        "sparse state (ITOP record, method state) differs after the resume"
    );

    // burn-train logged the sparsity metric; an independent count from the masks
    let (active, total) = m_whole
        .iter()
        .fold((0, 0), |(a, t), m| (a + m.count_ones(), t + m.len()));
    let expected = 100.0 * (1.0 - active as f64 / total as f64);
    assert!((expected - 100.0 * SPARSITY).abs() < 1.0, "sparsity {expected}%");
    for dir in [whole_dir.path(), parts_dir.path()] {
        let logged = last_logged(dir, EPOCHS, "Sparsity");
        assert!(
            (logged - expected).abs() < 1e-6,
            "logged sparsity {logged}, masks say {expected}"
        );
        assert_eq!(last_logged(dir, EPOCHS, "Nonzeros"), active as f64);
        let itop = last_logged(dir, EPOCHS, "ITOP");
        assert!(itop > 1.0 - SPARSITY && itop <= 1.0, "ITOP {itop} after drop/grow");
    }
}

#[test]
fn early_stopping_on_a_sparse_metric() {
    let dir = tempfile::tempdir().expect("tempdir");
    let device = device();
    let config = SparsityConfig::new().with_sparsity(SPARSITY);
    let (training, model) = sparsify(training(dir.path(), 5), Net::new(&device, 32), config, rigl()).expect("sparsify");
    // RigL keeps the number of nonzeros: no improvement after epoch 1, so the
    // run stops after epoch 2 of 5
    let nonzeros = SparseMetric::new(SparseQuantity::Nonzeros, model.sparsifier().clone());
    let stop = MetricEarlyStoppingStrategy::new(
        &nonzeros,
        Aggregate::Mean,
        Direction::Lowest,
        Split::Train,
        StoppingCondition::NoImprovementSince { n_epochs: 1 },
    );
    let result = training
        .early_stopping(stop)
        .launch(Learner::new(model, AdamConfig::new().init(), 1e-2));
    assert!(result.error.is_none(), "{:?}", result.error);
    let steps = result.model.sparsifier().lock().step_count();
    assert_eq!(steps, 2 * 256 / 32, "stopped after epoch 2");
    assert!(dir.path().join("train/epoch-2").exists());
    assert!(!dir.path().join("train/epoch-3").exists());
}

#[test]
fn failed_sparse_step_stops_the_run_with_the_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let device = device();
    // the sparsifier was set up for another model (other shapes): its step fails
    let other = Net::new(&device, 8);
    let mut sparsifier = Sparsifier::new(
        &other,
        SparsityConfig::new().with_sparsity(SPARSITY),
        rigl(),
        &OptimizerConfig::sgd(0.0, 0.0),
    )
    .expect("sparsifier");
    sparsifier.init(other).expect("init");
    let (training, model) = wrap(
        training(dir.path(), 2),
        Net::new(&device, 32),
        SharedSparsifier::new(sparsifier),
    );
    let result = training.launch(Learner::new(model, AdamConfig::new().init(), 1e-2));
    let reason = result
        .interrupted
        .and_then(|i| i.reason)
        .expect("the run must stop with a reason");
    assert!(reason.starts_with("sparse step failed"), "{reason}");
    let error = result.model.take_error().expect("the typed error is kept");
    assert!(reason.contains(&error.to_string()));
    assert_eq!(result.model.sparsifier().lock().step_count(), 0, "no step was counted");
}

#[test]
fn model_records_with_and_without_the_sparse_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let device = device();
    let config = SparsityConfig::new().with_sparsity(SPARSITY);
    let (_, model) = sparsify(training(dir.path(), 1), Net::new(&device, 32), config, rigl()).expect("sparsify");
    // a bare model's record has no sparse state: an error, not a panic
    let bare = Net::new(&device, 32).into_record();
    let error = model.clone().try_load_record(bare).expect_err("no sparse state");
    assert!(error.to_string().contains("no sparse state"), "{error}");
    // a SparseModel's record loads into the bare model only with allow_unused
    let record = model.clone().into_record();
    assert!(Net::new(&device, 32).try_load_record(record.clone()).is_err());
    let loaded = Net::new(&device, 32)
        .try_load_record(record.allow_unused(true))
        .expect("allow_unused");
    let bytes = |net: Net| net.into_record().into_bytes().expect("bytes").to_vec();
    assert!(bytes(loaded) == bytes(model.inner().clone()), "weights differ");
    // the same model gives the same checkpoint bytes (no random id for the state)
    let with_state = |m: &SparseModel<Net>| m.clone().into_record().into_bytes().expect("bytes").to_vec();
    assert!(
        with_state(&model) == with_state(&model),
        "checkpoint bytes differ between two saves"
    );
}

#[test]
fn one_sparse_step_per_optimizer_step_with_gradient_accumulation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let device = device();
    let config = SparsityConfig::new().with_sparsity(SPARSITY);
    let training = training(dir.path(), 1).grads_accumulation(2);
    let (training, model) = sparsify(training, Net::new(&device, 32), config, rigl()).expect("sparsify");
    let result = training.launch(Learner::new(model, AdamConfig::new().init(), 1e-2));
    assert!(result.error.is_none(), "{:?}", result.error);
    // 8 batches, 2 per optimizer step
    assert_eq!(result.model.sparsifier().lock().step_count(), 4);
}
