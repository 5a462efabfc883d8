//! Typed errors of sparse-core. Every variant names the problem and the fix.

use std::path::PathBuf;

/// Result type of sparse-core.
pub type Result<T, E = SparseError> = std::result::Result<T, E>;

/// Everything that can go wrong when configuring or running sparse training.
#[derive(Debug, thiserror::Error)]
pub enum SparseError {
    /// A sparsity outside `[0, 1)`.
    #[error("sparsity {sparsity} is outside [0, 1): use e.g. 0.9 for 90% zeros (1.0 would remove every weight)")]
    InvalidSparsity {
        /// The value given.
        sparsity: f64,
    },
    /// A density outside `(0, 1]`.
    #[error("{what}: density {density} is outside (0, 1]; a density is the kept fraction, e.g. 0.1 for 90% sparsity")]
    InvalidDensity {
        /// Where the density came from (a layer path or a setting).
        what: String,
        /// The value given.
        density: f64,
    },
    /// An N:M pattern whose M does not divide a layer's fan-in.
    #[error(
        "layer `{layer}`: N:M pattern {n}:{m} needs M to divide the fan-in {fan_in}; pick an M that divides {fan_in} or exclude the layer"
    )]
    NmDoesNotDivide {
        /// Weight path.
        layer: String,
        /// Kept per group.
        n: usize,
        /// Group size.
        m: usize,
        /// The layer's fan-in.
        fan_in: usize,
    },
    /// A block pattern that does not tile a layer.
    #[error(
        "layer `{layer}`: block {rows}x{cols} does not tile the {neurons}x{fan_in} (neurons x fan-in) weight; pick a block that divides both or exclude the layer"
    )]
    BlockDoesNotDivide {
        /// Weight path.
        layer: String,
        /// Block rows (neurons).
        rows: usize,
        /// Block columns (fan-in).
        cols: usize,
        /// Neurons of the layer.
        neurons: usize,
        /// Fan-in of the layer.
        fan_in: usize,
    },
    /// A structured pattern whose per-unit count rounds to zero.
    #[error(
        "layer `{layer}`: {pattern} at density {density:.5} leaves 0 {unit} (layer has {neurons} neurons, fan-in {fan_in}); raise this layer's density (e.g. with a per-layer override) or exclude it"
    )]
    RoundsToZero {
        /// Weight path.
        layer: String,
        /// Pattern name.
        pattern: String,
        /// What rounded to zero ("weights per neuron", "blocks", ...).
        unit: String,
        /// Requested density.
        density: f64,
        /// Neurons of the layer.
        neurons: usize,
        /// Fan-in of the layer.
        fan_in: usize,
    },
    /// A path or path pattern that matches no sparse weight.
    #[error("no sparse weight matches `{path}`; known sparse weights: {known}")]
    UnknownLayer {
        /// The path or pattern given.
        path: String,
        /// The known paths, comma separated (truncated).
        known: String,
    },
    /// The model has no weight that can be made sparse.
    #[error(
        "no sparsifiable weight found (conv and linear weights after include/exclude filters); check the filters or the model"
    )]
    NoLayers,
    /// A configuration that cannot work.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A state file saved from a different model.
    #[error("{file}: saved from another model ({detail}); load it into the model it was saved from")]
    StateMismatch {
        /// File path.
        file: PathBuf,
        /// What differs.
        detail: String,
    },
    /// A state file that cannot be parsed.
    #[error("{file}: not a valid sparseburn state file ({detail}); it may be truncated or from another program")]
    CorruptState {
        /// File path.
        file: PathBuf,
        /// Parser message.
        detail: String,
    },
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// File path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A backend name that is unknown or not compiled in.
    #[error("{0}")]
    Backend(String),
    /// Reading a tensor back from its device failed.
    #[error("reading a tensor from its device failed: {0}")]
    TensorRead(String),
    /// A data-driven method initialised without data.
    #[error(
        "this method scores weights with gradients on data: initialise with `Sparsifier::init_with(model, |model, request| ...)`"
    )]
    NeedsData,
    /// A method read data at a step where its `needs` did not ask for it.
    #[error("the method read {what} at step {step} without asking for them; set `{flag}` in its `needs` for that step")]
    NotRequested {
        /// What was read.
        what: &'static str,
        /// The step.
        step: u64,
        /// The flag that asks for it.
        flag: &'static str,
    },
    /// The state of a Burn optimizer could not be read or written through its record.
    #[error(
        "could not zero the optimizer state of changed weights through the Burn optimizer's record: {0}; this is a bug, please report it with the optimizer used (the built-in `OptimizerConfig` optimizers avoid the record)"
    )]
    OptimizerRecord(String),
    /// A method-specific error.
    #[error("{method}: {detail}")]
    Method {
        /// Method name.
        method: String,
        /// What went wrong.
        detail: String,
    },
}

impl SparseError {
    /// Builds an [`SparseError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// Builds a [`SparseError::Method`].
    pub fn method(method: &str, detail: impl Into<String>) -> Self {
        Self::Method {
            method: method.to_string(),
            detail: detail.into(),
        }
    }
}

/// Checks that `sparsity` lies in `[0, 1)`.
pub fn check_sparsity(sparsity: f64) -> Result<()> {
    if (0.0..1.0).contains(&sparsity) {
        Ok(())
    } else {
        Err(SparseError::InvalidSparsity { sparsity })
    }
}

/// Checks that `density` lies in `(0, 1]`.
pub fn check_density(what: &str, density: f64) -> Result<()> {
    if density > 0.0 && density <= 1.0 {
        Ok(())
    } else {
        Err(SparseError::InvalidDensity {
            what: what.to_string(),
            density,
        })
    }
}
