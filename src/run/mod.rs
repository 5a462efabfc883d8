//! The `sparseburn` commands as a library: `train`, `sweep`, `info`, used by the
//! CLI binary and the examples.

pub mod artifacts;
pub mod config;
pub mod info;
pub mod lr;
pub mod models;
pub mod plots;
pub mod report;
pub mod sweep;
pub mod train;

pub use artifacts::Summary;
pub use config::RunConfig;
pub use train::{Interrupted, TrainOptions, train};
