//! # sparse-methods
//!
//! Sparse-training algorithms for sparseburn, one file each, each implementing
//! [`sparse_core::Method`], and the [`registry`] that builds any of them from
//! its config (the same for the CLI, config files and library users). Every
//! file's doc comment gives the paper, the equation, the defaults, every switch
//! and any deviation from the reference.
//!
//! | method | file | kind |
//! |---|---|---|
//! | dense baseline | [`dense`] | no mask |
//! | static random | [`static_random`] | fixed random mask |
//! | SNIP | [`snip`] | pruning at initialisation |
//! | GraSP | [`grasp`] | pruning at initialisation |
//! | LTH, IMP + rewinding, one-shot + fine-tuning | [`lth`] | iterative pruning (rounds) |
//! | GMP | [`gmp`] | gradual pruning |
//! | SET | [`set`] | dynamic sparse training ([`drop_grow`]) |
//! | RigL | [`rigl`] | dynamic sparse training ([`drop_grow`]) |
//! | SRigL | [`srigl`] | structured DST, constant fan-in ([`drop_grow`]) |
//! | MEST | [`mest`] | memory-economic DST ([`drop_grow`]) |
//! | AutoSparse | [`autosparse`] | learnable thresholds (reparameterizes the model) |
//! | SR-STE | [`srste`] | N:M from scratch (reparameterizes the model) |
//! | L1 / group lasso | [`regularization`] | a gradient term for any method |

pub mod autosparse;
pub mod dense;
pub mod drop_grow;
pub mod gmp;
pub mod grad_window;
pub mod grasp;
pub mod lth;
pub mod mest;
pub mod oneshot;
pub mod registry;
pub mod regularization;
pub mod rigl;
pub mod scores;
pub mod set;
pub mod snip;
pub mod srigl;
pub mod srste;
pub mod static_random;

pub use autosparse::{AutoSparse, AutoSparseConfig};
pub use dense::{Dense, DenseConfig};
pub use drop_grow::{DropGrow, DropGrowMethod};
pub use gmp::{Gmp, GmpConfig};
pub use grasp::{Grasp, GraspConfig};
pub use lth::{Lth, LthConfig, LthCount, OneShotConfig, OutputLayer, Rewind, RewindKind};
pub use mest::{Mest, MestConfig};
pub use registry::{BuildContext, MethodConfig, MethodSpec, Registered, SparsityDefaults, Switch};
pub use regularization::{Penalty, Regularization, RegularizationConfig};
pub use rigl::{RigL, RigLConfig};
pub use set::{Set, SetConfig};
pub use snip::{Snip, SnipConfig};
pub use srigl::{SRigL, SRigLConfig};
pub use srste::{SrSte, SrSteConfig};
pub use static_random::{StaticConfig, StaticRandom};
