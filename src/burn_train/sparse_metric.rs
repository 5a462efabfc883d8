//! [`SparseMetric`]: sparsity, nonzeros and ITOP as burn-train metrics.

use std::sync::Arc;

use burn::tensor::TensorReadError;
use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::{
    Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes, NumericEntry, SerializedEntry,
};
use sparse_core::SharedSparsifier;

/// What a [`SparseMetric`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SparseQuantity {
    /// Share of pruned weights among the sparse layers' weights, in percent.
    Sparsity,
    /// Number of active (unpruned) weights in the sparse layers.
    Nonzeros,
    /// In-time over-parameterization rate (Liu et al. 2021): the share of the
    /// sparse layers' weights that have been active at some step so far.
    Itop,
}

impl SparseQuantity {
    fn name(self) -> &'static str {
        match self {
            Self::Sparsity => "Sparsity",
            Self::Nonzeros => "Nonzeros",
            Self::Itop => "ITOP",
        }
    }
}

/// A numeric burn-train training metric read from the shared sparse state
/// after each training iteration: it shows in burn-train's dashboard, in its
/// metric logs (`<artifacts>/train/epoch-<n>/<name>.log`) and summary, and
/// can drive early stopping. Its input is `()` (burn-train adapts every
/// output to it), so it works with any `TrainStep::Output`.
#[derive(Clone)]
pub struct SparseMetric {
    quantity: SparseQuantity,
    sparse: SharedSparsifier,
    name: Arc<String>,
    state: NumericMetricState,
}

impl SparseMetric {
    /// A metric reporting `quantity` of `sparse`.
    pub fn new(quantity: SparseQuantity, sparse: SharedSparsifier) -> Self {
        Self {
            quantity,
            sparse,
            name: Arc::new(quantity.name().to_string()),
            state: NumericMetricState::new(),
        }
    }

    /// The current value, read from the sparse state.
    pub fn read(&self) -> f64 {
        let sparse = self.sparse.lock();
        match self.quantity {
            SparseQuantity::Sparsity => 100.0 * sparse.report().sparsity(),
            SparseQuantity::Nonzeros => sparse.report().nonzeros() as f64,
            SparseQuantity::Itop => sparse.itop_rate(),
        }
    }

    fn format(&self) -> FormatOptions {
        let options = FormatOptions::new(self.name.clone());
        match self.quantity {
            SparseQuantity::Sparsity => options.unit("%").precision(2),
            SparseQuantity::Nonzeros => options.precision(0),
            SparseQuantity::Itop => options.precision(4),
        }
    }
}

impl Metric for SparseMetric {
    type Input = ();

    fn update(&mut self, _: &(), _: &MetricMetadata) -> Result<SerializedEntry, TensorReadError> {
        let value = self.read();
        // the state is a value at this step, not a mean over items: one item per update
        self.state.update(value, 1);
        Ok(self.state.compute_update(self.format()))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(self.state.compute_final(self.format()))
    }

    fn clear(&mut self) {
        self.state.reset();
    }

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: (self.quantity == SparseQuantity::Sparsity).then(|| "%".to_string()),
            higher_is_better: self.quantity == SparseQuantity::Itop,
        }
        .into()
    }
}

impl Numeric for SparseMetric {
    fn value(&self) -> Option<NumericEntry> {
        Some(self.state.current_value())
    }

    fn running_value(&self) -> Option<NumericEntry> {
        Some(self.state.running_value())
    }

    fn final_value(&self) -> NumericEntry {
        self.state.final_value()
    }
}
