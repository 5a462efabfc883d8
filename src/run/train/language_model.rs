//! Language modelling as a training [`Task`]: next-token prediction with the
//! char transformer ([`CharTransformer`]) on a tokenised corpus.
//!
//! A training sample is a window of `block` tokens at a random offset of the
//! training split (nanoGPT's `get_batch`); the offsets of batch `b` come from the
//! stream of the batch's number in the run, and so does the dropout's randomness
//! (the backend is seeded per batch), so batches are a pure function of the seed
//! and the step and a resumed run continues bit for bit. An "epoch" is a fixed
//! number of batches (by default one pass's worth of tokens).
//!
//! Losses are reported in **bits per token** (bits per character for a char
//! vocabulary): the mean next-token cross-entropy divided by ln 2. Evaluation
//! predicts every token after the first of a split from the tokens before it in
//! consecutive, non-overlapping windows of the context length (as
//! [`sparse_models::NextToken::bits_per_token`]); the "accuracy" is the fraction of tokens
//! whose most likely prediction is right.

use std::f64::consts::LN_2;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use sparse_core::{GradRequest, Rng, host};
use sparse_models::CharTransformer;

use super::selection::Selection;
use super::task::{Evaluation, MicroBatch, Split, StepStats, Task, correct_predictions};

/// The splits of a corpus as token ids, and how to batch them.
pub struct LanguageModelling {
    train: Vec<u32>,
    validation: Vec<u32>,
    test: Vec<u32>,
    batch_size: usize,
    block: usize,
    batches: u64,
    eval_batch: usize,
    seed: u64,
    device: Device,
    scoring_batches: usize,
}

/// The shape of the batches.
#[derive(Clone, Copy, Debug)]
pub struct Batching {
    /// Windows per batch.
    pub batch_size: usize,
    /// Tokens per window (the model's context).
    pub block: usize,
    /// Batches per epoch (0: ⌊training tokens / (batch_size · block)⌋, at least 1).
    pub batches_per_epoch: usize,
    /// Windows per evaluation forward pass.
    pub eval_batch: usize,
    /// The seed of the window offsets and the dropout.
    pub seed: u64,
}

impl LanguageModelling {
    /// The task on `train`, `validation` and `test` tokens (each longer than the
    /// context: see `TextCorpus::check_block`).
    pub fn new(train: Vec<u32>, validation: Vec<u32>, test: Vec<u32>, batching: Batching, device: &Device) -> Self {
        let per_pass = train.len() / (batching.batch_size * batching.block).max(1);
        let batches = match batching.batches_per_epoch {
            0 => per_pass.max(1),
            n => n,
        } as u64;
        Self {
            train,
            validation,
            test,
            batch_size: batching.batch_size,
            block: batching.block,
            batches,
            eval_batch: batching.eval_batch,
            seed: batching.seed,
            device: device.clone(),
            scoring_batches: 1,
        }
    }

    /// Scores SNIP on the first `batches` batches (the first optimizer step's).
    pub fn with_scoring_batches(mut self, batches: usize) -> Self {
        self.scoring_batches = batches.max(1);
        self
    }

    /// Inputs and next-token targets `[batch, block]` of the run's batch `number`.
    fn windows(&self, number: u64, round: usize) -> (Tensor<2, Int>, Tensor<2, Int>) {
        let mut rng = Rng::for_stream(self.seed, "lm-windows", number, &round.to_string());
        let starts = (self.train.len() - self.block) as u64;
        let (mut inputs, mut targets) = (Vec::new(), Vec::new());
        for _ in 0..self.batch_size {
            let s = rng.below(starts) as usize;
            inputs.extend(self.train[s..s + self.block].iter().map(|t| i64::from(*t)));
            targets.extend(self.train[s + 1..s + self.block + 1].iter().map(|t| i64::from(*t)));
        }
        let shape = [self.batch_size, self.block];
        (
            Tensor::from_data(TensorData::new(inputs, shape), &self.device),
            Tensor::from_data(TensorData::new(targets, shape), &self.device),
        )
    }

    fn split(&self, split: Split) -> &[u32] {
        match split {
            Split::Validation => &self.validation,
            Split::Test => &self.test,
        }
    }
}

/// Summed negative log-likelihood (nats) and correct predictions of `model` (in
/// evaluation mode) on `tokens`, in non-overlapping windows of `block`.
pub fn score(
    model: &CharTransformer,
    tokens: &[u32],
    block: usize,
    batch: usize,
    device: &Device,
) -> anyhow::Result<(f64, u64)> {
    let predicted = tokens.len().saturating_sub(1);
    let windows: Vec<(usize, usize)> = (0..predicted)
        .step_by(block.max(1))
        .map(|s| (s, (predicted - s).min(block)))
        .collect();
    let (mut nats, mut correct) = (0.0f64, 0u64);
    for group in windows.chunks(batch.max(1)) {
        for same in group.chunk_by(|a, b| a.1 == b.1) {
            let (b, len) = (same.len(), same[0].1);
            let ids = |offset: usize| -> Vec<i64> {
                same.iter()
                    .flat_map(|&(s, l)| tokens[s + offset..s + offset + l].iter().map(|x| i64::from(*x)))
                    .collect()
            };
            let inputs = Tensor::<2, Int>::from_data(TensorData::new(ids(0), [b, len]), device);
            let targets = Tensor::<2, Int>::from_data(TensorData::new(ids(1), [b, len]), device);
            let logits = model.forward(inputs);
            let v = logits.dims()[2];
            let logp = log_softmax(logits.clone(), 2).gather(2, targets.clone().reshape([b, len, 1]));
            nats -= f64::from(host::to_vec(logp.sum())?[0]);
            let right = correct_predictions(logits.reshape([b * len, v]), targets.reshape([b * len]));
            correct += host::to_vec(right.float())?[0] as u64;
        }
    }
    Ok((nats, correct))
}

impl Task<CharTransformer> for LanguageModelling {
    fn batches_per_epoch(&self) -> u64 {
        self.batches
    }

    fn train_step(&mut self, model: &CharTransformer, batch: MicroBatch, round: usize) -> (Tensor<1>, StepStats) {
        let number = batch.epoch * self.batches + batch.index;
        let dropout_seed = Rng::for_stream(self.seed, "lm-dropout", number, &round.to_string()).next_u64();
        self.device.seed(dropout_seed);
        let (inputs, targets) = self.windows(number, round);
        let [b, t] = inputs.dims();
        let logits = model.forward(inputs);
        let v = logits.dims()[2];
        let (logits, targets) = (logits.reshape([b * t, v]), targets.reshape([b * t]));
        let correct = correct_predictions(logits.clone().inner(), targets.clone().inner());
        let loss = CrossEntropyLossConfig::new()
            .init(&self.device)
            .forward(logits, targets);
        let stats = StepStats {
            loss: loss.clone().inner().div_scalar(LN_2),
            correct,
            samples: (b * t) as u64,
        };
        (loss, stats)
    }

    fn evaluate(&self, model: &CharTransformer, split: Split) -> Option<Evaluation> {
        let tokens = self.split(split);
        let inner = self.device.clone().inner();
        let predicted = tokens.len().saturating_sub(1).max(1) as f64;
        match score(&model.valid(), tokens, self.block, self.eval_batch, &inner) {
            Ok((nats, correct)) => Some(Evaluation {
                loss: nats / predicted / LN_2,
                accuracy: correct as f64 / predicted,
            }),
            Err(e) => {
                tracing::warn!("evaluating on the {split:?} split failed: {e:#}");
                Some(Evaluation {
                    loss: f64::NAN,
                    accuracy: f64::NAN,
                })
            }
        }
    }

    /// Bits per token, the language model's metric (lower is better).
    fn selection(&self) -> Selection {
        Selection::Loss
    }

    fn samples(&self, split: Split) -> usize {
        self.split(split).len().saturating_sub(1)
    }

    /// Mean cross-entropy gradients over the windows of the run's first optimizer
    /// step (SNIP); GraSP, which asks for samples per class, gets the same windows
    /// (a next-token task has no class-balanced sample).
    fn scoring_grads(&self, model: &CharTransformer, request: &GradRequest) -> sparse_core::Result<GradientsParams> {
        let mut accumulator = GradientsAccumulator::<CharTransformer>::new();
        let n = self.scoring_batches as f32;
        for number in 0..self.scoring_batches as u64 {
            let (inputs, targets) = self.windows(number, 0);
            let [b, t] = inputs.dims();
            let logits = model.forward(inputs).div_scalar(request.temperature);
            let v = logits.dims()[2];
            let loss = CrossEntropyLossConfig::new()
                .init(&self.device)
                .forward(logits.reshape([b * t, v]), targets.reshape([b * t]));
            let grads = GradientsParams::from_grads(loss.div_scalar(n).backward(), model);
            accumulator.accumulate(model, grads);
        }
        Ok(accumulator.grads())
    }
}
