//! What an existing run folder holds, and opening one for a new run or a resume
//! under its [`FolderLock`]:
//!
//! - *empty* (or only a lock file): a new run starts in it;
//! - *unstarted*: a run that was stopped (killed, a full disk, Ctrl-C in a round)
//!   before its first checkpoint was written. It has nothing to continue from, so
//!   both `train --out` and `train --resume` start it again from the beginning,
//!   and say so;
//! - *started* (a checkpoint or a summary) or anything else: kept; a new run is
//!   refused, `--resume` continues it.

use std::path::Path;

use anyhow::{Context, bail};

use super::artifacts::RunDir;
use super::lock::{FolderLock, LOCK_FILE};

/// What a run folder holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FolderState {
    /// Missing, empty, or only a lock file.
    Empty,
    /// A run's files, but no checkpoint and no summary.
    Unstarted,
    /// A checkpoint, a summary, or files that are not a run's.
    Other,
}

/// The files a run writes before its first checkpoint (and what a killed atomic
/// write leaves: tempfile's `.tmp*` files, `checkpoint.tmp`).
const EARLY_FILES: [&str; 6] = [
    "config.toml",
    "metrics.csv",
    "masks",
    "plots",
    "report.md",
    "checkpoint.tmp",
];

fn is_early(name: &str) -> bool {
    EARLY_FILES.contains(&name) || name.starts_with(".tmp")
}

/// What `path` holds.
pub fn folder_state(path: &Path) -> FolderState {
    let Ok(entries) = std::fs::read_dir(path) else {
        return if path.exists() {
            FolderState::Other
        } else {
            FolderState::Empty
        };
    };
    let names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != LOCK_FILE)
        .collect();
    if names.is_empty() {
        FolderState::Empty
    } else if names.iter().all(|n| is_early(n)) && names.iter().any(|n| n == "config.toml" || n.starts_with(".tmp")) {
        // (only `.tmp*` files: killed while writing config.toml)
        FolderState::Unstarted
    } else {
        FolderState::Other
    }
}

/// Removes what an unstarted run wrote (never anything else); `config.toml`
/// last (or not at all, with `keep_config`: a resume keeps the run's settings),
/// so a kill in the middle leaves a folder that is still unstarted.
fn clear_unstarted(path: &Path, keep_config: bool) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(path)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_early(n) && !(keep_config && n == "config.toml"))
        .collect();
    entries.sort_by_key(|n| n == "config.toml");
    for name in entries {
        let p = path.join(&name);
        if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        }
        .with_context(|| format!("removing {}", p.display()))?;
    }
    Ok(())
}

fn epochs_in_metrics(dir: &RunDir) -> usize {
    dir.read_metrics().map_or(0, |rows| rows.len())
}

/// The note for a run started again from the beginning.
fn restart_note(dir: &RunDir) -> String {
    let epochs = epochs_in_metrics(dir);
    let lost = if epochs > 0 {
        format!(" ({epochs} epoch(s) in metrics.csv had no checkpoint and are trained again)")
    } else {
        String::new()
    };
    format!(
        "{} stopped before its first checkpoint was written{lost}; starting it again from the beginning",
        dir.path.display()
    )
}

/// A run folder opened under its lock.
pub struct Opened {
    /// The folder.
    pub dir: RunDir,
    /// Its lock, held as long as this value lives.
    pub lock: FolderLock,
    /// Whether the run continues from its checkpoint (else it starts at step 0).
    pub resume: bool,
    /// Said to the user: the run starts again from the beginning, and why.
    pub note: Option<String>,
}

/// Opens `path` for a new run: creates it, locks it, and starts again a run that
/// never reached its first checkpoint; refuses a folder in use or with a started run.
pub fn open_new(path: &Path) -> anyhow::Result<Opened> {
    FolderLock::check_free(path)?;
    let refuse = || {
        anyhow::anyhow!(
            "{} already exists; choose another --out, or continue it with --resume {}",
            path.display(),
            path.display()
        )
    };
    if folder_state(path) == FolderState::Other {
        return Err(refuse());
    }
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    let lock = FolderLock::acquire(path)?;
    let dir = RunDir {
        path: path.to_path_buf(),
    };
    let note = match folder_state(path) {
        FolderState::Empty => None,
        FolderState::Unstarted => {
            let note = restart_note(&dir);
            clear_unstarted(path, false)?;
            Some(note)
        }
        FolderState::Other => return Err(refuse()),
    };
    Ok(Opened {
        dir,
        lock,
        resume: false,
        note,
    })
}

/// Opens `path` to resume it: locks it; a run without a checkpoint starts again
/// from the beginning (with a note), one with a checkpoint continues.
pub fn open_resume(path: &Path) -> anyhow::Result<Opened> {
    if !path.join("config.toml").is_file() {
        bail!("{} is not a sparseburn run folder (no config.toml)", path.display());
    }
    let lock = FolderLock::acquire(path)?;
    let dir = RunDir {
        path: path.to_path_buf(),
    };
    if dir.checkpoint().join("trainer.json").is_file() {
        return Ok(Opened {
            dir,
            lock,
            resume: true,
            note: None,
        });
    }
    if folder_state(path) != FolderState::Unstarted {
        bail!(
            "{} has no checkpoint to resume from but holds files that are not an unstarted run's; move them away or train into another --out",
            path.display()
        );
    }
    let note = restart_note(&dir);
    clear_unstarted(path, true)?;
    Ok(Opened {
        dir,
        lock,
        resume: false,
        note: Some(note),
    })
}

/// Prepares a run that trains in rounds, opened for `--resume`, to start again:
/// such runs keep no checkpoint to continue from (their only checkpoint is
/// written after the last round, and one without `summary.json` was stopped
/// before the summary). Removes the checkpoint and the early files but
/// `config.toml`; refuses a finished run. Returns the note for the user.
pub fn restart_rounds(dir: &RunDir) -> anyhow::Result<String> {
    if dir.file("summary.json").is_file() {
        bail!(
            "{} is finished (it has summary.json): nothing to resume",
            dir.path.display()
        );
    }
    let note = format!(
        "{} trains in rounds and keeps no checkpoint to continue from; starting it again from the beginning",
        dir.path.display()
    );
    for name in ["checkpoint", "checkpoint.old"] {
        let p = dir.file(name);
        if p.exists() {
            std::fs::remove_dir_all(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    clear_unstarted(&dir.path, true)?;
    Ok(note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_without_checkpoint_is_unstarted_and_one_with_a_checkpoint_or_foreign_files_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("run");
        assert_eq!(folder_state(&p), FolderState::Empty);
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join(LOCK_FILE), "1").unwrap();
        assert_eq!(folder_state(&p), FolderState::Empty);
        std::fs::write(p.join(".tmpAbC123"), "").unwrap();
        assert_eq!(folder_state(&p), FolderState::Unstarted);
        std::fs::write(p.join("config.toml"), "").unwrap();
        std::fs::write(p.join("metrics.csv"), "").unwrap();
        std::fs::create_dir(p.join("checkpoint.tmp")).unwrap();
        assert_eq!(folder_state(&p), FolderState::Unstarted);
        std::fs::create_dir(p.join("checkpoint")).unwrap();
        assert_eq!(folder_state(&p), FolderState::Other);
        std::fs::remove_dir(p.join("checkpoint")).unwrap();
        std::fs::write(p.join("thesis.tex"), "").unwrap();
        assert_eq!(folder_state(&p), FolderState::Other);
    }

    #[test]
    fn starting_an_unstarted_run_again_removes_only_its_own_files() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("run");
        std::fs::create_dir_all(p.join("masks")).unwrap();
        std::fs::write(p.join("config.toml"), "").unwrap();
        std::fs::write(p.join("metrics.csv"), "").unwrap();
        let opened = open_new(&p).unwrap();
        assert!(opened.note.unwrap().contains("before its first checkpoint"));
        let left: Vec<_> = std::fs::read_dir(&p)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, vec![LOCK_FILE.to_string()]);
    }
}
