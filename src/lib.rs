//! # sparseburn
//!
//! Sparse training for the [Burn](https://burn.dev) deep-learning framework:
//! dynamic sparse training (SET, RigL, SRigL, ...) and pruning (GMP, LTH, SNIP,
//! GraSP, ...) for any Burn model, with a few added lines.
//!
//! This crate is the facade: it re-exports
//! * [`sparse_core`]: masks, distributions, schedules, patterns, the step hook;
//! * [`sparse_methods`]: the algorithms;
//! * [`sparse_models`]: ResNet, MobileNetV1 and small baselines;
//!
//! and holds the datasets shared by the `sparseburn` CLI and the examples.

pub mod allocator;
pub mod burn_train;
pub mod cli;
pub mod data;
pub mod run;

pub use sparse_core;
pub use sparse_kernels;
pub use sparse_methods;
pub use sparse_models;

/// The names most programs need.
pub mod prelude {
    pub use sparse_core::{
        BackendKind, Distribution, DropFraction, LayerFilter, Mask, OptimizerConfig, Pattern, SharedSparsifier,
        SparseError, SparseOptimizer, Sparsifier, SparsityConfig, SparsitySchedule, UpdateSchedule,
    };
    pub use sparse_methods::{BuildContext, MethodConfig, RigL, RigLConfig, Set, SetConfig, StaticRandom};
}
