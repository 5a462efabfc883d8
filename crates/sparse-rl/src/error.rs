//! Typed errors of sparse-rl. Every variant names the problem and the fix.

use std::path::PathBuf;

/// Result type of sparse-rl.
pub type Result<T, E = RlError> = std::result::Result<T, E>;

/// Everything that can go wrong with an environment or an agent.
#[derive(Debug, thiserror::Error)]
pub enum RlError {
    /// An environment name that is not implemented.
    #[error("unknown environment `{name}`; known environments: {known}")]
    UnknownEnv {
        /// The name given.
        name: String,
        /// The known names, comma separated.
        known: String,
    },
    /// An action outside the action set.
    #[error("{env}: action {action} is outside the action set 0..{actions}")]
    InvalidAction {
        /// Environment name.
        env: String,
        /// The action given.
        action: usize,
        /// Number of actions.
        actions: usize,
    },
    /// `step` called before the first `reset` or after the episode ended.
    #[error("{env}: step called {when}; call reset() first")]
    NeedsReset {
        /// Environment name.
        env: String,
        /// "before the first reset" or "after the episode ended".
        when: &'static str,
    },
    /// A snapshot of another environment.
    #[error(
        "cannot restore a {found} snapshot into a {expected} environment; restore it into the environment it was saved from"
    )]
    SnapshotMismatch {
        /// This environment.
        expected: String,
        /// The snapshot's environment.
        found: String,
    },
    /// A configuration that cannot work.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// File path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A saved file that cannot be parsed.
    #[error("{path}: not a valid sparse-rl state file ({detail}); it may be truncated or from another program")]
    CorruptState {
        /// File path.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// An error of the sparse-training hook.
    #[cfg(feature = "agent")]
    #[error(transparent)]
    Sparse(#[from] sparse_core::SparseError),
}

impl RlError {
    /// An [`RlError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
