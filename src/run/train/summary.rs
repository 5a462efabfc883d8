//! The end of a run: `summary.json`, the plots and `report.md`.

use anyhow::Context;
use sparse_core::Sparsifier;
use sparse_core::stats::LayerMacs;
use sparse_models::{Classifier, count_params, model_macs};

use super::checkpoint::TrainerState;
use super::stages::stage_steps;
use crate::run::artifacts::{RunDir, StageSummary, Summary, Versions};
use crate::run::config::RunConfig;
use crate::run::report;

/// What the summary needs besides the config and the state.
pub struct RunFacts<'a> {
    /// The dataset's name.
    pub dataset: &'a str,
    /// Input shape `[C, H, W]`.
    pub input: [usize; 3],
    /// Images held out for validation.
    pub validation_images: usize,
    /// Optimizer steps per epoch (where a recipe's stages start and end).
    pub steps_per_epoch: u64,
}

/// Who a summary is about: the fields that differ between tasks.
pub struct Identity {
    /// The model's name.
    pub model: String,
    /// The dataset's (or corpus') name.
    pub dataset: String,
    /// Samples held out for validation.
    pub validation_images: usize,
}

/// Writes `summary.json`, the plots and `report.md`, and returns the summary.
pub fn finish<M: Classifier>(
    cfg: &RunConfig,
    dir: &RunDir,
    model: &M,
    sparse: &Sparsifier,
    state: &TrainerState,
    facts: &RunFacts<'_>,
) -> anyhow::Result<Summary> {
    let macs = model_macs(model, facts.input, &sparse.active_counts())?;
    let id = Identity {
        model: cfg.model.name.name().to_string(),
        dataset: facts.dataset.to_string(),
        validation_images: facts.validation_images,
    };
    let mut summary = epoch_summary(cfg, state, sparse, id, count_params(model), &macs)?;
    summary.stages = stage_summaries(cfg, facts.steps_per_epoch);
    dir.write("summary.json", serde_json::to_string_pretty(&summary)?.as_bytes())?;
    report::write(dir, &summary, sparse, cfg.model.mask_layer.as_deref(), &macs)?;
    Ok(summary)
}

/// The summary of a run trained epoch by epoch and evaluated on held-out
/// splits (images, text): every field but the task's own section.
pub fn epoch_summary(
    cfg: &RunConfig,
    state: &TrainerState,
    sparse: &Sparsifier,
    id: Identity,
    parameters: usize,
    macs: &[LayerMacs],
) -> anyhow::Result<Summary> {
    let report_now = sparse.report();
    let last = state.last.clone().context("the run trained no epoch")?;
    let best = state.best.clone().context("the run has no best epoch")?;
    Ok(Summary {
        model: id.model,
        method: cfg.method_label(),
        dataset: id.dataset,
        device: cfg.device.name().to_string(),
        seed: cfg.training.seed,
        target_sparsity: cfg.target_sparsity(),
        test_accuracy: Some(last.test_acc),
        test_loss: Some(last.test_loss),
        train_accuracy: Some(last.train_acc),
        validation_images: id.validation_images,
        best_epoch: best.epoch,
        best_validation_accuracy: best.val_acc,
        test_accuracy_at_best: Some(best.test_acc),
        sparsity: report_now.sparsity(),
        nonzeros: report_now.nonzeros(),
        sparse_layer_weights: report_now.numel(),
        parameters,
        dense_macs: macs.iter().map(|l| l.dense).sum(),
        sparse_macs: macs.iter().map(|l| l.sparse).sum(),
        itop: sparse.itop_rate(),
        epochs: cfg.training.epochs as u64,
        steps: state.step,
        wall_seconds: state.wall_seconds,
        train_samples_per_second: state.trained_samples as f64 / state.train_seconds.max(1e-9),
        eval_samples_per_second: state.evaluated_samples as f64 / state.eval_seconds.max(1e-9),
        versions: Versions::default(),
        execution: Some(crate::run::execution::summary(cfg, sparse)),
        stages: None, // a recipe's: `finish`, which knows the steps per epoch
        lm: None,
        rl: None,
    })
}

/// Where each stage of a recipe starts and ends (none for a one-stage run).
fn stage_summaries(cfg: &RunConfig, steps_per_epoch: u64) -> Option<Vec<StageSummary>> {
    if cfg.stages.is_empty() {
        return None;
    }
    let spe = steps_per_epoch.max(1);
    let bounds = stage_steps(&cfg.stages, spe);
    Some(
        cfg.stages
            .iter()
            .zip(bounds)
            .map(|(s, b)| StageSummary {
                name: s.name.clone(),
                method: s.config.method.name().to_string(),
                prune: s.prune.as_ref().map(|p| p.method.name().to_string()),
                target_sparsity: s.config.target_sparsity(),
                start_epoch: b.start / spe,
                end_epoch: b.end / spe,
                start_step: b.start,
                end_step: b.end,
            })
            .collect(),
    )
}
