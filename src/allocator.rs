//! The `sparseburn` binary's allocator, mimalloc, and the two settings that
//! let a run in sparse execution hold memory in proportion to its nonzeros.
//!
//! Burn allocates a fresh buffer per tensor operation; mimalloc reuses them
//! (conv training runs about a quarter faster than with the system
//! allocator). With its defaults on Linux it commits each 1 GiB arena
//! eagerly and returns freed pages to the OS only after a delay (1 s in
//! mimalloc 3). At 99% sparsity the model and its state take a few MiB, and
//! those pages become most of the process: the wide MLP's sparse steps
//! peaked at 16% of the masked-dense peak with the defaults and at 7.6–8.6%
//! with both settings below (`docs/sparse-execution.md`, "Measured: the full
//! training step and its memory").
//!
//! * [`commit_arenas_on_demand`]: arenas commit memory as it is used. It
//!   must run before the first allocation reserves an arena, so the binary
//!   calls it from a constructor (`src/main.rs`). It cost no measurable
//!   speed.
//! * [`PurgeAtOnce`]: freed memory goes back to the OS at once, while a run
//!   trains in sparse execution (`src/run/train/stepper.rs`). It costs the
//!   sparse step up to a fifth of its time on the 2-vCPU VMs measured, so
//!   masked-dense runs keep the delay.
//!
//! Both change mimalloc's *defaults*: `MIMALLOC_ARENA_EAGER_COMMIT` and
//! `MIMALLOC_PURGE_DELAY` set in the environment win. In a program whose
//! global allocator is not mimalloc they change nothing that allocates.

use std::ffi::{c_int, c_long};

/// `mi_option_arena_eager_commit` (`mi_option_e` in mimalloc 3's
/// `mimalloc.h`; libmimalloc-sys exports no constant for it).
const ARENA_EAGER_COMMIT: c_int = 4;
/// `mi_option_purge_delay` (as above), in milliseconds.
const PURGE_DELAY: c_int = 15;

/// Makes mimalloc's arenas commit memory as it is used rather than when
/// they are reserved (unless `MIMALLOC_ARENA_EAGER_COMMIT` says otherwise).
/// Call before the process allocates, e.g. from an `.init_array` constructor
/// (it uses nothing of `std` and cannot unwind).
pub extern "C" fn commit_arenas_on_demand() {
    // SAFETY: writes one integer of mimalloc's option table (mimalloc calls its
    // option setters "not thread safe": a concurrent reader sees the old or the
    // new value, both valid); no pointer is involved.
    unsafe { libmimalloc_sys::mi_option_set_default(ARENA_EAGER_COMMIT, 0) }
}

/// While it lives, mimalloc returns freed memory to the OS at once (unless
/// `MIMALLOC_PURGE_DELAY` says otherwise); dropping it restores the delay
/// it found. The setting is the process's: guards on several threads at
/// once would restore in the order they drop (the CLI holds one, around a
/// run's sparse steps).
#[derive(Debug)]
pub struct PurgeAtOnce {
    before: c_long,
}

impl PurgeAtOnce {
    /// Starts purging at once.
    pub fn start() -> Self {
        Self {
            before: set_purge_delay(0),
        }
    }
}

impl Drop for PurgeAtOnce {
    fn drop(&mut self) {
        set_purge_delay(self.before);
    }
}

/// Sets the purge delay's default to `ms`; returns the delay in effect before.
fn set_purge_delay(ms: c_long) -> c_long {
    // SAFETY: reads and writes one integer of mimalloc's option table (as in
    // `commit_arenas_on_demand`: threads reading it see the old or the new
    // delay, both valid).
    unsafe {
        let before = libmimalloc_sys::mi_option_get(PURGE_DELAY);
        libmimalloc_sys::mi_option_set_default(PURGE_DELAY, ms);
        before
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// The tests read and write the process's option table one at a time.
    static OPTIONS: Mutex<()> = Mutex::new(());

    fn option(number: c_int) -> c_long {
        // SAFETY: reads an integer from mimalloc's option table.
        unsafe { libmimalloc_sys::mi_option_get(number) }
    }

    #[test]
    fn purging_at_once_lasts_while_the_guard_lives() {
        let _one = OPTIONS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = option(PURGE_DELAY);
        {
            let _lean = PurgeAtOnce::start();
            let expected = if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
                before
            } else {
                0
            };
            assert_eq!(option(PURGE_DELAY), expected, "the environment's setting wins, else 0");
        }
        assert_eq!(option(PURGE_DELAY), before);
    }

    #[test]
    fn the_option_numbers_are_mimallocs() {
        // mimalloc 3's defaults tell the two options apart from every other one:
        // arena_eager_commit is 2 (commit where the OS overcommits), purge_delay 1000 ms
        let _one = OPTIONS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none() {
            assert_eq!(
                option(ARENA_EAGER_COMMIT),
                2,
                "option {ARENA_EAGER_COMMIT} is not arena_eager_commit"
            );
        }
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(option(PURGE_DELAY), 1000, "option {PURGE_DELAY} is not purge_delay");
        }
    }
}
