//! # sparse-methods
//!
//! Sparse-training algorithms for sparseburn, one file each, each implementing
//! [`sparse_core::Method`]. Every file's doc comment gives the paper, the
//! equation, the defaults, every switch and any deviation from the reference.
//!
//! | method | file | kind |
//! |---|---|---|
//! | static random | [`static_random`] | fixed random mask |
//! | SNIP | [`snip`] | pruning at initialisation |
//! | GraSP | [`grasp`] | pruning at initialisation |
//! | LTH, IMP + rewinding, one-shot + fine-tuning | [`lth`] | iterative pruning driver |
//! | GMP | [`gmp`] | gradual pruning |
//! | SET | [`set`] | dynamic sparse training |
//! | RigL | [`rigl`] | dynamic sparse training |
//! | SRigL | [`srigl`] | structured DST (constant fan-in) |
//! | AutoSparse | [`autosparse`] | learnable thresholds |
//! | MEST | [`mest`] | memory-economic DST |
//! | SR-STE | [`srste`] | N:M from scratch |
//! | L1 / group lasso | [`regularization`] | penalty, wraps any method |

pub mod autosparse;
pub mod gmp;
pub mod grasp;
pub mod init;
pub mod lth;
pub mod mest;
pub mod oneshot;
pub mod regularization;
pub mod rigl;
pub mod set;
pub mod snip;
pub mod srigl;
pub mod srste;
pub mod static_random;

pub use autosparse::{AutoSparse, AutoSparseConfig};
pub use gmp::{Gmp, GmpConfig};
pub use grasp::{Grasp, GraspConfig};
pub use lth::{FixedMask, LthConfig, Rewind};
pub use mest::{Mest, MestConfig};
pub use regularization::{Penalty, RegularizationConfig, Regularized};
pub use rigl::{RigL, RigLConfig};
pub use set::{Set, SetConfig};
pub use snip::Snip;
pub use srigl::{SRigL, SRigLConfig};
pub use srste::{SrSte, SrSteConfig};
pub use static_random::StaticRandom;
