//! Stopping a run cleanly: Ctrl-C, or `--stop-after N` epochs of this session.
//! The run writes its checkpoint and returns [`Interrupted`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A run stopped by Ctrl-C or `--stop-after` (after writing its checkpoint, when it can resume).
#[derive(Debug, thiserror::Error)]
#[error("interrupted at step {step} of {}; {}", dir.display(), self.advice())]
pub struct Interrupted {
    /// The next step.
    pub step: u64,
    /// The run folder.
    pub dir: PathBuf,
    /// Whether a checkpoint was written.
    pub resumable: bool,
    /// The sweep folder, when the run is part of a sweep.
    pub sweep: Option<PathBuf>,
}

impl Interrupted {
    /// How to continue.
    fn advice(&self) -> String {
        match (&self.sweep, self.resumable) {
            (Some(sweep), true) => format!(
                "checkpoint written; run the same `sparseburn sweep` command again to continue the sweep in {}",
                sweep.display()
            ),
            (Some(sweep), false) => format!(
                "a run that trains in rounds keeps no checkpoint; run the same `sparseburn sweep` command again to continue the sweep in {} (this run starts from the beginning)",
                sweep.display()
            ),
            (None, true) => format!(
                "checkpoint written, continue with `sparseburn train --resume {}`",
                self.dir.display()
            ),
            (None, false) => format!(
                "a run that trains in rounds keeps no checkpoint; `sparseburn train --resume {}` (or the same command) starts it again from the beginning",
                self.dir.display()
            ),
        }
    }
}

/// Whether a training loop is running (it stops at the next batch with a
/// checkpoint); outside one (loading data, scoring, plotting, between the runs
/// of a sweep) a Ctrl-C has nothing to wait for and may stop the process at once.
static IN_LOOP: AtomicBool = AtomicBool::new(false);

/// Whether a training loop is running now (see [`LoopGuard`]).
pub fn in_training_loop() -> bool {
    IN_LOOP.load(Ordering::SeqCst)
}

/// Marks a training loop as running while it lives.
pub struct LoopGuard(());

impl LoopGuard {
    /// Enters the loop.
    pub fn enter() -> Self {
        IN_LOOP.store(true, Ordering::SeqCst);
        Self(())
    }
}

impl Drop for LoopGuard {
    fn drop(&mut self) {
        IN_LOOP.store(false, Ordering::SeqCst);
    }
}

/// When to stop.
#[derive(Debug)]
pub struct Interrupter {
    flag: Arc<AtomicBool>,
    stop_after: Option<u64>,
    epochs: u64,
}

impl Interrupter {
    /// Stops when `flag` is set (Ctrl-C) or after `stop_after` epochs of this session.
    pub fn new(flag: Arc<AtomicBool>, stop_after: Option<u64>) -> Self {
        Self {
            flag,
            stop_after,
            epochs: 0,
        }
    }

    /// Counts a finished epoch; `more` says whether training continues after it.
    pub fn epoch_done(&mut self, more: bool) {
        self.epochs += 1;
        if more && self.stop_after == Some(self.epochs) {
            self.flag.store(true, Ordering::SeqCst);
        }
    }

    /// Whether the run must stop now.
    pub fn should_stop(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}
