//! A run's peak resident memory, split where its training steps begin.
//!
//! The process's high-water mark (`VmHWM`) alone mixes the setup into the
//! steps: a run in sparse execution initialises the dense model (so that
//! both executions start from the same weights) and gathers it, so its
//! whole-run peak is the dense setup's even when its steps hold a tenth of
//! that. [`steps_begin`] (called by the runner before a run's first step)
//! keeps the peak so far as the setup's, hands what the calling thread's
//! allocator heap freed back to the OS (memory freed on other threads may
//! stay resident and count towards the steps), and restarts the kernel's
//! high-water mark (`/proc/self/clear_refs`, Linux ≥ 4.0), so that [`peaks`]
//! can tell the two apart. Later stages and rounds of the same run count as
//! steps. Where the mark cannot restart (not Linux, or a sandbox without
//! `clear_refs`), only the whole peak is known.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::bench::peak_rss;

/// `VmHWM` when the steps began (0: they have not).
static SETUP: AtomicU64 = AtomicU64::new(0);
/// Whether the steps of this run have begun.
static STEPS: AtomicBool = AtomicBool::new(false);
/// Whether the high-water mark restarted when they did.
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
    STEPS.store(false, Ordering::Relaxed);
    RESTARTED.store(false, Ordering::Relaxed);
    restart_high_water_mark();
}

/// Marks the start of the run's training steps; calls after the first (the
/// next stage or round of the run) change nothing.
pub fn steps_begin() {
    if STEPS.swap(true, Ordering::Relaxed) {
        return;
    }
    let Some(now) = peak_rss() else { return };
    SETUP.store(now, Ordering::Relaxed);
    // SAFETY: a plain call into the allocator; no pointer is involved.
    unsafe { libmimalloc_sys::mi_collect(true) };
    RESTARTED.store(restart_high_water_mark(), Ordering::Relaxed);
}

/// The run's peak, the setup's and the steps'.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Touches `mib` MiB and frees them.
    fn touch(mib: usize) {
        let v = vec![1u8; mib << 20];
        std::hint::black_box(&v);
    }

    /// 256 MiB touched in the setup count there, not in the steps, which see
    /// their own 16 MiB; a second `steps_begin` (the next stage) changes nothing.
    #[test]
    fn the_setup_peak_stays_out_of_the_steps() {
        run_begins();
        if !restart_high_water_mark() {
            return; // no clear_refs here: nothing is split to check
        }
        let start = peak_rss().expect("Linux");
        touch(256);
        steps_begin();
        touch(16);
        steps_begin();
        let p = peaks();
        let (setup, steps) = (p.setup.unwrap(), p.steps.unwrap());
        let mib = 1 << 20;
        // (slack: tests beside this one free memory while it runs)
        assert!(setup >= start + 192 * mib, "{p:?} from {start}");
        assert!(steps + 128 * mib < setup, "{p:?}");
        assert!(steps >= 16 * mib, "{p:?}");
        assert_eq!(p.whole, Some(setup.max(steps)));
    }
}
