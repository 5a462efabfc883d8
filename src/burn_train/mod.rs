//! burn-train, first class: one call turns a `SupervisedTraining` setup sparse.
//!
//! ```ignore
//! let training = SupervisedTraining::new(dir, loader_train, loader_valid)
//!     .metrics((AccuracyMetric::new(), LossMetric::new()))
//!     .with_default_checkpointers()
//!     .num_epochs(10);
//! let (training, model) = sparsify(training, model, SparsityConfig::new().with_sparsity(0.9), rigl)?;
//! let result = training.launch(Learner::new(model, AdamWConfig::new().init(), 1e-3));
//! ```
//!
//! The user's model needs nothing new: its own `TrainStep::step` and
//! `InferenceStep::step`, and Burn's own optimizer (any of them) in the
//! `Learner`. Design, and why: [docs/architecture.md](../../docs/architecture.md#burn-train-first-class).
//!
//! - [`SparseModel`] wraps the model. burn-train 0.22.1 calls exactly three
//!   things on a model that we need to change: `TrainStep::optimize` (and
//!   `optimize_multi`) once per optimizer step, with its `ModuleOptimizer`;
//!   `Module::into_record` when it checkpoints; `Module::load_record` when it
//!   resumes. A wrapper module is the one place where all three can be
//!   overridden without touching the user's type, and it keeps the user's
//!   parameter paths (it adds no path segment).
//! - [`SparseMetric`]s (sparsity, nonzeros, ITOP) are registered as training
//!   metrics.
//! - The run's `Interrupter` is given to the wrapper: `optimize` returns the
//!   model, not a `Result`, and burn-train's `TrainingError` has no variant for a
//!   user's error, so a failed sparse step stops the run (reason: the error's
//!   message, in `LearningResult::interrupted`) and the typed error is kept for
//!   [`SparseModel::take_error`].
//! - Devices: one, or burn-train's `MultiDevice` strategy, which steps its one
//!   model once per optimizer step from the devices' summed gradients (one
//!   topology decision, every replica forked from the result).
//!   `DistributedDataParallel` steps every replica separately: the first
//!   replica to reach a step takes the one topology decision, the others
//!   replay it on their own weights and optimizer; see
//!   docs/architecture.md#multi-device.

mod record;
mod sparse_metric;
mod sparse_model;

use burn::train::{LearnerModel, SupervisedTraining};
use sparse_core::{IntoMethod, SharedSparsifier, Sparsifier, SparsityConfig};

pub use record::STATE_TENSOR;
pub use sparse_metric::{SparseMetric, SparseQuantity};
pub use sparse_model::SparseModel;

/// Makes a burn-train setup sparse: discovers the sparse weights of `model`
/// (`config`), sets their initial masks with `method`, wraps the model in a
/// [`SparseModel`], registers sparsity, nonzeros and ITOP as training metrics
/// of `training` and hands the run's interrupter to the model. Launch the
/// returned training with `Learner::new(model, any_burn_optimizer, lr)`.
///
/// Resuming (`training.checkpoint(epoch)` with `with_default_checkpointers`)
/// restores the sparse state with the model: call `sparsify` the same way on a
/// model built the same way, and burn-train's checkpoint overrides both.
pub fn sparsify<M: LearnerModel>(
    training: SupervisedTraining<SparseModel<M>>,
    model: M,
    config: SparsityConfig,
    method: impl IntoMethod,
) -> sparse_core::Result<(SupervisedTraining<SparseModel<M>>, SparseModel<M>)> {
    let mut sparsifier = Sparsifier::for_burn_optimizer(&model, config, method)?;
    let model = sparsifier.init(model)?;
    Ok(wrap(training, model, SharedSparsifier::new(sparsifier)))
}

/// [`sparsify`] for a sparsifier already set up (e.g. initialized with data by
/// `Sparsifier::init_with` for SNIP or GraSP): `model` must be the model it
/// returned.
pub fn wrap<M: LearnerModel>(
    training: SupervisedTraining<SparseModel<M>>,
    model: M,
    sparse: SharedSparsifier,
) -> (SupervisedTraining<SparseModel<M>>, SparseModel<M>) {
    let training = training
        .metric_train_numeric(SparseMetric::new(SparseQuantity::Sparsity, sparse.clone()))
        .metric_train_numeric(SparseMetric::new(SparseQuantity::Nonzeros, sparse.clone()))
        .metric_train_numeric(SparseMetric::new(SparseQuantity::Itop, sparse.clone()));
    let model = SparseModel::new(model, sparse, Some(training.interrupter()));
    (training, model)
}
