//! The training loop behind `sparseburn train`: deterministic batches, the
//! sparse step hook, per-epoch evaluation and metrics, atomic checkpoints,
//! Ctrl-C handling and exact resume.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use burn::module::Module;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Int, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sparse_core::method::GradRequest;
use sparse_core::{BackendKind, Rng, Sparsifier, discover};
use sparse_models::{Classifier, count_params, model_macs};

use super::artifacts::{EpochMetrics, RunDir, Summary, Versions};
use super::build::{self, Steps};
use super::config::RunConfig;
use super::lr::LrSchedule;
use super::models::{WithModel, with_model};
use super::report;
use crate::data::{BatchOrder, ImageBatch, ImageBatcher, ImageSet};

/// How to run `train`.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// The run folder.
    pub out: PathBuf,
    /// Continue the run in `out` from its checkpoint.
    pub resume: bool,
    /// Set by Ctrl-C: checkpoint and stop after the current batch.
    pub interrupt: Arc<AtomicBool>,
    /// Print per-epoch lines (and progress bars on a terminal).
    pub verbose: bool,
    /// Stop like Ctrl-C after this many epochs of this session (train in chunks).
    pub stop_after_epochs: Option<u64>,
}

/// A run stopped by Ctrl-C (after writing its checkpoint, when it can resume).
#[derive(Debug, thiserror::Error)]
#[error("interrupted at step {step}; {}", if *resumable {
    format!("checkpoint written, continue with `sparseburn train --resume {}`", dir.display())
} else {
    "lottery-ticket runs cannot be resumed, start the run again".to_string()
})]
pub struct Interrupted {
    /// The next step.
    pub step: u64,
    /// The run folder.
    pub dir: PathBuf,
    /// Whether a checkpoint was written.
    pub resumable: bool,
}

/// Everything needed to continue a run, besides the model and sparse state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TrainerState {
    round: usize,
    step: u64,
    loss_sum: f64,
    correct: u64,
    seen: u64,
    epoch_seconds: f64,
    train_seconds: f64,
    eval_seconds: f64,
    trained_samples: u64,
    evaluated_samples: u64,
    wall_seconds: f64,
    best_test_acc: f64,
    last: Option<EpochMetrics>,
}

/// Trains the run described by `cfg` into `opts.out` and returns its summary.
pub fn train(cfg: &RunConfig, opts: &TrainOptions) -> anyhow::Result<Summary> {
    build::check_method(&cfg.method.name)?;
    let backend: BackendKind = cfg.device.parse()?;
    let device = backend.device()?.autodiff();
    let (train, test) = cfg.data.load()?;
    if train.len() < cfg.training.batch_size || cfg.training.batch_size == 0 {
        bail!(
            "batch size {} does not fit the {} training images",
            cfg.training.batch_size,
            train.len()
        );
    }
    let created = !opts.out.exists();
    let dir = if opts.resume {
        RunDir::open(&opts.out)?
    } else {
        RunDir::create(&opts.out)?
    };
    if !opts.resume {
        dir.write("config.toml", cfg.to_toml().as_bytes())?;
    }
    let job = Job {
        cfg,
        opts,
        dir,
        train,
        test,
        device: device.clone(),
    };
    device.seed(cfg.training.seed);
    let (input, classes) = (job.train.shape, job.train.num_classes());
    let result = with_model(&cfg.model, input, classes, &device, job).and_then(|r| r);
    if result.is_err() && !opts.resume {
        // a bad method setting or init-weights file: leave no folder that blocks the retry
        RunDir::discard_unstarted(&opts.out, created);
    }
    result
}

struct Job<'a> {
    cfg: &'a RunConfig,
    opts: &'a TrainOptions,
    dir: RunDir,
    train: ImageSet,
    test: ImageSet,
    device: Device,
}

impl WithModel for Job<'_> {
    type Output = anyhow::Result<Summary>;

    fn run<M: Classifier + 'static>(self, make: &dyn Fn() -> M) -> anyhow::Result<Summary> {
        let cfg = self.cfg;
        let mut model = make();
        if let (Some(path), false) = (&cfg.model.init_weights, self.opts.resume) {
            model = sparse_models::import::load_torchvision(model, path)?;
        }
        let sparsity = build::sparsity_config(cfg, model.sparsity_filter())?;
        let layers = discover(&model, &sparsity.filter)?;
        let spe = (self.train.len() / cfg.training.batch_size) as u64;
        let steps = Steps {
            total: cfg.training.epochs as u64 * spe,
            per_epoch: spe,
        };
        let classes = self.train.num_classes();
        let (method, model) = build::method(cfg, model, &layers, steps, classes)?;
        let optimizer = build::optimizer(&cfg.training)?;
        let mut trainer = Trainer::new(self, steps)?;
        if build::is_lottery(&cfg.method.name) {
            if trainer.opts.resume {
                bail!("resuming a lottery-ticket run is not supported; start it again");
            }
            let lth = build::lottery(&cfg.method, cfg.sparsity.sparsity)?;
            trainer.checkpoints = false;
            let result = sparse_methods::lth::run(&lth, sparsity, &optimizer, model, steps.total, make, |m, s, r| {
                trainer
                    .train_range(m, s, r)
                    .map_err(|e| sparse_core::SparseError::method("trainer", format!("{e:#}")))
            })?;
            let mut sparse = Sparsifier::new(
                &result.model,
                sparsity_for_report(cfg, &result.model)?,
                sparse_methods::FixedMask {
                    masks: Some(result.masks),
                },
                &optimizer,
            )?;
            let model = sparse.init(result.model)?;
            trainer.checkpoint(&model, &sparse)?;
            return trainer.finish(&model, &sparse);
        }
        let mut sparse = Sparsifier::new(&model, sparsity, method, &optimizer)?;
        if let Some(path) = &cfg.model.mask_layer
            && !sparse.layers().iter().any(|l| &l.path == path)
        {
            let known: Vec<&str> = sparse.layers().iter().map(|l| l.path.as_str()).collect();
            bail!(
                "mask_layer `{path}` is not a sparse layer; sparse layers: {}",
                known.join(", ")
            );
        }
        let model = if trainer.opts.resume {
            trainer.resume(model, &mut sparse)?
        } else {
            trainer.initialise(model, &mut sparse)?
        };
        let start = trainer.state.step;
        let model = trainer.train_range(model, &mut sparse, start..steps.total)?;
        trainer.finish(&model, &sparse)
    }
}

fn sparsity_for_report<M: Classifier>(cfg: &RunConfig, model: &M) -> anyhow::Result<sparse_core::SparsityConfig> {
    let mut s = build::sparsity_config(cfg, model.sparsity_filter())?;
    s.sparsity = 0.0; // the masks come from the rounds, not from a target
    Ok(s)
}

struct Trainer<'a> {
    cfg: &'a RunConfig,
    opts: &'a TrainOptions,
    dir: RunDir,
    train: ImageSet,
    test: ImageSet,
    batcher: ImageBatcher,
    order: BatchOrder,
    device: Device,
    steps: Steps,
    lr: LrSchedule,
    loss: CrossEntropyLoss,
    state: TrainerState,
    epoch_batches: Option<(u64, Vec<Vec<usize>>)>,
    bar: Option<ProgressBar>,
    session: Instant,
    checkpoints: bool,
    epochs_this_session: u64,
    /// Per-step `(mean loss, correct predictions, batch size)` not read back yet:
    /// reading them every step would stall a GPU, so they are read in groups and
    /// summed on the host in step order (the same sums whatever the grouping).
    unread: Vec<(Tensor<1>, Tensor<1, Int>, u64)>,
}

impl<'a> Trainer<'a> {
    fn new(job: Job<'a>, steps: Steps) -> anyhow::Result<Self> {
        let cfg = job.cfg;
        let mut loss = CrossEntropyLossConfig::new();
        if cfg.training.label_smoothing > 0.0 {
            loss = loss.with_smoothing(Some(cfg.training.label_smoothing));
        }
        Ok(Self {
            cfg,
            opts: job.opts,
            batcher: ImageBatcher::new(&job.train),
            order: BatchOrder {
                len: job.train.len(),
                batch_size: cfg.training.batch_size,
                seed: cfg.training.seed,
            },
            lr: LrSchedule::new(&cfg.training, steps.per_epoch)?,
            loss: loss.init(&job.device),
            dir: job.dir,
            train: job.train,
            test: job.test,
            device: job.device,
            steps,
            state: TrainerState::default(),
            epoch_batches: None,
            bar: None,
            session: Instant::now(),
            checkpoints: true,
            epochs_this_session: 0,
            unread: Vec::new(),
        })
    }

    /// Initial masks: with data for SNIP and GraSP.
    fn initialise<M: Classifier>(&mut self, model: M, sparse: &mut Sparsifier) -> anyhow::Result<M> {
        let model = match self.cfg.method.name.as_str() {
            "snip" | "grasp" => {
                let first_batch = self.order.batches(0).remove(0);
                sparse.init_with(model, |m: &M, req: &GradRequest| {
                    let indices = match req.samples_per_class {
                        Some(k) => class_balanced(&self.train, k)?,
                        None => first_batch.clone(),
                    };
                    Ok(self.scoring_grads(m, &indices, req.temperature))
                })?
            }
            _ => sparse.init(model)?,
        };
        tracing::info!(
            density = sparse.report().density(),
            layers = sparse.layers().len(),
            "masks ready"
        );
        Ok(model)
    }

    /// Mean cross-entropy gradients over `indices`, logits divided by `temperature`.
    fn scoring_grads<M: Classifier>(&self, model: &M, indices: &[usize], temperature: f32) -> GradientsParams {
        let mut total = GradientsAccumulator::<M>::new();
        let n = indices.len() as f32;
        for chunk in indices.chunks(self.cfg.training.batch_size.max(1)) {
            let batch = self.batcher.batch_indices(&self.train, chunk, &self.device, None);
            let logits = model.forward(batch.images).div_scalar(temperature);
            let loss = CrossEntropyLossConfig::new()
                .init(&self.device)
                .forward(logits, batch.targets);
            let grads = GradientsParams::from_grads(loss.mul_scalar(chunk.len() as f32 / n).backward(), model);
            total.accumulate(model, grads);
        }
        total.grads()
    }

    fn resume<M: Classifier>(&mut self, model: M, sparse: &mut Sparsifier) -> anyhow::Result<M> {
        let ckpt = self.dir.checkpoint();
        let text = std::fs::read_to_string(ckpt.join("trainer.json")).context("reading trainer.json")?;
        self.state =
            serde_json::from_str(&text).with_context(|| format!("{}: corrupt trainer state", ckpt.display()))?;
        let model = model.try_load_file(ckpt.join("model")).map_err(|e| {
            anyhow::anyhow!(
                "{}: the saved model does not fit `{}` ({e:?}); was this folder trained with another model?",
                ckpt.display(),
                self.cfg.model.name
            )
        })?;
        sparse.load(ckpt.join("sparse.safetensors"), &model)?;
        let model = sparse.apply_masks(model)?;
        let epoch = self.state.step / self.steps.per_epoch;
        self.dir.truncate_metrics(self.state.round, epoch)?;
        tracing::info!(step = self.state.step, epoch, "resumed");
        Ok(model)
    }

    fn batch_indices(&mut self, epoch: u64, b: u64) -> Vec<usize> {
        if self.epoch_batches.as_ref().is_none_or(|(e, _)| *e != epoch) {
            self.epoch_batches = Some((epoch, self.order.batches(epoch)));
        }
        self.epoch_batches
            .as_ref()
            .map(|(_, bs)| bs[b as usize].clone())
            .unwrap_or_default()
    }

    fn batch(&mut self, step: u64) -> ImageBatch {
        let (epoch, b) = (step / self.steps.per_epoch, step % self.steps.per_epoch);
        let indices = self.batch_indices(epoch, b);
        let mut rng = Rng::for_stream(self.cfg.training.seed, "augment", step, &self.state.round.to_string());
        let augment = self.cfg.data.augments().then_some((&mut rng, 4));
        self.batcher.batch_indices(&self.train, &indices, &self.device, augment)
    }

    /// Trains the steps of `range` (of the current round).
    fn train_range<M: Classifier>(
        &mut self,
        mut model: M,
        sparse: &mut Sparsifier,
        range: Range<u64>,
    ) -> anyhow::Result<M> {
        if range.is_empty() {
            return Ok(model);
        }
        if range.start != self.state.step {
            // a new lottery-ticket round, possibly starting mid-epoch at the rewind step
            self.unread.clear();
            self.reset_epoch();
            self.state.step = range.start;
        }
        let end = range.end;
        for step in range {
            model = self.train_step(model, sparse, step)?;
        }
        if end == self.steps.total && sparse.method().name() == "lth" {
            self.state.round += 1;
        }
        Ok(model)
    }

    fn reset_epoch(&mut self) {
        self.state.loss_sum = 0.0;
        self.state.correct = 0;
        self.state.seen = 0;
        self.state.epoch_seconds = 0.0;
    }

    /// Reads the per-step losses and accuracies not read yet (one sync).
    fn read_back(&mut self) -> anyhow::Result<()> {
        if self.unread.is_empty() {
            return Ok(());
        }
        let unread = std::mem::take(&mut self.unread);
        let sizes: Vec<u64> = unread.iter().map(|u| u.2).collect();
        let (losses, corrects): (Vec<_>, Vec<_>) = unread.into_iter().map(|(l, c, _)| (l, c)).unzip();
        let read_err = |e| anyhow::anyhow!("reading the loss back: {e:?}");
        let losses = Tensor::cat(losses, 0)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(read_err)?;
        let corrects = Tensor::cat(corrects, 0)
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .map_err(read_err)?;
        for ((loss, correct), n) in losses.iter().zip(&corrects).zip(sizes) {
            self.state.loss_sum += f64::from(*loss) * n as f64;
            self.state.correct += *correct as u64;
            self.state.seen += n;
        }
        Ok(())
    }

    fn train_step<M: Classifier>(&mut self, model: M, sparse: &mut Sparsifier, step: u64) -> anyhow::Result<M> {
        let spe = self.steps.per_epoch;
        let (epoch, b) = (step / spe, step % spe);
        if b == 0 {
            self.reset_epoch();
        }
        if self.bar.is_none() && self.opts.verbose {
            self.bar = Some(progress_bar(spe, b));
        }
        let started = Instant::now();
        let batch = self.batch(step);
        let n = batch.targets.dims()[0] as u64;
        let logits = model.forward(batch.images);
        let correct = correct_predictions(logits.clone().inner(), batch.targets.clone().inner());
        let loss = self.loss.forward(logits, batch.targets);
        self.unread.push((loss.clone().inner(), correct, n));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let lr = self.lr.at(step);
        let model = sparse.step(model, grads, lr)?;
        if self.unread.len() >= 25 || b + 1 == spe {
            self.read_back()?;
        }
        let secs = started.elapsed().as_secs_f64();
        self.state.epoch_seconds += secs;
        self.state.train_seconds += secs;
        self.state.trained_samples += n;
        self.state.step = step + 1;
        if let Some(bar) = self
            .bar
            .as_ref()
            .filter(|_| self.unread.is_empty() && self.state.seen > 0)
        {
            bar.set_message(format!(
                "epoch {}/{} loss {:.4} acc {:.2}% sparsity {:.1}%",
                epoch + 1,
                self.cfg.training.epochs,
                self.state.loss_sum / self.state.seen as f64,
                100.0 * self.state.correct as f64 / self.state.seen as f64,
                100.0 * sparse.report().sparsity()
            ));
        }
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
        if b + 1 == spe {
            self.end_epoch(&model, sparse, epoch, lr)?;
            self.epochs_this_session += 1;
            if self.opts.stop_after_epochs == Some(self.epochs_this_session) && self.state.step < self.steps.total {
                self.opts.interrupt.store(true, Ordering::SeqCst);
            }
        }
        if self.opts.interrupt.load(Ordering::SeqCst) {
            if let Some(bar) = self.bar.take() {
                bar.finish_and_clear();
            }
            if self.checkpoints {
                self.checkpoint(&model, sparse)?;
            }
            return Err(Interrupted {
                step: self.state.step,
                dir: self.dir.path.clone(),
                resumable: self.checkpoints,
            }
            .into());
        }
        Ok(model)
    }

    fn end_epoch<M: Classifier>(&mut self, model: &M, sparse: &Sparsifier, epoch: u64, lr: f64) -> anyhow::Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let started = Instant::now();
        let (test_loss, test_acc) = evaluate(
            &model.valid(),
            &self.test,
            &self.batcher,
            &self.device.clone().inner(),
            self.cfg.training.eval_batch_size,
        );
        let eval_seconds = started.elapsed().as_secs_f64();
        self.state.eval_seconds += eval_seconds;
        self.state.evaluated_samples += self.test.len() as u64;
        let report = sparse.report();
        let row = EpochMetrics {
            round: self.state.round,
            epoch,
            step: self.state.step,
            train_loss: self.state.loss_sum / self.state.seen.max(1) as f64,
            train_acc: self.state.correct as f64 / self.state.seen.max(1) as f64,
            test_loss,
            test_acc,
            sparsity: report.sparsity(),
            nonzeros: report.nonzeros(),
            lr,
            drop_fraction: sparse.method().drop_fraction(self.state.step.saturating_sub(1)),
            itop: sparse.itop_rate(),
            train_seconds: self.state.epoch_seconds,
            eval_seconds,
        };
        self.dir.append_metrics(&row)?;
        report::save_mask_snapshot(
            &self.dir,
            sparse,
            self.cfg.model.mask_layer.as_deref(),
            row.round,
            epoch,
        )?;
        self.state.best_test_acc = self.state.best_test_acc.max(test_acc);
        self.state.last = Some(row.clone());
        if self.opts.verbose {
            let round = if build::is_lottery(&self.cfg.method.name) {
                format!("round {} ", row.round)
            } else {
                String::new()
            };
            println!(
                "{round}epoch {:>3}/{}  train loss {:.4} acc {:6.2}%  test loss {:.4} acc {:6.2}%  sparsity {:5.1}%  lr {:.4}  {:.1}s",
                epoch + 1,
                self.cfg.training.epochs,
                row.train_loss,
                100.0 * row.train_acc,
                row.test_loss,
                100.0 * row.test_acc,
                100.0 * row.sparsity,
                lr,
                row.train_seconds + row.eval_seconds
            );
        }
        if self.checkpoints {
            self.checkpoint(model, sparse)?;
        }
        Ok(())
    }

    /// Writes `checkpoint/` atomically (a new folder swapped in by renames).
    fn checkpoint<M: Module>(&mut self, model: &M, sparse: &Sparsifier) -> anyhow::Result<()> {
        self.read_back()?;
        self.state.wall_seconds += self.session.elapsed().as_secs_f64();
        self.session = Instant::now();
        let tmp = self.dir.file("checkpoint.tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        model
            .clone()
            .save_file(tmp.join("model"))
            .map_err(|e| anyhow::anyhow!("saving the model: {e:?}"))?;
        sparse.save(tmp.join("sparse.safetensors"))?;
        super::artifacts::write_atomic(
            &tmp.join("trainer.json"),
            serde_json::to_string_pretty(&self.state)?.as_bytes(),
        )?;
        let (current, old) = (self.dir.file("checkpoint"), self.dir.file("checkpoint.old"));
        let _ = std::fs::remove_dir_all(&old);
        if current.exists() {
            std::fs::rename(&current, &old)?;
        }
        std::fs::rename(&tmp, &current)?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }

    fn finish<M: Classifier>(&mut self, model: &M, sparse: &Sparsifier) -> anyhow::Result<Summary> {
        self.state.wall_seconds += self.session.elapsed().as_secs_f64();
        self.session = Instant::now();
        let report = sparse.report();
        let macs = model_macs(model, self.train.shape, &sparse.active_counts())?;
        let last = self.state.last.clone().context("the run trained no epoch")?;
        let summary = Summary {
            model: self.cfg.model.name.clone(),
            method: self.cfg.method.name.clone(),
            dataset: self.train.name.split('/').next().unwrap_or_default().to_string(),
            device: self.cfg.device.clone(),
            seed: self.cfg.training.seed,
            target_sparsity: if self.cfg.method.name == "dense" {
                0.0
            } else {
                self.cfg.sparsity.sparsity
            },
            test_accuracy: last.test_acc,
            test_loss: last.test_loss,
            best_test_accuracy: self.state.best_test_acc,
            train_accuracy: last.train_acc,
            sparsity: report.sparsity(),
            nonzeros: report.nonzeros(),
            sparse_layer_weights: report.numel(),
            parameters: count_params(model),
            dense_macs: macs.iter().map(|l| l.dense).sum(),
            sparse_macs: macs.iter().map(|l| l.sparse).sum(),
            itop: sparse.itop_rate(),
            epochs: self.cfg.training.epochs as u64,
            steps: self.state.step,
            wall_seconds: self.state.wall_seconds,
            train_samples_per_second: self.state.trained_samples as f64 / self.state.train_seconds.max(1e-9),
            eval_samples_per_second: self.state.evaluated_samples as f64 / self.state.eval_seconds.max(1e-9),
            versions: Versions::default(),
        };
        self.dir
            .write("summary.json", serde_json::to_string_pretty(&summary)?.as_bytes())?;
        report::write(&self.dir, &summary, sparse, self.cfg.model.mask_layer.as_deref(), &macs)?;
        Ok(summary)
    }
}

fn progress_bar(len: u64, pos: u64) -> ProgressBar {
    let bar = ProgressBar::new(len).with_style(
        ProgressStyle::default_bar()
            .template("{msg} [{bar:30}] {pos}/{len} step, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(pos);
    bar
}

/// Correct predictions of a batch, on the device.
fn correct_predictions(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1, Int> {
    logits.argmax(1).squeeze_dim::<1>(1).equal(targets).int().sum()
}

fn accuracy_count(logits: Tensor<2>, targets: Tensor<1, Int>) -> u64 {
    correct_predictions(logits, targets).into_scalar::<i64>() as u64
}

/// Mean test loss and accuracy (no label smoothing), in batches.
pub fn evaluate<M: Classifier>(
    model: &M,
    set: &ImageSet,
    batcher: &ImageBatcher,
    device: &Device,
    batch: usize,
) -> (f64, f64) {
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let (mut loss, mut correct) = (0.0f64, 0u64);
    let indices: Vec<usize> = (0..set.len()).collect();
    for chunk in indices.chunks(batch.max(1)) {
        let b = batcher.batch_indices(set, chunk, device, None);
        let logits = model.forward(b.images);
        correct += accuracy_count(logits.clone(), b.targets.clone());
        loss += f64::from(loss_fn.forward(logits, b.targets).into_scalar::<f32>()) * chunk.len() as f64;
    }
    (loss / set.len().max(1) as f64, correct as f64 / set.len().max(1) as f64)
}

/// `k` training images of every class (the first ones in index order).
fn class_balanced(set: &ImageSet, k: usize) -> sparse_core::Result<Vec<usize>> {
    let mut by_class: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
    for (i, l) in set.labels.iter().enumerate() {
        let v = by_class.entry(*l).or_default();
        if v.len() < k {
            v.push(i);
        }
    }
    for (c, name) in set.classes.iter().enumerate() {
        let have = by_class.get(&(c as u16)).map_or(0, Vec::len);
        if have < k {
            return Err(sparse_core::SparseError::method(
                "grasp",
                format!("needs {k} samples of class `{name}`, the training set has {have}; lower samples_per_class"),
            ));
        }
    }
    Ok(by_class.into_values().flatten().collect())
}
