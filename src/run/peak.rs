//! A run's peak resident memory, split where its training steps begin.
//!
//! The process's high-water mark (`VmHWM`) alone mixes the setup into the
//! steps: a run in sparse execution initialises the dense model (so that
//! both executions start from the same weights) and gathers it, so its
//! whole-run peak is the dense setup's even when its steps hold a tenth of
//! that. [`steps_begin`] keeps the peak so far as the setup's, hands what
//! the setup freed back to the OS, and restarts the kernel's high-water mark
//! (`/proc/self/clear_refs`, Linux ≥ 4.0), so that [`peaks`] can tell the
//! two apart.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::bench::peak_rss;

/// The highest `VmHWM` read by [`steps_begin`] (0: not called).
static SETUP: AtomicU64 = AtomicU64::new(0);
/// Whether the high-water mark was restarted.
static RESTARTED: AtomicBool = AtomicBool::new(false);

/// The peaks of [`peaks`], bytes (none where not measured).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peaks {
    /// The run so far (the process's, where the mark cannot restart).
    pub whole: Option<u64>,
    /// Before the steps began.
    pub setup: Option<u64>,
    /// Since the steps began.
    pub steps: Option<u64>,
}

/// Marks the start of a run: its peaks count from here (the runs of a sweep
/// share the process).
pub fn run_begins() {
    SETUP.store(0, Ordering::Relaxed);
    RESTARTED.store(false, Ordering::Relaxed);
    restart_high_water_mark();
}

/// Marks the start of training steps (called again for each stage of a
/// run, the setup's peak is the highest read at any of them).
pub fn steps_begin() {
    let Some(now) = peak_rss() else { return };
    SETUP.fetch_max(now, Ordering::Relaxed);
    // SAFETY: a plain call into the allocator; no pointer is involved.
    unsafe { libmimalloc_sys::mi_collect(true) };
    if restart_high_water_mark() {
        RESTARTED.store(true, Ordering::Relaxed);
    }
}

/// Restarts `VmHWM` at the current resident memory; false where it cannot.
fn restart_high_water_mark() -> bool {
    match std::fs::write("/proc/self/clear_refs", "5") {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "peak memory is not measured apart for the steps");
            false
        }
    }
}

/// The process's peak, the setup's and the steps'.
pub fn peaks() -> Peaks {
    let now = peak_rss();
    let setup = Some(SETUP.load(Ordering::Relaxed)).filter(|&b| b > 0);
    let steps = now.filter(|_| RESTARTED.load(Ordering::Relaxed));
    Peaks {
        whole: now.max(setup),
        setup,
        steps,
    }
}
