//! An exclusive lock on a run folder or a sweep folder, so that two processes
//! never write into the same folder (mixed `metrics.csv` rows, duplicated
//! epochs, a sweep deleting another's run).
//!
//! The lock is the operating system's advisory file lock (`flock` on Unix,
//! `LockFileEx` on Windows) on `<folder>/.lock`, taken with the standard
//! library's [`File::try_lock`] (stable since Rust 1.89; the same system calls
//! the `fs4` and `fd-lock` crates wrap, so no crate is needed). The system drops
//! it when the process ends, however it ends, so a lock left by a killed process
//! never blocks: only a live process holds one. The file keeps the holder's
//! process id, for the refusal message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file inside a locked folder.
pub const LOCK_FILE: &str = ".lock";

/// A folder that another live process holds.
#[derive(Debug, thiserror::Error)]
#[error(
    "{} is in use by another sparseburn process{}; wait for it to finish (or stop it), or choose another --out",
    dir.display(),
    holder.map(|p| format!(" (pid {p})")).unwrap_or_default()
)]
pub struct InUse {
    /// The folder.
    pub dir: PathBuf,
    /// The holder's process id, when it has written it yet.
    pub holder: Option<u32>,
}

/// The held lock of a folder; dropping it releases the lock.
#[derive(Debug)]
pub struct FolderLock {
    _file: File,
}

fn pid_in(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// The holder's process id, waiting up to 100 ms for it: a holder writes it
/// just after taking the lock, so a process refused in between would read
/// an empty file.
fn holder_pid(file: &mut File) -> Option<u32> {
    for _ in 0..20 {
        if let Some(pid) = pid_in(file) {
            return Some(pid);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    pid_in(file)
}

impl FolderLock {
    /// Locks `dir` (which must exist) for this process, or refuses with [`InUse`]
    /// naming the process that holds it.
    pub fn acquire(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("cannot create the lock file {}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(InUse {
                    dir: dir.to_path_buf(),
                    holder: holder_pid(&mut file),
                }
                .into());
            }
            Err(TryLockError::Error(e)) => anyhow::bail!("cannot lock {}: {e}", path.display()),
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        Ok(Self { _file: file })
    }

    /// Refuses with [`InUse`] when another process holds the lock of `dir`;
    /// creates and changes nothing.
    pub fn check_free(dir: &Path) -> anyhow::Result<()> {
        let Ok(mut file) = File::open(dir.join(LOCK_FILE)) else {
            return Ok(()); // never locked
        };
        match file.try_lock() {
            Err(TryLockError::WouldBlock) => Err(InUse {
                dir: dir.to_path_buf(),
                holder: holder_pid(&mut file),
            }
            .into()),
            _ => Ok(()), // free (released when `file` drops), or a file system without locks
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_and_a_released_lock_is_free() {
        let tmp = tempfile::tempdir().unwrap();
        let first = FolderLock::acquire(tmp.path()).unwrap();
        // a second open file description conflicts like a second process would
        let err = FolderLock::acquire(tmp.path()).unwrap_err();
        let in_use = err.downcast_ref::<InUse>().expect("InUse");
        assert_eq!(in_use.holder, Some(std::process::id()));
        assert!(
            err.to_string().contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(FolderLock::check_free(tmp.path()).is_err());
        drop(first);
        FolderLock::check_free(tmp.path()).unwrap();
        FolderLock::acquire(tmp.path()).unwrap();
    }
}
