//! Checkpoints of a run in sparse execution, in the compact layout.
//!
//! Such a run saves its compact model's Burn record (`checkpoint/compact.bpk`:
//! each sparse layer's active values in its CSR order, the biases, the batch
//! norms) in place of `model.bpk`, and the optimizer moments of the values as
//! they are, beside the masks in `sparse.safetensors`: nothing of the dense
//! shape exists while a checkpoint is written, so its memory and its files
//! follow the nonzeros. Reading one (a resume in either execution, `export`,
//! `prune`) rebuilds the dense model, as a run's setup does: a fresh model of
//! the run, its compact twin under the checkpoint's masks, the record loaded
//! into the twin, and the values and their moments scattered back
//! ([`CompactTwin::with_compact`], [`dense_state`]). Scatter and gather move
//! values without arithmetic, so a resume continues bit for bit.

use std::path::Path;

use anyhow::{Context, anyhow, bail};
use burn::module::Module;
use sparse_core::Sparsifier;
use sparse_core::optim::SavedParamState;
use sparse_kernels::train::dense_state;
use sparse_models::{Classifier, CompactTwin};

use super::twin::{TwinJob, on_twin};
use crate::run::config::RunConfig;

/// The compact model's file in a checkpoint folder (Burn adds `.bpk`).
pub const COMPACT_MODEL: &str = "compact";

/// Whether the checkpoint folder `checkpoint` is in the compact layout.
pub fn is_compact(checkpoint: &Path) -> bool {
    checkpoint.join(format!("{COMPACT_MODEL}.bpk")).is_file()
}

/// Writes `model` (a compact twin) into the checkpoint folder `folder`.
pub fn save<C: Module>(model: &C, folder: &Path) -> anyhow::Result<()> {
    model
        .clone()
        .save_file(folder.join(COMPACT_MODEL))
        .map_err(|e| anyhow!("saving the compact model: {e:?}"))
}

/// `model` (a fresh model of the run, bound to `sparse`, which holds the
/// checkpoint's masks) with the weights of the compact checkpoint
/// `checkpoint`, and `saved` (the checkpoint's optimizer state, of the
/// compact values) in the dense layout.
pub fn load_dense<M: 'static>(
    model: M,
    sparse: &Sparsifier,
    checkpoint: &Path,
    saved: Vec<SavedParamState>,
) -> anyhow::Result<(M, Vec<SavedParamState>)> {
    let job = Load {
        sparse,
        checkpoint,
        saved,
    };
    on_twin(model, job).unwrap_or_else(|| {
        bail!(
            "{}: a checkpoint in the compact layout, which only runs of the `mlp`, `cnn`, ResNet and MobileNetV1 models write in sparse execution; was the folder trained with another model?",
            checkpoint.display()
        )
    })
}

/// [`load_dense`]'s work on the run's model as its twin type.
struct Load<'a> {
    sparse: &'a Sparsifier,
    checkpoint: &'a Path,
    saved: Vec<SavedParamState>,
}

impl<M> TwinJob<M> for Load<'_> {
    type Made = Vec<SavedParamState>;

    fn run<D: CompactTwin>(self, dense: D) -> anyhow::Result<(D, Vec<SavedParamState>)> {
        let checkpoint = self.checkpoint;
        let compact = dense
            .to_compact(self.sparse)?
            .try_load_file(checkpoint.join(COMPACT_MODEL))
            .map_err(|e| {
                anyhow!(
                    "{}: the saved compact model does not fit this run's model and masks ({e:?}); was the folder changed?",
                    checkpoint.display()
                )
            })?;
        let states = dense_state(&compact, self.saved)
            .with_context(|| format!("{}: the saved optimizer state", checkpoint.display()))?;
        Ok((dense.with_compact(&compact)?, states))
    }
}

/// `model` (a fresh model of the finished or stopped run `cfg`) with the
/// weights of its checkpoint folder `checkpoint`, in either layout (for
/// `export` and `prune`; a resume restores the whole state through the
/// checkpointer).
pub fn load_weights<M: Classifier + 'static>(cfg: &RunConfig, model: M, checkpoint: &Path) -> anyhow::Result<M> {
    if !is_compact(checkpoint) {
        return crate::run::export::load_checkpoint(model, checkpoint);
    }
    // the run's plan and method, to read the masks and build the twin under
    // them (the schedule's lengths and the classes do not matter for that)
    let mut sparse = super::build_sparsifier(cfg, &model, model.sparsity_filter(), 1000, 1, 2)
        .context("rebuilding the run's sparsity plan to read its compact checkpoint")?;
    // the weights alone: the optimizer state stays unread
    let _ = sparse.load_without_optimizer(checkpoint.join("sparse.safetensors"), &model)?;
    Ok(load_dense(model, &sparse, checkpoint, Vec::new())?.0)
}
