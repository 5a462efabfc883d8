//! The loop: steps and epochs. Each step takes the task's loss, lets the
//! `Sparsifier` take the optimizer step (and its topology update), and keeps the
//! step's statistics on the device; at the end of an epoch the runner evaluates,
//! and hands the epoch's row to the parts that care about it: `metrics.csv`, the
//! mask snapshot, the best epoch, the console and the checkpoint.

use std::ops::Range;
use std::time::Instant;

use super::stepper::Stepper;
use burn::module::Module;

use super::accumulate::{Accumulation, step_gradients};
use super::checkpoint::{Checkpointer, TrainerState};
use super::console::{Console, progress_message};
use super::divergence::{Diverged, check_finite};
use super::interrupt::{Interrupted, Interrupter, LoopGuard};
use super::metrics::{EpochSums, Pending};
use super::task::{Split, Task};
use crate::run::artifacts::EpochMetrics;
use crate::run::lr::Lr;
use crate::run::report;

/// The parts of a run, composed.
pub struct Runner<T> {
    /// The task.
    pub task: T,
    /// Counters that a checkpoint keeps.
    pub state: TrainerState,
    /// Writes checkpoints.
    pub checkpointer: Checkpointer,
    pending: Pending,
    lr: Lr,
    console: Console,
    interrupter: Interrupter,
    /// Write a checkpoint after every epoch (runs in rounds do not: they cannot resume).
    pub checkpoints: bool,
    /// Show the round in the console (runs in rounds).
    pub rounds: bool,
    /// The step of the last checkpoint written or resumed from.
    pub saved_step: Option<u64>,
    epochs: usize,
    accumulation: Accumulation,
    mask_layer: Option<String>,
    /// The stage of a recipe (none for a one-stage run).
    stage: Option<String>,
    /// The run's step where the current stage began (its learning-rate schedule
    /// and its method count from there; 0 for a one-stage run).
    stage_start: u64,
}

impl<T> Runner<T> {
    /// Composes the parts; an epoch has `accumulation.steps_per_epoch()` optimizer steps.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        task: T,
        lr: Lr,
        console: Console,
        checkpointer: Checkpointer,
        interrupter: Interrupter,
        epochs: usize,
        accumulation: Accumulation,
        mask_layer: Option<String>,
    ) -> Self {
        Self {
            task,
            state: TrainerState::default(),
            checkpointer,
            pending: Pending::default(),
            lr,
            console,
            interrupter,
            checkpoints: true,
            rounds: false,
            saved_step: None,
            epochs,
            accumulation,
            mask_layer,
            stage: None,
            stage_start: 0,
        }
    }

    /// Starts stage `index` (named `name`) of a recipe at the run's step `start`,
    /// with its learning-rate schedule; `fresh`: the stage begins now (not a
    /// resume inside it), so its best epoch starts again.
    pub fn start_stage(&mut self, index: usize, name: &str, lr: Lr, start: u64, fresh: bool) {
        self.state.stage = index;
        self.stage = Some(name.to_string());
        self.stage_start = start;
        self.lr = lr;
        if fresh {
            self.state.best = None;
        }
    }

    /// Starts a new round at `step` (iterative pruning), possibly mid-epoch.
    pub fn start_round(&mut self, round: usize, step: u64) {
        self.pending.clear();
        self.state.sums = EpochSums::default();
        self.state.epoch_seconds = 0.0;
        self.state.round = round;
        self.state.step = step;
        self.state.best = None;
    }

    /// Trains the optimizer steps of `range` (of the current round); a step is
    /// never split: an interrupt is honoured after the whole group of micro-batches.
    pub fn train_range<M: Module, S: Stepper<M>>(
        &mut self,
        mut model: M,
        sparse: &mut S,
        range: Range<u64>,
    ) -> anyhow::Result<M>
    where
        T: Task<M>,
    {
        // the run's first steps: what follows is the steps' memory (in sparse
        // execution the dense model is gone by now)
        crate::run::peak::steps_begin();
        let _loop = LoopGuard::enter();
        for step in range {
            model = self.step(model, sparse, step).map_err(|e| self.explain_divergence(e))?;
        }
        Ok(model)
    }

    /// Says what the run folder keeps after a divergence.
    fn explain_divergence(&self, mut e: anyhow::Error) -> anyhow::Error {
        if let Some(d) = e.downcast_mut::<Diverged>() {
            let dir = self.checkpointer.dir().path.display();
            d.kept = match (self.checkpoints, self.saved_step) {
                (false, _) => "runs in rounds keep no checkpoint".into(),
                (true, None) => "it had written no checkpoint yet".into(),
                (true, Some(s)) => format!(
                    "nothing was written after it: the last good checkpoint (epoch {}, step {s}) stays in {dir}",
                    s / self.accumulation.steps_per_epoch()
                ),
            };
        }
        e
    }

    fn step<M: Module, S: Stepper<M>>(&mut self, model: M, sparse: &mut S, step: u64) -> anyhow::Result<M>
    where
        T: Task<M>,
    {
        let spe = self.accumulation.steps_per_epoch();
        let (epoch, b) = (step / spe, step % spe);
        if b == 0 {
            self.state.sums = EpochSums::default();
            self.state.epoch_seconds = 0.0;
        }
        let started = Instant::now();
        let model = sparse.prepare(model, self.accumulation.rows())?;
        let mut samples = 0;
        let pending = &mut self.pending;
        let grads = step_gradients(
            &mut self.task,
            &model,
            &self.accumulation,
            step,
            self.state.round,
            |stats| {
                samples += stats.samples;
                pending.push(step, stats);
            },
        );
        let lr = self.lr.at(step - self.stage_start);
        let model = sparse.step(model, grads, lr)?;
        if self.pending.full() || b + 1 == spe {
            self.pending.read_into(&mut self.state.sums)?;
        }
        let secs = started.elapsed().as_secs_f64();
        self.state.epoch_seconds += secs;
        self.state.train_seconds += secs;
        self.state.trained_samples += samples;
        self.state.step = step + 1;
        let message = (self.pending.is_empty() && self.state.sums.seen > 0).then(|| {
            progress_message(
                self.rounds.then_some(self.state.round),
                epoch + 1,
                self.epochs,
                self.state.sums.loss(),
                self.state.sums.accuracy(),
                sparse.sparsifier().report().sparsity(),
            )
        });
        self.console.progress(spe, b, message);
        if b + 1 == spe {
            self.end_epoch(&model, &*sparse, epoch + 1, lr)?;
            let more = self.state.step < spe * self.epochs as u64;
            self.interrupter.epoch_done(more);
        }
        if self.interrupter.should_stop() {
            self.console.clear();
            if self.checkpoints {
                self.checkpoint(&model, sparse)?;
            }
            return Err(Interrupted {
                step: self.state.step,
                dir: self.checkpointer.dir().path.clone(),
                resumable: self.checkpoints,
                sweep: None,
            }
            .into());
        }
        Ok(model)
    }

    fn end_epoch<M: Module, S: Stepper<M>>(&mut self, model: &M, stepper: &S, epoch: u64, lr: f64) -> anyhow::Result<()>
    where
        T: Task<M>,
    {
        let sparse = stepper.sparsifier();
        self.console.clear();
        let started = Instant::now();
        let validation = self.task.evaluate(model, Split::Validation);
        let test = self.task.evaluate(model, Split::Test);
        let losses = [
            ("validation loss", validation.map(|v| v.loss)),
            ("test loss", test.map(|t| t.loss)),
        ];
        if let Err((what, value)) = check_finite(losses.iter().filter_map(|(n, l)| l.map(|l| (*n, l)))) {
            return Err(Diverged {
                step: self.state.step,
                what,
                value,
                kept: String::new(),
            }
            .into());
        }
        let test = test.unwrap_or(super::task::Evaluation {
            loss: f64::NAN,
            accuracy: f64::NAN,
        });
        let eval_seconds = started.elapsed().as_secs_f64();
        self.state.eval_seconds += eval_seconds;
        self.state.evaluated_samples += (self.task.samples(Split::Validation) + self.task.samples(Split::Test)) as u64;
        let report = sparse.report();
        let row = EpochMetrics {
            round: self.state.round,
            epoch,
            step: self.state.step,
            train_loss: self.state.sums.loss(),
            train_acc: self.state.sums.accuracy(),
            val_loss: validation.map(|v| v.loss),
            val_acc: validation.map(|v| v.accuracy),
            test_loss: test.loss,
            test_acc: test.accuracy,
            sparsity: report.sparsity(),
            nonzeros: report.nonzeros(),
            lr,
            drop_fraction: sparse
                .method()
                .drop_fraction((self.state.step - self.stage_start).saturating_sub(1)),
            itop: sparse.itop_rate(),
            stage: self.stage.clone(),
            train_seconds: self.state.epoch_seconds,
            eval_seconds,
        };
        let dir = self.checkpointer.dir();
        dir.append_metrics(&row)?;
        report::save_mask_snapshot(dir, sparse, self.mask_layer.as_deref(), row.round, epoch)?;
        let selection = self.task.selection();
        if selection.improves(self.state.best.as_ref(), &row) {
            self.state.best = Some(selection.best_of(&row));
        }
        self.console.epoch(&row, self.epochs, self.rounds, selection);
        self.state.last = Some(row);
        if self.checkpoints {
            self.checkpoint(model, stepper)?;
        }
        Ok(())
    }

    /// Writes the checkpoint (after reading back any pending statistics).
    pub fn checkpoint<M: Module, S: Stepper<M>>(&mut self, model: &M, sparse: &S) -> anyhow::Result<()> {
        self.pending.read_into(&mut self.state.sums)?;
        sparse.checkpoint(model, &mut self.checkpointer, &mut self.state)?;
        self.saved_step = Some(self.state.step);
        Ok(())
    }
}
