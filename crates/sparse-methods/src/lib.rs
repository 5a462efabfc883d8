//! # sparse-methods
//!
//! Sparse-training algorithms for sparseburn, one file each, each implementing
//! [`sparse_core::Method`]. Every file's doc comment gives the paper, the
//! equation, the defaults, every switch and any deviation from the reference.

pub mod init;
pub mod rigl;
pub mod set;
pub mod static_random;

pub use rigl::{RigL, RigLConfig};
pub use set::{Set, SetConfig};
pub use static_random::StaticRandom;
