//! Checkpoints: the model (Burn's format), the sparse state (masks, method
//! state, optimizer moments, step) and the trainer's own counters, written into
//! a new folder and swapped in by renames, so a crash leaves the previous
//! checkpoint intact; and resuming from one.

use std::time::Instant;

use anyhow::Context;
use burn::module::Module;
use serde::{Deserialize, Serialize};
use sparse_core::Sparsifier;

use super::metrics::EpochSums;
use crate::run::artifacts::{EpochMetrics, RunDir, write_atomic};

/// The epoch with the best validation accuracy so far.
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
}

/// Everything needed to continue a run, besides the model and sparse state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TrainerState {
    /// Round of iterative pruning.
    pub round: usize,
    /// The next step.
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
    /// The best epoch (by validation accuracy) of the current round.
    pub best: Option<Best>,
    /// The last epoch's metrics.
    pub last: Option<EpochMetrics>,
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
        self.account_wall_time(state);
        let tmp = self.dir.file("checkpoint.tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        model
            .clone()
            .save_file(tmp.join("model"))
            .map_err(|e| anyhow::anyhow!("saving the model: {e:?}"))?;
        sparse.save(tmp.join("sparse.safetensors"))?;
        write_atomic(
            &tmp.join("trainer.json"),
            serde_json::to_string_pretty(state)?.as_bytes(),
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

    /// Restores the model, the sparse state and the trainer's counters, and keeps
    /// `metrics.csv` to the epochs the checkpoint has.
    pub fn restore<M: Module>(
        &mut self,
        model: M,
        sparse: &mut Sparsifier,
        model_name: &str,
        steps_per_epoch: u64,
    ) -> anyhow::Result<(M, TrainerState)> {
        let ckpt = self.dir.checkpoint();
        let text = std::fs::read_to_string(ckpt.join("trainer.json")).context("reading trainer.json")?;
        let state: TrainerState =
            serde_json::from_str(&text).with_context(|| format!("{}: corrupt trainer state", ckpt.display()))?;
        // the method's reparameterization must be in the model before its weights load
        let model = sparse.attach(model)?;
        let model = model.try_load_file(ckpt.join("model")).map_err(|e| {
            anyhow::anyhow!(
                "{}: the saved model does not fit `{model_name}` ({e:?}); was this folder trained with another model?",
                ckpt.display()
            )
        })?;
        sparse.load(ckpt.join("sparse.safetensors"), &model)?;
        let model = sparse.apply_masks(model)?;
        let epoch = state.step / steps_per_epoch;
        self.dir.truncate_metrics(state.round, epoch)?;
        tracing::info!(step = state.step, epoch, "resumed");
        Ok((model, state))
    }
}
