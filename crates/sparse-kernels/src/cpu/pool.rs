//! A parallel loop in which the calling thread works from the first moment
//! and never waits for a helper that has not started.
//!
//! `rayon::join` or a parallel iterator called from outside rayon's pool
//! hands the whole loop to the pool's workers and blocks the caller until a
//! worker wakes up, takes it and finishes: two thread wake-ups per call. On
//! the 2-vCPU VMs these benchmarks run on, waking a sleeping worker takes
//! 50–300 µs (`join` of two 20 µs tasks: 49 µs when the pool is hot, 286 µs
//! after 2 ms idle; the probe is in `docs/sparse-execution.md`), longer than
//! a whole batch-1 layer. Here the caller
//! claims tasks from a shared counter right away, and `helpers` jobs spawned
//! on rayon's pool claim from the same counter when (and if) they start.
//! When the tasks are gone, the caller cancels every helper that has not
//! started (it will find nothing to do, and touches nothing) and waits only
//! for those still running a task. So a late helper costs nothing, and an
//! early one shares the work.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const WAITING: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;

/// A task body with its lifetime erased: valid while a helper is `RUNNING`
/// (the caller does not return before every helper is `DONE`).
type Job = *const (dyn Fn(usize) + Sync + 'static);

struct Control {
    next: AtomicUsize,
    tasks: usize,
    helpers: Vec<AtomicU8>,
    job: Job,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

// SAFETY: `job` is a `Sync` closure, called by helpers only while the caller
// keeps it alive (see `Finish`); the rest is atomics and a mutex.
unsafe impl Send for Control {}
unsafe impl Sync for Control {}

impl Control {
    /// Claims and runs tasks until none is left.
    fn drain(&self, job: &(dyn Fn(usize) + Sync)) {
        loop {
            let t = self.next.fetch_add(1, Ordering::Relaxed);
            if t >= self.tasks {
                return;
            }
            job(t);
        }
    }

    /// Helper `i`'s part: nothing once cancelled.
    fn help(&self, i: usize) {
        let state = &self.helpers[i];
        if state
            .compare_exchange(WAITING, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        // SAFETY: RUNNING keeps the caller waiting (see `Finish`), so the job is alive.
        let job = unsafe { &*self.job };
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| self.drain(job))) {
            self.next.store(self.tasks, Ordering::Relaxed);
            if let Ok(mut slot) = self.panic.lock() {
                slot.get_or_insert(payload);
            }
        }
        state.store(DONE, Ordering::Release);
    }
}

/// Ends the loop on every path out of [`run`], unwinding included: no task
/// is claimed any more, helpers that have not started are cancelled, and
/// running ones are waited for, so none can call the job after `run` returns.
struct Finish<'a>(&'a Control);

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        let c = self.0;
        c.next.store(c.tasks, Ordering::Relaxed);
        for state in &c.helpers {
            if state
                .compare_exchange(WAITING, DONE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                continue;
            }
            let mut spins = 0u32;
            while state.load(Ordering::Acquire) != DONE {
                spins = spins.saturating_add(1);
                if spins < 1 << 12 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
    }
}

/// Runs `job(t)` for every task `t` in `0..tasks`, on the calling thread and
/// on up to `helpers` of rayon's workers (see the module docs). A panic in
/// any task is raised on the calling thread.
pub(crate) fn run(tasks: usize, helpers: usize, job: &(dyn Fn(usize) + Sync)) {
    let helpers = helpers.min(tasks.saturating_sub(1));
    if helpers == 0 {
        (0..tasks).for_each(job);
        return;
    }
    // SAFETY: only the lifetime is erased; `Finish` keeps every use within this call.
    let erased: Job = unsafe { std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), Job>(job) };
    let control = Arc::new(Control {
        next: AtomicUsize::new(0),
        tasks,
        helpers: (0..helpers).map(|_| AtomicU8::new(WAITING)).collect(),
        job: erased,
        panic: Mutex::new(None),
    });
    {
        // before any spawn: however this block is left, no helper outlives it
        let _finish = Finish(&control);
        for i in 0..helpers {
            let c = Arc::clone(&control);
            rayon::spawn(move || c.help(i));
        }
        control.drain(job);
    }
    let payload = control.panic.lock().ok().and_then(|mut p| p.take());
    if let Some(payload) = payload {
        resume_unwind(payload);
    }
}

#[cfg(test)]
mod tests {
    use super::run;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Every task runs exactly once, whatever the number of helpers.
    #[test]
    fn every_task_runs_once() {
        for (tasks, helpers) in [(0, 3), (1, 3), (2, 1), (7, 1), (64, 3), (1000, 8)] {
            let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
            run(tasks, helpers, &|t| {
                hits[t].fetch_add(1, Ordering::Relaxed);
            });
            assert!(
                hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                "{tasks} tasks, {helpers} helpers"
            );
        }
    }

    /// A panic in a task reaches the caller (and the loop still ends).
    #[test]
    fn a_panicking_task_panics_the_caller() {
        let caught = std::panic::catch_unwind(|| {
            run(64, 2, &|t| {
                if t == 40 {
                    panic!("task 40");
                }
            })
        });
        assert!(caught.is_err());
    }
}
