//! Checkpoints: the model (Burn's format), the sparse state (masks, method
//! state, optimizer moments, step) and the trainer's own counters, written into
//! a new folder and swapped in by renames, so a crash leaves the previous
//! checkpoint intact; and resuming from one.

use std::time::Instant;

use anyhow::{Context, bail};
use burn::module::Module;
use serde::{Deserialize, Serialize};
use sparse_core::Sparsifier;

use super::checksum;
use super::compact_checkpoint;
use super::divergence::check_finite;
use super::metrics::EpochSums;
use super::selection::Selection;
use crate::run::artifacts::{EpochMetrics, RunDir, write_atomic};

/// The best epoch so far (see [`super::selection`]: by validation accuracy, or
/// by validation bits per token for a language model).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Best {
    /// Round.
    pub round: usize,
    /// Epoch (1-based).
    pub epoch: u64,
    /// Validation accuracy (none without a validation split: then the last epoch).
    pub val_acc: Option<f64>,
    /// Test accuracy at that epoch.
    pub test_acc: f64,
    /// Validation loss at that epoch, recorded when the choice is by loss (a
    /// language model; absent from image runs and from older checkpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// Test loss at that epoch, recorded when the choice is by loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_loss: Option<f64>,
}

fn is_zero(x: &usize) -> bool {
    *x == 0
}

/// Everything needed to continue a run, besides the model and sparse state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TrainerState {
    /// Round of iterative pruning.
    pub round: usize,
    /// Stage of a recipe (0-based; its sparse state is the checkpoint's, and its
    /// step within the stage is `step` minus the stage's first step).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stage: usize,
    /// The next step (of the run).
    pub step: u64,
    /// Sums of the current epoch.
    pub sums: EpochSums,
    /// Training seconds of the current epoch.
    pub epoch_seconds: f64,
    /// Training seconds of the run.
    pub train_seconds: f64,
    /// Evaluation seconds of the run.
    pub eval_seconds: f64,
    /// Samples trained on.
    pub trained_samples: u64,
    /// Samples evaluated.
    pub evaluated_samples: u64,
    /// Wall seconds of the sessions before this one.
    pub wall_seconds: f64,
    /// The best epoch (by the task's [`super::selection::Selection`]) of the current round.
    pub best: Option<Best>,
    /// The last epoch's metrics.
    pub last: Option<EpochMetrics>,
}

impl TrainerState {
    /// The floating-point counters, named (JSON cannot hold a NaN or an infinity).
    fn floats(&self) -> Vec<(&'static str, f64)> {
        let mut v = vec![
            ("sums.loss_sum", self.sums.loss_sum),
            ("epoch_seconds", self.epoch_seconds),
            ("train_seconds", self.train_seconds),
            ("eval_seconds", self.eval_seconds),
            ("wall_seconds", self.wall_seconds),
        ];
        if let Some(b) = &self.best {
            v.extend([
                ("best.test_acc", b.test_acc),
                ("best.val_acc", b.val_acc.unwrap_or(0.0)),
                ("best.val_loss", b.val_loss.unwrap_or(0.0)),
                ("best.test_loss", b.test_loss.unwrap_or(0.0)),
            ]);
        }
        if let Some(l) = &self.last {
            v.extend([
                ("last.train_loss", l.train_loss),
                ("last.test_loss", l.test_loss),
                ("last.val_loss", l.val_loss.unwrap_or(0.0)),
                ("last.test_acc", l.test_acc),
            ]);
        }
        v
    }

    /// Checks every restored counter against the run's schedule: a checkpoint
    /// whose step lies beyond the schedule, or whose sums and epochs do not fit
    /// its step, is refused (it would "finish" silently or report wrong numbers).
    /// Steps are optimizer steps of `samples_per_step` samples each.
    pub fn validate(&self, schedule: &Schedule) -> anyhow::Result<()> {
        let Schedule {
            total_steps,
            steps_per_epoch,
            samples_per_step,
            ref stage_steps,
            stage,
            selection,
        } = *schedule;
        let bad = |what: String| anyhow::anyhow!("trainer.json: {what}; the checkpoint does not belong to this run");
        selection.check_restored(self.best.as_ref())?;
        if self.stage != stage {
            bail!(bad(format!("stage {} where stage {stage} was expected", self.stage)));
        }
        if let Err((name, v)) = check_finite(self.floats()) {
            bail!(bad(format!("{name} is {v}")));
        }
        if self.round != 0 {
            bail!(bad(format!(
                "round {} in a run that does not train in rounds",
                self.round
            )));
        }
        if self.step > total_steps {
            bail!(bad(format!(
                "step {} is beyond the schedule's {total_steps} steps",
                self.step
            )));
        }
        if !(stage_steps.start..=stage_steps.end).contains(&self.step) {
            bail!(bad(format!(
                "step {} lies outside its stage {} (steps {} to {})",
                self.step, self.stage, stage_steps.start, stage_steps.end
            )));
        }
        let epochs = self.step / steps_per_epoch;
        let in_epoch = match self.step % steps_per_epoch {
            0 if self.step > 0 => steps_per_epoch,
            b => b,
        };
        let sums = &self.sums;
        if sums.seen > in_epoch * samples_per_step || sums.correct > sums.seen {
            bail!(bad(format!(
                "{} samples ({} correct) counted in the {in_epoch} steps of the current epoch",
                sums.seen, sums.correct
            )));
        }
        if self.trained_samples > self.step * samples_per_step {
            bail!(bad(format!(
                "{} samples trained in {} steps",
                self.trained_samples, self.step
            )));
        }
        let last_epoch = self.last.as_ref().map_or(0, |l| l.epoch);
        if last_epoch != epochs {
            bail!(bad(format!(
                "the last epoch is {last_epoch} at step {} (epoch {epochs})",
                self.step
            )));
        }
        // a recipe's stage keeps its own best epoch, none before its first epoch ends
        let stage_first_epoch = stage_steps.start / steps_per_epoch;
        if self.best.as_ref().is_some_and(|b| b.epoch > epochs) || (self.best.is_none() && epochs > stage_first_epoch) {
            bail!(bad(format!("the best epoch does not fit epoch {epochs}")));
        }
        Ok(())
    }
}

/// The schedule a restored checkpoint must fit.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// Steps of the whole run.
    pub total_steps: u64,
    /// Steps per epoch.
    pub steps_per_epoch: u64,
    /// Training samples per optimizer step (batch size × gradient accumulation).
    pub samples_per_step: u64,
    /// The steps of the checkpoint's stage (`0..total_steps` for a one-stage
    /// run); its sparse state counts from their start.
    pub stage_steps: std::ops::Range<u64>,
    /// The checkpoint's stage (0 for a one-stage run).
    pub stage: usize,
    /// What the task's best epoch is chosen by (the restored one must fit it).
    pub selection: Selection,
}

/// Writes and reads `checkpoint/` of a run folder.
pub struct Checkpointer {
    dir: RunDir,
    session: Instant,
}

impl Checkpointer {
    /// For the run in `dir`.
    pub fn new(dir: RunDir) -> Self {
        Self {
            dir,
            session: Instant::now(),
        }
    }

    /// The run folder.
    pub fn dir(&self) -> &RunDir {
        &self.dir
    }

    /// Adds this session's wall time to `state` and starts counting again.
    pub fn account_wall_time(&mut self, state: &mut TrainerState) {
        state.wall_seconds += self.session.elapsed().as_secs_f64();
        self.session = Instant::now();
    }

    /// Writes `checkpoint/` atomically (a new folder swapped in by renames).
    pub fn save<M: Module>(&mut self, model: &M, sparse: &Sparsifier, state: &mut TrainerState) -> anyhow::Result<()> {
        self.save_files(state, |tmp| {
            model
                .clone()
                .save_file(tmp.join("model"))
                .map_err(|e| anyhow::anyhow!("saving the model: {e:?}"))?;
            Ok(sparse.save(tmp.join("sparse.safetensors"))?)
        })
    }

    /// [`Checkpointer::save`] for a model in sparse execution: its compact
    /// twin `model` in the compact layout ([`super::compact_checkpoint`]),
    /// with `sparse` holding the moments of its values; nothing of the
    /// dense shape.
    pub fn save_compact<C: Module>(
        &mut self,
        model: &C,
        sparse: &Sparsifier,
        state: &mut TrainerState,
    ) -> anyhow::Result<()> {
        self.save_files(state, |tmp| {
            compact_checkpoint::save(model, tmp)?;
            Ok(sparse.save(tmp.join("sparse.safetensors"))?)
        })
    }

    /// Writes the checkpoint whose files `files` puts into the folder it is
    /// given, after this session's wall time is added to `state` and its
    /// counters are checked.
    fn save_files(
        &mut self,
        state: &mut TrainerState,
        files: impl FnOnce(&std::path::Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.account_wall_time(state);
        if let Err((name, value)) = check_finite(state.floats()) {
            bail!("not writing a checkpoint: {name} is {value}, which would not read back");
        }
        write_checkpoint(&self.dir, state, files)
    }

    /// The stage of a recipe that the checkpoint is in (0 for a one-stage run),
    /// read before the stage's sparse state is built to restore into.
    pub fn stage(&self) -> anyhow::Result<usize> {
        #[derive(Deserialize)]
        struct Peek {
            #[serde(default)]
            stage: usize,
        }
        let ckpt = self.dir.checkpoint();
        let text = std::fs::read_to_string(ckpt.join("trainer.json")).context("reading trainer.json")?;
        let peek: Peek =
            serde_json::from_str(&text).with_context(|| format!("{}: corrupt trainer state", ckpt.display()))?;
        Ok(peek.stage)
    }

    /// Restores the model, the sparse state and the trainer's counters, and keeps
    /// `metrics.csv` to the epochs the checkpoint has.
    pub fn restore<M: Module + 'static>(
        &mut self,
        model: M,
        sparse: &mut Sparsifier,
        model_name: &str,
        schedule: Schedule,
    ) -> anyhow::Result<(M, TrainerState)> {
        let ckpt = self.dir.checkpoint();
        checksum::verify(&ckpt)?;
        let text = std::fs::read_to_string(ckpt.join("trainer.json")).context("reading trainer.json")?;
        let state: TrainerState =
            serde_json::from_str(&text).with_context(|| format!("{}: corrupt trainer state", ckpt.display()))?;
        state.validate(&schedule).with_context(|| ckpt.display().to_string())?;
        let steps_per_epoch = schedule.steps_per_epoch;
        // the method's reparameterization must be in the model before its weights load
        let model = sparse.attach(model)?;
        let model = if compact_checkpoint::is_compact(&ckpt) {
            let saved = sparse.load_without_optimizer(ckpt.join("sparse.safetensors"), &model)?;
            let (model, states) = compact_checkpoint::load_dense(model, sparse, &ckpt, saved)?;
            sparse
                .optimizer_mut()
                .import(states, &Sparsifier::param_numels(&model))
                .with_context(|| format!("{}: the saved optimizer state", ckpt.display()))?;
            model
        } else {
            let model = model.try_load_file(ckpt.join("model")).map_err(|e| {
                anyhow::anyhow!(
                    "{}: the saved model does not fit `{model_name}` ({e:?}); was this folder trained with another model?",
                    ckpt.display()
                )
            })?;
            sparse.load(ckpt.join("sparse.safetensors"), &model)?;
            model
        };
        let in_stage = state.step - schedule.stage_steps.start;
        if sparse.step_count() != in_stage {
            bail!(
                "{}: the sparse state is at step {} but trainer.json at step {in_stage} (of its stage); the checkpoint is inconsistent",
                ckpt.display(),
                sparse.step_count(),
            );
        }
        let model = sparse.apply_masks(model)?;
        let epoch = state.step / steps_per_epoch;
        self.dir.truncate_metrics(state.round, epoch)?;
        let rows = self.dir.read_metrics()?.len() as u64;
        if rows != epoch {
            bail!(
                "{}: metrics.csv has {rows} epoch(s) but the checkpoint is at epoch {epoch}; the run folder was changed",
                self.dir.path.display()
            );
        }
        tracing::info!(step = state.step, epoch, "resumed");
        Ok((model, state))
    }
}

/// Writes `checkpoint/` of `dir` atomically: `files` fills a fresh
/// `checkpoint.tmp/`, `trainer` goes to its `trainer.json`, the checksums of
/// every file are recorded, then the folder is swapped in by renames (the
/// previous checkpoint kept as `checkpoint.old/` until the new one is in place).
pub fn write_checkpoint(
    dir: &RunDir,
    trainer: &impl Serialize,
    files: impl FnOnce(&std::path::Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let tmp = dir.file("checkpoint.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    files(&tmp)?;
    write_atomic(
        &tmp.join("trainer.json"),
        serde_json::to_string_pretty(trainer)?.as_bytes(),
    )?;
    checksum::record(&tmp)?;
    let (current, old) = (dir.file("checkpoint"), dir.file("checkpoint.old"));
    let _ = std::fs::remove_dir_all(&old);
    if current.exists() {
        std::fs::rename(&current, &old)?;
    }
    std::fs::rename(&tmp, &current)?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}
