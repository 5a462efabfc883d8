//! What the trainer trains on: a [`Task`] gives each step's loss and the
//! statistics to report, evaluates a model, and computes the gradients a
//! data-driven initialisation scores with. Image classification is the one task
//! today; a character-level language model or a DQN agent is another
//! implementation of the same trait, with the loop, metrics, checkpoints and
//! rounds unchanged.

use anyhow::bail;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Int, Tensor};
use sparse_core::{GradRequest, Rng};
use sparse_methods::oneshot::{self, OneShotConfig, OneShotMethod, OneShotOutcome};
use sparse_models::Classifier;

use super::scoring::class_balanced;
use super::selection::Selection;
use crate::data::{BatchOrder, ImageBatcher, ImageSet};

/// The statistics of one training step, still on the device (read back in groups).
pub struct StepStats {
    /// Mean loss of the batch.
    pub loss: Tensor<1>,
    /// Correct predictions of the batch.
    pub correct: Tensor<1, Int>,
    /// Samples in the batch.
    pub samples: u64,
}

/// Mean loss and accuracy of a model on one part of the data.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean loss.
    pub loss: f64,
    /// Fraction correct.
    pub accuracy: f64,
}

/// Which part of the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Held out of the training set: what "best" looks at.
    Validation,
    /// The test set: reported, never selected on.
    Test,
}

/// One training batch: batch `index` of epoch `epoch` (of `batch_size`, in the
/// epoch's order). An optimizer step takes one or more of them (see
/// [`super::accumulate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MicroBatch {
    /// The epoch (0-based).
    pub epoch: u64,
    /// The batch within the epoch (0-based).
    pub index: u64,
}

/// A training task for models of type `M`.
pub trait Task<M> {
    /// Batches of `batch_size` per epoch (a trailing partial batch is dropped).
    fn batches_per_epoch(&self) -> u64;

    /// The mean loss of `batch` in round `round` (to differentiate) and its statistics.
    fn train_step(&mut self, model: &M, batch: MicroBatch, round: usize) -> (Tensor<1>, StepStats);

    /// The model's loss and accuracy on `split`, `None` when the task has no such part.
    fn evaluate(&self, model: &M, split: Split) -> Option<Evaluation>;

    /// Samples of `split` (0 when absent).
    fn samples(&self, split: Split) -> usize;

    /// What the best epoch is chosen by (validation accuracy unless the task says otherwise).
    fn selection(&self) -> Selection {
        Selection::Accuracy
    }

    /// Gradients for a data-driven initialisation (SNIP's first batch, GraSP's
    /// samples per class), logits divided by `request.temperature`.
    fn scoring_grads(&self, model: &M, request: &GradRequest) -> sparse_core::Result<GradientsParams>;

    /// Checks that [`Task::one_shot`] can prune `model` by `config` on `batches`
    /// calibration batches (before training starts): an epoch has them (where
    /// the method needs calibration data), and a capturing forward pass on the
    /// first reports every layer to prune. A task whose model cannot report its
    /// layers' inputs refuses.
    fn check_one_shot(&self, model: &M, config: &OneShotConfig, batches: usize) -> anyhow::Result<()> {
        let _ = (model, config, batches);
        bail!(NO_ONE_SHOT)
    }

    /// Prunes `model` in one shot by `config` ([`oneshot::prune`]), calibrated on
    /// the layers' inputs of the first `batches` training batches of the run's
    /// first epoch (in the order of the run's seed, without augmentation), and
    /// returns the masks and pruned weights (`model` itself is not changed).
    fn one_shot(&self, model: &M, config: &OneShotConfig, batches: usize) -> anyhow::Result<OneShotOutcome> {
        let _ = (model, config, batches);
        bail!(NO_ONE_SHOT)
    }
}

const NO_ONE_SHOT: &str = "this task's model cannot report its layers' inputs, so it cannot be pruned in one shot; a stage's prune applies to image classification";

/// Image classification with cross-entropy.
pub struct ImageClassification {
    /// Training images.
    pub train: ImageSet,
    /// Validation images (held out of the training set), if any.
    pub validation: Option<ImageSet>,
    /// Test images.
    pub test: ImageSet,
    batcher: ImageBatcher,
    order: BatchOrder,
    device: Device,
    loss: CrossEntropyLoss,
    augment: bool,
    eval_batch: usize,
    seed: u64,
    /// The image order of the current epoch (a shuffle per epoch, computed once).
    epoch_order: Option<(u64, Vec<usize>)>,
    /// Batches of the first optimizer step, which SNIP scores on.
    scoring_batches: usize,
}

impl ImageClassification {
    /// The task on these sets, batches of `batch_size` in the order of `seed`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        train: ImageSet,
        validation: Option<ImageSet>,
        test: ImageSet,
        batch_size: usize,
        eval_batch: usize,
        seed: u64,
        label_smoothing: f32,
        augment: bool,
        device: &Device,
    ) -> Self {
        let mut loss = CrossEntropyLossConfig::new();
        if label_smoothing > 0.0 {
            loss = loss.with_smoothing(Some(label_smoothing));
        }
        Self {
            batcher: ImageBatcher::new(&train),
            order: BatchOrder {
                len: train.len(),
                batch_size,
                seed,
            },
            loss: loss.init(device),
            device: device.clone(),
            train,
            validation,
            test,
            augment,
            eval_batch,
            seed,
            epoch_order: None,
            scoring_batches: 1,
        }
    }

    /// Scores SNIP on the first `batches` batches (the first optimizer step's
    /// samples with gradient accumulation); 1 by default.
    pub fn with_scoring_batches(mut self, batches: usize) -> Self {
        self.scoring_batches = batches.max(1);
        self
    }

    /// The first `batches` training batches of the first epoch's order, without
    /// augmentation, on the inference device: one-shot pruning's calibration images.
    /// The calibration batches of a one-shot `method` asked for `batches`: all
    /// of them when an epoch has them; else refused for a method that needs the
    /// layers' inputs, and an epoch's worth for one that does not (magnitude:
    /// they only measure the reconstruction error logged).
    fn calibration_count(&self, method: OneShotMethod, batches: usize) -> anyhow::Result<usize> {
        let available = self.order.batches_per_epoch();
        if batches <= available {
            return Ok(batches);
        }
        if method.needs_calibration() {
            bail!(
                "calibration_batches = {batches}, but an epoch has {available} batches of {} training images; set it to at most {available}",
                self.order.batch_size
            );
        }
        tracing::info!(
            calibration_batches = batches,
            available,
            "{method} needs no calibration data; its error is measured on an epoch's batches"
        );
        Ok(available)
    }

    /// The first `batches` training batches of the run's first epoch (at most an epoch's).
    fn calibration(&self, batches: usize) -> Vec<Tensor<4>> {
        let size = self.order.batch_size;
        let inner = self.device.clone().inner();
        let order = self.order.epoch(0);
        order[..(batches * size).min(order.len())]
            .chunks(size)
            .map(|chunk| self.batcher.batch_indices(&self.train, chunk, &inner, None).images)
            .collect()
    }

    /// The images of batch `b` of `epoch`.
    fn batch_indices(&mut self, epoch: u64, b: u64) -> Vec<usize> {
        if self.epoch_order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            self.epoch_order = Some((epoch, self.order.epoch(epoch)));
        }
        let size = self.order.batch_size;
        let start = b as usize * size;
        self.epoch_order
            .as_ref()
            .map(|(_, order)| order[start..start + size].to_vec())
            .unwrap_or_default()
    }
}

/// Correct predictions of a batch, on the device.
pub(super) fn correct_predictions(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1, Int> {
    logits.argmax(1).squeeze_dim::<1>(1).equal(targets).int().sum()
}

/// Mean loss (no label smoothing) and accuracy of `model` on `set`, in batches.
pub fn evaluate<M: Classifier>(
    model: &M,
    set: &ImageSet,
    batcher: &ImageBatcher,
    device: &Device,
    batch: usize,
) -> Evaluation {
    evaluate_with(&|images| model.forward(images), set, batcher, device, batch)
}

/// [`evaluate`] for any forward pass from images to logits (an exported model).
pub fn evaluate_with(
    forward: &dyn Fn(Tensor<4>) -> Tensor<2>,
    set: &ImageSet,
    batcher: &ImageBatcher,
    device: &Device,
    batch: usize,
) -> Evaluation {
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let (mut loss, mut correct) = (0.0f64, 0u64);
    let indices: Vec<usize> = (0..set.len()).collect();
    for chunk in indices.chunks(batch.max(1)) {
        let b = batcher.batch_indices(set, chunk, device, None);
        let logits = forward(b.images);
        correct += correct_predictions(logits.clone(), b.targets.clone()).into_scalar::<i64>() as u64;
        loss += f64::from(loss_fn.forward(logits, b.targets).into_scalar::<f32>()) * chunk.len() as f64;
    }
    Evaluation {
        loss: loss / set.len().max(1) as f64,
        accuracy: correct as f64 / set.len().max(1) as f64,
    }
}

impl<M: Classifier> Task<M> for ImageClassification {
    fn batches_per_epoch(&self) -> u64 {
        self.order.batches_per_epoch() as u64
    }

    /// Augmentation draws from the stream of the batch's number in the run
    /// (`epoch · batches + index`: the step's number without accumulation).
    fn train_step(&mut self, model: &M, batch: MicroBatch, round: usize) -> (Tensor<1>, StepStats) {
        let number = batch.epoch * <Self as Task<M>>::batches_per_epoch(self) + batch.index;
        let indices = self.batch_indices(batch.epoch, batch.index);
        let mut rng = Rng::for_stream(self.seed, "augment", number, &round.to_string());
        let augment = self.augment.then_some((&mut rng, 4));
        let batch = self.batcher.batch_indices(&self.train, &indices, &self.device, augment);
        let samples = batch.targets.dims()[0] as u64;
        let logits = model.forward(batch.images);
        let correct = correct_predictions(logits.clone().inner(), batch.targets.clone().inner());
        let loss = self.loss.forward(logits, batch.targets);
        let stats = StepStats {
            loss: loss.clone().inner(),
            correct,
            samples,
        };
        (loss, stats)
    }

    fn evaluate(&self, model: &M, split: Split) -> Option<Evaluation> {
        let set = match split {
            Split::Validation => self.validation.as_ref()?,
            Split::Test => &self.test,
        };
        let inner = self.device.clone().inner();
        Some(evaluate(&model.valid(), set, &self.batcher, &inner, self.eval_batch))
    }

    fn samples(&self, split: Split) -> usize {
        match split {
            Split::Validation => self.validation.as_ref().map_or(0, ImageSet::len),
            Split::Test => self.test.len(),
        }
    }

    /// Mean cross-entropy gradients over the samples of the run's first
    /// optimizer step (SNIP: `batch_size · grad_accumulation` images) or `k`
    /// training images of every class (GraSP), accumulated in chunks of the batch
    /// size with Burn's `GradientsAccumulator`.
    fn scoring_grads(&self, model: &M, request: &GradRequest) -> sparse_core::Result<GradientsParams> {
        let indices = match request.samples_per_class {
            Some(k) => class_balanced(&self.train, k)?,
            None => self.order.epoch(0)[..self.order.batch_size * self.scoring_batches].to_vec(),
        };
        let mut accumulator = GradientsAccumulator::<M>::new();
        let n = indices.len() as f32;
        for chunk in indices.chunks(self.order.batch_size.max(1)) {
            let batch = self.batcher.batch_indices(&self.train, chunk, &self.device, None);
            let logits = model.forward(batch.images).div_scalar(request.temperature);
            let loss = CrossEntropyLossConfig::new()
                .init(&self.device)
                .forward(logits, batch.targets);
            let grads = GradientsParams::from_grads(loss.mul_scalar(chunk.len() as f32 / n).backward(), model);
            accumulator.accumulate(model, grads);
        }
        Ok(accumulator.grads())
    }

    /// Checks the calibration count against an epoch's batches, the settings
    /// against the layers, and runs one capturing forward pass on the first
    /// calibration batch, the only one built (every layer to prune must report its input).
    fn check_one_shot(&self, model: &M, config: &OneShotConfig, batches: usize) -> anyhow::Result<()> {
        let count = self.calibration_count(config.method, batches)?;
        let first = self.calibration(count.min(1));
        Ok(oneshot::check(model, first.first(), config)?)
    }

    fn one_shot(&self, model: &M, config: &OneShotConfig, batches: usize) -> anyhow::Result<OneShotOutcome> {
        let count = self.calibration_count(config.method, batches)?;
        Ok(oneshot::prune(model, &self.calibration(count), config)?)
    }
}
