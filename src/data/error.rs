//! Errors of the datasets: each is one line that names the file (or the
//! setting), the problem and the fix.

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
    /// A file or folder that cannot be read. The OS message is part of this
    /// error's text and deliberately not its `source()`, so a report that
    /// prints the whole chain shows it once.
    #[error("{path}: {cause}; check that it exists and is readable")]
    Io {
        /// File.
        path: PathBuf,
        /// The OS error.
        cause: std::io::Error,
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
    /// A setting, or a pair of train and test sets, that cannot work; the
    /// message names the setting or the files and the fix.
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    /// An [`DataError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            cause,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_os_message_appears_once_in_the_whole_chain() {
        let e = anyhow::Error::from(DataError::io("/d/f", std::io::Error::from_raw_os_error(5)));
        let text = format!("{e:#}");
        let os = std::io::Error::from_raw_os_error(5).to_string();
        assert_eq!(text.matches(&os).count(), 1, "{text}");
        assert!(text.starts_with("/d/f: ") && text.contains("readable"), "{text}");
    }
}
