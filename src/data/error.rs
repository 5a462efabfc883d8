//! Errors of the datasets: each names the file, the problem and the fix.

use std::path::PathBuf;

/// A dataset that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An index past the end.
    #[error("image {index} requested from a set of {len}")]
    OutOfBounds {
        /// Requested index.
        index: usize,
        /// Set size.
        len: usize,
    },
    /// A file that is missing or unreadable.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A file whose content is not what the format says.
    #[error("{path}: {detail}")]
    Corrupt {
        /// File.
        path: PathBuf,
        /// What is wrong and how to fix it.
        detail: String,
    },
    /// A dataset that is not where it was looked for.
    #[error("{0}")]
    Missing(String),
}
