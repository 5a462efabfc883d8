//! Training in sparse execution (issue 10, part 2): a sparse layer's weights,
//! gradient and optimizer moments kept as vectors of its active values, with
//! no dense copy between steps.
//!
//! * [`pattern`]: the CSR plan of a mask, built from the mask alone, and the
//!   map between the entries of two plans (for topology updates);
//! * [`sparse_param`]: [`SparseParam`], one layer's structure, values and
//!   optimizer state, its optimizer step and its re-alignment to a new mask;
//! * [`growth`]: RigL's gradient growth as a tiled top-`k` of `|Xᵀ·dY|`,
//!   without the dense gradient.
//!
//! The design (execution modes, which methods can run sparse, what comes
//! next) is in `docs/sparse-execution.md`, "Training in sparse execution".

pub mod compact_linear;
pub mod compact_state;
pub mod compact_step;
pub mod growth;
pub mod pattern;
pub mod sparse_param;

pub use compact_linear::CompactLinear;
pub use compact_state::{compact_state, dense_state};
pub use compact_step::{CompactModel, compact_prepare, compact_step};
pub use sparse_param::SparseParam;
