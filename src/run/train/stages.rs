//! Recipes in training: the stages of `[[stage]]` one after the other, on one
//! model and one [`Runner`] (one data order, one `metrics.csv`, one epoch count).
//!
//! Each stage gets its own `Sparsifier` (its method, sparsity and optimizer, its
//! method's schedule over the stage's steps) and its own learning-rate schedule
//! (counted from the stage's first step). At a stage boundary:
//!
//! - the weights carry over as they are;
//! - the masks carry over from a sparse stage to the next sparse one (its method
//!   continues from them: GMP prunes them at once to its schedule's sparsity at
//!   the stage's first step, then further on its schedule; a static or DST method
//!   keeps their sparsity, after its plan check); a dense stage trains every weight again, and a sparse stage after
//!   a dense one (or the first stage) starts as a run would, with its method's
//!   own first masks (GMP from dense, or one-shot magnitude pruning with
//!   `initial_sparsity` = the target);
//! - a stage with `prune` (one-shot magnitude, Wanda or SparseGPT) prunes the
//!   dense model it starts from at its first step, calibrated on the run's first
//!   training batches, and its method continues from those masks; this happens
//!   only where the stage starts, so a run resumed inside the stage restores the
//!   pruned model and masks from the checkpoint and never prunes again, and a run
//!   resumed at the boundary prunes the same restored weights on the same batches;
//! - the optimizer state starts from zero (momentum, Adam's moments), as in
//!   SparseML's recipes where each stage's optimizer settings take effect anew;
//! - the best epoch (by validation accuracy) is the current stage's.
//!
//! The checkpoint holds the current stage's index with its sparse state, so a
//! resumed run rebuilds that stage and continues it; a checkpoint at the last
//! epoch of a stage resumes into the same boundary as the uninterrupted run.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use anyhow::bail;
use burn::module::Module;
use sparse_core::{LayerFilter, Mask, Sparsifier};
use sparse_methods::oneshot::OneShotOutcome;

use super::accumulate::Accumulation;
use super::checkpoint::{Checkpointer, Schedule};
use super::console::Console;
use super::interrupt::Interrupter;
use super::runner::Runner;
use super::task::Task;
use super::{Fit, Fitted, build_sparsifier, init_masks};
use crate::run::lr::Lr;
use crate::run::recipe::{Stage, carried_sparsity};

/// The run's steps of each stage, in order.
pub fn stage_steps(stages: &[Stage], steps_per_epoch: u64) -> Vec<Range<u64>> {
    let mut start = 0;
    stages
        .iter()
        .map(|s| {
            let end = start + s.epochs as u64 * steps_per_epoch;
            let range = start..end;
            start = end;
            range
        })
        .collect()
}

/// Trains every stage of `fit.cfg.stages` (from the checkpoint's stage when resuming).
pub(crate) fn train_stages<M: Module + 'static, T: Task<M>>(
    fit: Fit<'_, M>,
    model: M,
    filter: LayerFilter,
    task: T,
) -> anyhow::Result<Fitted<M>> {
    let Fit {
        cfg,
        opts,
        resume,
        dir,
        classes,
        model_name,
        units_per_sample,
        ..
    } = fit;
    let t = &cfg.training;
    let stages = &cfg.stages;
    let accumulation = Accumulation::new(t.grad_accumulation, task.batches_per_epoch(), t.batch_size)?;
    let spe = accumulation.steps_per_epoch();
    let bounds = stage_steps(stages, spe);
    let total = bounds.last().map_or(0, |b| b.end);
    let build = |i: usize, model: &M| {
        let steps = bounds[i].end - bounds[i].start;
        build_sparsifier(&stages[i].config, model, filter.clone(), steps, spe, classes)
    };
    check_methods(stages, |i| build(i, &model))?;
    check_prunes(stages, &model, &filter, &task)?;
    let mut runner = Runner::new(
        task,
        Lr::new(&stages[0].config.training, spe)?,
        Console::new(opts.verbose),
        Checkpointer::new(dir.clone()),
        Interrupter::new(opts.interrupt.clone(), opts.stop_after_epochs),
        t.epochs,
        accumulation,
        cfg.model.mask_layer.clone(),
    );
    let (first, mut model, mut sparse) = if resume {
        let k = runner.checkpointer.stage()?;
        if k >= stages.len() {
            bail!(
                "{}: the checkpoint is in stage {} but the recipe has {} stage(s); was config.toml changed?",
                dir.path.display(),
                k + 1,
                stages.len()
            );
        }
        let mut sparse = build(k, &model)?;
        let (model, state) = runner.checkpointer.restore(
            model,
            &mut sparse,
            model_name,
            Schedule {
                total_steps: total,
                steps_per_epoch: spe,
                samples_per_step: (t.batch_size * t.grad_accumulation) as u64 * units_per_sample,
                stage_steps: bounds[k].clone(),
                stage: k,
                selection: runner.task.selection(),
            },
        )?;
        runner.saved_step = Some(state.step);
        runner.state = state;
        (k, model, sparse)
    } else {
        let mut sparse = build(0, &model)?;
        let model = begin(&stages[0], &mut sparse, model, None, &runner.task, &filter)?;
        (0, model, sparse)
    };
    if opts.verbose {
        println!("run folder: {}", dir.path.display());
    }
    for (i, stage) in stages.iter().enumerate().skip(first) {
        if i > first {
            let carried = carried_masks(&stages[i - 1], &sparse);
            let mut next = build(i, &model)?;
            model = begin(stage, &mut next, model, carried, &runner.task, &filter)?;
            sparse = next;
        }
        let range = &bounds[i];
        let fresh = runner.state.step == range.start;
        tracing::info!(
            stage = stage.name,
            method = stage.config.method.name(),
            from_step = range.start,
            to_step = range.end,
            density = sparse.report().density(),
            "stage"
        );
        if opts.verbose && fresh {
            let prune = stage
                .prune
                .as_ref()
                .map_or(String::new(), |p| format!("one-shot {}, then ", p.method));
            println!(
                "stage {}/{} `{}`: {prune}{} at sparsity {:.2}, epochs {}-{}",
                i + 1,
                stages.len(),
                stage.name,
                stage.config.method.name(),
                stage.config.target_sparsity(),
                range.start / spe + 1,
                range.end / spe
            );
        }
        runner.start_stage(
            i,
            &stage.name,
            Lr::new(&stage.config.training, spe)?,
            range.start,
            fresh,
        );
        let start = runner.state.step;
        model = runner.train_range(model, &mut sparse, start..range.end)?;
    }
    runner.checkpointer.account_wall_time(&mut runner.state);
    Ok(Fitted {
        model,
        sparse,
        state: runner.state,
    })
}

/// Checks, before training, that each stage's method can be a stage: not one
/// that trains in rounds (it owns the whole run) or changes the forward pass
/// (its reparameterization would have to enter or leave the other stages'
/// model), and, when it continues sparser masks than its target, one that
/// prunes gradually (GMP), so that it reaches its target.
fn check_methods(stages: &[Stage], build: impl Fn(usize) -> anyhow::Result<Sparsifier>) -> anyhow::Result<()> {
    for (i, stage) in stages.iter().enumerate() {
        let label = format!("[[stage]] {} `{}`", i + 1, stage.name);
        let mut sparse = build(i).map_err(|e| anyhow::anyhow!("{label}: {e:#}"))?;
        sparse.check_plan().map_err(|e| anyhow::anyhow!("{label}: {e:#}"))?;
        let method = sparse.method();
        let why = if method.rounds().is_some() {
            Some(
                "trains in rounds of its own (for one-shot magnitude pruning in a recipe, give a sparse stage prune = \"magnitude\")",
            )
        } else if method.reparameterization().is_some() {
            Some("changes the model's forward pass")
        } else {
            None
        };
        if let Some(why) = why {
            bail!(
                "{label}: method {} cannot be a stage of a recipe: it {why}",
                method.name()
            );
        }
        let target = stage.config.target_sparsity();
        if let Some(at) = carried_sparsity(stages, i)
            && !method.is_dense()
            && target > at + 1e-9
            && !method.prunes_gradually()
        {
            bail!(
                "{label}: {} keeps the sparsity of the masks it continues, those of stage `{}` at {at}, so it cannot reach {target}; set its sparsity to {at}, or use a method that prunes gradually (gmp)",
                method.name(),
                stages[i - 1].name
            );
        }
    }
    Ok(())
}

/// The masks a stage leaves to the next, by weight path (none after a dense stage).
fn carried_masks(stage: &Stage, sparse: &Sparsifier) -> Option<BTreeMap<String, Mask>> {
    stage.config.sparsity.as_ref()?;
    Some(
        sparse
            .layers()
            .iter()
            .zip(sparse.masks())
            .map(|(l, m)| (l.path.clone(), m.clone()))
            .collect(),
    )
}

/// Checks, before training, each stage that starts with one-shot pruning
/// against the model and the task: the settings against the layers (e.g. M of
/// N:M dividing each fan-in), the calibration batches against an epoch's, and
/// that the model reports every pruned layer's input.
fn check_prunes<M: Module, T: Task<M>>(
    stages: &[Stage],
    model: &M,
    policy: &LayerFilter,
    task: &T,
) -> anyhow::Result<()> {
    for (i, stage) in stages.iter().enumerate() {
        if let Some(prune) = &stage.prune {
            let config = prune.one_shot(&stage.config, policy.clone());
            task.check_one_shot(model, &config, prune.calibration_batches)
                .map_err(|e| {
                    anyhow::anyhow!("[[stage]] {} `{}`: prune = {}: {e:#}", i + 1, stage.name, prune.method)
                })?;
        }
    }
    Ok(())
}

/// Starts `stage`'s sparsifier on `model`: with its one-shot pruning when it
/// has one ([`prune_at_start`]); else from the `carried` masks of a sparse stage
/// before (a sparse weight that stage did not have starts active), brought to
/// the method's starting point (`Sparsifier::continue_from`: GMP prunes them to
/// its schedule's sparsity at the stage's step 0; a drop/grow method checks its
/// plan); else with its method's first masks.
fn begin<M: Module, T: Task<M>>(
    stage: &Stage,
    sparse: &mut Sparsifier,
    model: M,
    carried: Option<BTreeMap<String, Mask>>,
    task: &T,
    policy: &LayerFilter,
) -> anyhow::Result<M> {
    if let Some(prune) = &stage.prune {
        let config = prune.one_shot(&stage.config, policy.clone());
        let outcome = task
            .one_shot(&model, &config, prune.calibration_batches)
            .map_err(|e| anyhow::anyhow!("stage `{}`: one-shot {}: {e:#}", stage.name, prune.method))?;
        return prune_at_start(sparse, model, &outcome);
    }
    match carried {
        Some(carried) if !sparse.method().is_dense() => {
            let masks = sparse
                .layers()
                .iter()
                .map(|l| carried.get(&l.path).cloned().unwrap_or_else(|| Mask::ones(l.numel())))
                .collect();
            Ok(sparse.continue_from(model, masks)?)
        }
        _ => init_masks(sparse, model, task),
    }
}

/// The one-shot pruning pruned other layers than the stage's sparsifier trains.
#[derive(Debug, thiserror::Error)]
#[error(
    "the one-shot pruning pruned the layers [{pruned}] but the stage's sparse layers are [{sparse}]; both come from the stage's sparsity settings and must be the same"
)]
pub struct PrunedLayersDiffer {
    /// The layers the pruning returned masks for.
    pub pruned: String,
    /// The stage's sparse layers.
    pub sparse: String,
}

/// Writes the one-shot `outcome`'s weights into `model` (SparseGPT updates the
/// kept ones) and continues the stage's method from its masks: one for each of
/// the sparsifier's layers, and none for another layer.
fn prune_at_start<M: Module>(sparse: &mut Sparsifier, model: M, outcome: &OneShotOutcome) -> anyhow::Result<M> {
    let mut pruned = outcome.masks();
    let layers: BTreeSet<&str> = sparse.layers().iter().map(|l| l.path.as_str()).collect();
    if layers.len() != sparse.layers().len() || !pruned.keys().map(String::as_str).eq(layers.iter().copied()) {
        let names = |paths: Vec<&str>| paths.join(", ");
        return Err(PrunedLayersDiffer {
            pruned: names(pruned.keys().map(String::as_str).collect()),
            sparse: names(sparse.layers().iter().map(|l| l.path.as_str()).collect()),
        }
        .into());
    }
    let masks: Vec<Mask> = sparse.layers().iter().filter_map(|l| pruned.remove(&l.path)).collect();
    tracing::info!(
        sparsity = outcome.sparsity(),
        error = ?outcome.total_error(),
        layers = masks.len(),
        "one-shot pruning at the stage's start"
    );
    let model = outcome.apply(model)?;
    Ok(sparse.continue_from(model, masks)?)
}
