//! The `Method` trait: what a sparse-training algorithm implements.
//!
//! A method decides masks: once at initialisation (possibly from data or
//! gradients) and then at the steps it asks for, seeing the weights and the
//! dense gradient of every sparse layer as host vectors. Everything else (masking
//! gradients, the optimizer step, re-masking, resetting optimizer state of
//! changed weights, bookkeeping) is done by the [`crate::Sparsifier`] hook.
//!
//! The common case implements [`Method::name`], [`Method::init`] and, for a
//! method that changes masks during training, [`Method::needs`] and
//! [`Method::on_step`]. Callers learn what else a method requires from its
//! properties ([`Method::needs_data_for_init`], [`Method::is_dense`],
//! [`Method::rounds`], [`Method::reparameterization`]), never from its name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::context::{GradRequest, GradientOracle, InitContext, StepContext};
use crate::error::Result;
use crate::mask::Mask;
use crate::plan::Plan;
use crate::reparam::Reparameterize;
pub use crate::rounds::{Rewind, Rounds};
use crate::sparse_init::SparseInit;

/// What a method needs at a step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// Call [`Method::on_step`] with the dense gradients of the sparse weights.
    pub grads: bool,
    /// Call [`Method::on_step`] with the current weights; it may change masks.
    pub update: bool,
    /// Skip the optimizer step on this step (the topology update then sees the
    /// weights before the step, as rigl's TF reference and jaxpruner
    /// `skip_gradients=True` do).
    pub skip_optimizer: bool,
}

impl Needs {
    /// Nothing this step.
    pub const NONE: Self = Self {
        grads: false,
        update: false,
        skip_optimizer: false,
    };

    /// Whether `on_step` must be called.
    pub fn any(&self) -> bool {
        self.grads || self.update
    }
}

/// How a method can train in sparse execution (weights, gradients and
/// optimizer moments kept as vectors of the active values only; issue 10 and
/// `docs/sparse-execution.md`): what dense information it needs and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SparseExecution {
    /// Needs nothing dense: its masks come from the active weights, the
    /// gradients of the active weights and random draws (static, SET, MEST).
    Supported,
    /// Needs the dense gradient `|∇_W L|` on topology-update steps only (with
    /// a gradient window, on the window's steps before each update), to grow
    /// by it (RigL, SRigL): sparse execution computes it for those steps
    /// alone, as a tiled top-`k` of `|Xᵀ·dY|` where the method offers a
    /// [`CompactRule`] for linear layers, else through a dense probe of each
    /// layer (`sparse_kernels::train::CompactLinear`).
    DenseGradientAtUpdates,
    /// Needs dense weights or gradients every step, at initialisation, or
    /// in dense phases (SR-STE, AutoSparse, SNIP, GraSP, GMP, lottery tickets,
    /// one-shot, the dense baseline): the masked-dense path only.
    MaskedDenseOnly,
}

impl SparseExecution {
    /// A short description (the table of `docs/methods.md`).
    pub fn describe(self) -> &'static str {
        match self {
            Self::Supported => "yes",
            Self::DenseGradientAtUpdates => "yes, with the dense gradient on update steps",
            Self::MaskedDenseOnly => "no (masked-dense)",
        }
    }
}

/// How a drop/grow update grows, when it runs on the active values alone
/// ([`CompactRule`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Growth {
    /// Uniformly random inactive positions (SET).
    Random,
    /// The inactive positions of largest `|∂L/∂W| = |Xᵀ·dY|` (RigL), from
    /// each layer's input and output gradient of the update step.
    Gradient,
}

/// A topology update that sparse execution can compute from the active
/// values, the layers' inputs and output gradients, without any vector of a
/// layer's dense shape (`sparse_kernels::train::compact_update`): drop the
/// `⌊f(t)·n⌋` active weights of lowest `|w|` (plus `drop_noise`), grow as
/// many by `growth`. The method's own update makes the same decisions; it
/// offers the rule only under the settings where that holds (RigL: a
/// gradient window of 1 and no grow noise).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CompactRule {
    /// How positions are grown.
    pub growth: Growth,
    /// Std of the Gaussian noise on the drop scores (RigL: 1e-5; SET: 0),
    /// drawn per flat position from the stream `"rigl-noise"`.
    pub drop_noise: f64,
}

/// A method's state that must survive a checkpoint (counters, accumulators).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MethodState {
    /// Small values (counters, flags, schedule positions).
    pub values: BTreeMap<String, serde_json::Value>,
    /// Float arrays (e.g. accumulated gradients), keyed by name.
    #[serde(skip)]
    pub arrays: BTreeMap<String, Vec<f32>>,
}

/// A sparse-training algorithm.
///
/// Implementations are one file each in `sparse-methods`. Masks given to and
/// returned from a method must obey the plan's pattern and, unless the method
/// changes sparsity on purpose (GMP, lottery tickets), keep each layer's count.
pub trait Method: Send + std::fmt::Debug {
    /// Short name (`"rigl"`), as in the registry and in saved state.
    fn name(&self) -> &'static str;

    /// Sets the initial masks in `masks` (given all-active).
    fn init(&mut self, ctx: &mut InitContext<'_>, masks: &mut [Mask]) -> Result<()>;

    /// Checks that the method can train under `plan` (its pattern, its
    /// distribution, its own settings against the sparsity) and prepares what it
    /// derives from the plan, as [`Method::init`] does before its first masks.
    fn check_plan(&mut self, plan: &Plan) -> Result<()> {
        let _ = plan;
        Ok(())
    }

    /// Continues from `masks` handed over by an earlier stage of training (a
    /// recipe's sparse stage before this one) instead of [`Method::init`]: brings
    /// them to the method's starting point. Default: checks the plan
    /// ([`Method::check_plan`]) and keeps the masks. GMP prunes them to its
    /// schedule's sparsity at step 0 by its own magnitude criterion.
    fn continue_from(&mut self, ctx: &mut InitContext<'_>, masks: &mut [Mask]) -> Result<()> {
        let _ = masks;
        self.check_plan(ctx.plan())
    }

    /// What the method needs at step `step`.
    fn needs(&self, step: u64) -> Needs {
        let _ = step;
        Needs::NONE
    }

    /// Called at the steps where [`Method::needs`] asks for data.
    fn on_step(&mut self, ctx: &mut StepContext<'_>) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Called before the forward pass of step `step`: after `init` (step 0),
    /// at the end of every step (for the next one) and after a restore.
    fn before_step(&mut self, step: u64) {
        let _ = step;
    }

    /// State to checkpoint.
    fn save_state(&self) -> MethodState {
        MethodState::default()
    }

    /// Restores [`Method::save_state`]'s output.
    fn load_state(&mut self, state: MethodState) -> Result<()> {
        let _ = state;
        Ok(())
    }

    /// Property: the initial masks are scored with gradients on data, so the
    /// caller must initialise with [`crate::Sparsifier::init_with`] (SNIP, GraSP).
    fn needs_data_for_init(&self) -> bool {
        false
    }

    /// Property: the sparse-aware initialisation the method's reference uses
    /// after the first masks (SRigL: grad-flow); the run's
    /// `SparsityConfig::sparse_init` overrides it.
    fn default_sparse_init(&self) -> SparseInit {
        SparseInit::None
    }

    /// Property: the dense baseline (no weight is ever pruned).
    fn is_dense(&self) -> bool {
        false
    }

    /// Property: the drop fraction the method would use at `step` (for reporting).
    fn drop_fraction(&self, step: u64) -> Option<f64> {
        let _ = step;
        None
    }

    /// Property: the method raises the sparsity of the masks it is given during
    /// training, toward its target (GMP's schedule), so it can continue from masks
    /// sparser than its start and still reach its target (a recipe's stage).
    fn prunes_gradually(&self) -> bool {
        false
    }

    /// Property: whether and how the method can train in sparse execution
    /// (default: the masked-dense path only).
    fn sparse_execution(&self) -> SparseExecution {
        SparseExecution::MaskedDenseOnly
    }

    /// Property: the method's topology update as a [`CompactRule`], which
    /// sparse execution runs on the active values alone (default: none; the
    /// update then runs on host copies of the dense weights).
    fn compact_rule(&self) -> Option<CompactRule> {
        None
    }

    /// Property: training runs in several rounds (iterative pruning).
    fn rounds(&self) -> Option<&dyn Rounds> {
        None
    }

    /// Extension: the method changes the model itself (extra parameters, a
    /// forward rule, gradient terms, soft masks).
    fn reparameterization(&self) -> Option<&dyn Reparameterize> {
        None
    }
}

/// Anything the [`crate::Sparsifier`] accepts as its method: a method, or a boxed one.
pub trait IntoMethod {
    /// The method, boxed.
    fn into_method(self) -> Box<dyn Method>;
}

impl<T: Method + 'static> IntoMethod for T {
    fn into_method(self) -> Box<dyn Method> {
        Box::new(self)
    }
}

impl IntoMethod for Box<dyn Method> {
    fn into_method(self) -> Box<dyn Method> {
        self
    }
}
