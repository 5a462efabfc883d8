//! # sparse-core
//!
//! The mask engine of sparseburn: sparse training for any Burn 0.22 model,
//! unchanged.
//!
//! The four orthogonal pieces (after jaxpruner):
//! * [`distribution`]: how much each layer keeps (uniform, ER, ERK, global, explicit);
//! * [`schedule`]: when and how much (cubic GMP, update interval ΔT, cosine drop fraction);
//! * [`pattern`]: what shape a mask may take (unstructured, N:M, constant fan-in, blocks, channels);
//! * [`method::Method`]: which weights to drop and grow (implemented in `sparse-methods`).
//!
//! The [`Sparsifier`] hook ties them together: one call per training step after
//! `backward` masks the gradients, takes a mask-aware [`optim::MaskedOptimizer`]
//! step, re-applies the masks and runs the method's topology update when its
//! schedule says so. Any Burn optimizer can take the step instead
//! ([`Sparsifier::step_with`], [`SparseOptimizer`]). Masks are host bitsets ([`Mask`]) with a device copy next
//! to each weight; every decision is deterministic per (seed, weight path, step).

pub mod backend;
pub mod capture;
mod compact;
mod config_text;
mod context;
pub mod discovery;
pub mod distribution;
pub mod error;
pub mod formats;
pub mod grad_term;
pub mod host;
pub mod layer;
pub mod mask;
pub mod method;
pub mod optim;
mod param_value;
pub mod pattern;
pub mod plan;
pub mod reparam;
pub mod rng;
pub mod rounds;
pub mod schedule;
pub mod select;
pub mod shared;
pub mod sparse_init;
pub mod sparse_optimizer;
pub mod sparsifier;
pub mod state;
pub mod stats;
pub mod step_record;
mod traverse;
pub mod walk;

pub use backend::{BackendKind, device};
pub use discovery::{LayerFilter, discover};
pub use distribution::Distribution;
pub use error::{Result, SparseError};
pub use grad_term::GradTerm;
pub use layer::{LayerKind, SparseLayer};
pub use mask::Mask;
pub use method::{
    CompactRule, GradRequest, Growth, InitContext, IntoMethod, Method, MethodState, Needs, SparseExecution, StepContext,
};
pub use optim::{AdamSettings, MaskedOptimizer, OptimizerConfig, SgdSettings};
pub use pattern::Pattern;
pub use plan::{Plan, SparsityConfig};
pub use reparam::{ForwardRule, Reparameterize};
pub use rng::Rng;
pub use rounds::{Rewind, RoundDriver, Rounds};
pub use schedule::{DropFraction, DropSchedule, Ramp, SparsitySchedule, UpdateSchedule};
pub use shared::SharedSparsifier;
pub use sparse_init::SparseInit;
pub use sparse_optimizer::SparseOptimizer;
pub use sparsifier::Sparsifier;
pub use stats::SparsityReport;
pub use step_record::StepRecord;
