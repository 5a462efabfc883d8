//! The `sparseburn` commands as a library: `train`, `sweep`, `info`, used by the
//! CLI binary and the examples.

pub mod artifacts;
pub mod bench;
pub mod bench_lm;
pub mod cgroup;
pub mod config;
pub mod execution;
pub mod export;
pub mod export_lm;
pub mod finite;
pub mod folder_state;
pub mod infer;
pub mod info;
pub mod lock;
pub mod lr;
pub mod memory;
pub mod models;
pub mod peak;
pub mod plots;
pub mod prune;
pub mod recipe;
pub mod report;
pub mod sweep;
pub mod task_kind;
pub mod train;

pub use artifacts::Summary;
pub use config::RunConfig;
pub use task_kind::TaskKind;
pub use train::{Interrupted, TrainOptions, train};
