//! Errors of model construction and weight import.

use std::path::PathBuf;

/// A model that cannot be built or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A configuration that cannot work.
    #[error("invalid model configuration: {0}")]
    InvalidConfig(String),
    /// An input shape or class count too large (or zero) to build and count a model for.
    #[error("input {input}: {detail}")]
    Input {
        /// The input, `CxHxW`.
        input: String,
        /// What is wrong, the limit and the fix.
        detail: String,
    },
    /// A weight file that cannot be read.
    #[error("{path}: {detail}")]
    File {
        /// File.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A parameter with no tensor in the file.
    #[error(
        "{path}: no tensor `{key}` for parameter `{param}`; is this a torchvision checkpoint of the same architecture?"
    )]
    MissingKey {
        /// File.
        path: PathBuf,
        /// Expected key.
        key: String,
        /// Our parameter path.
        param: String,
    },
    /// A tensor whose shape does not fit.
    #[error(
        "{path}: tensor `{key}` has shape {found:?}, parameter `{param}` needs {expected:?} (in PyTorch layout); wrong depth, width or number of classes?"
    )]
    ShapeMismatch {
        /// File.
        path: PathBuf,
        /// Key in the file.
        key: String,
        /// Our parameter path.
        param: String,
        /// Shape in the file.
        found: Vec<usize>,
        /// Shape expected, PyTorch layout.
        expected: Vec<usize>,
    },
}
