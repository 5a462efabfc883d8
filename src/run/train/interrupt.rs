//! Stopping a run cleanly: Ctrl-C, or `--stop-after N` epochs of this session.
//! The run writes its checkpoint and returns [`Interrupted`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A run stopped by Ctrl-C or `--stop-after` (after writing its checkpoint, when it can resume).
#[derive(Debug, thiserror::Error)]
#[error("interrupted at step {step}; {}", if *resumable {
    format!("checkpoint written, continue with `sparseburn train --resume {}`", dir.display())
} else {
    "a run that trains in rounds cannot be resumed, start it again".to_string()
})]
pub struct Interrupted {
    /// The next step.
    pub step: u64,
    /// The run folder.
    pub dir: PathBuf,
    /// Whether a checkpoint was written.
    pub resumable: bool,
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
