//! Sparse training with any Burn optimizer: a [`Sparsifier`] and a Burn
//! `ModuleOptimizer`, stepped together.
//!
//! ```text
//! let mut sparse = SparseOptimizer::new(&model, SparsityConfig::new().with_sparsity(0.9),
//!                                       RigL::new(..), AdamWConfig::new().init())?;
//! let mut model = sparse.init(model)?;
//! for batch in data {
//!     let grads = GradientsParams::from_grads(loss(&model, batch).backward(), &model);
//!     model = sparse.step(model, grads, lr)?;
//! }
//! ```
//!
//! # Why a `ModuleOptimizer`, and why a pair
//!
//! In Burn 0.22 the per-tensor trait `burn::optim::Optimizer` (SGD, Adam,
//! AdamW, RMSProp, AdaGrad, a user's own) is never given a parameter id, so a
//! wrapper at that level cannot know which mask applies to the tensor it steps.
//! Every Burn optimizer becomes a `ModuleOptimizer` (`XConfig::init()`, or
//! `optimizer.into()`), which also carries parameter groups and gradient
//! clipping; it is the only module-level optimizer there is (no module-level
//! trait exists), and it is what burn-train's `Learner` holds and hands to
//! `TrainStep::optimize`. So the sparse step takes a `ModuleOptimizer`:
//! [`Sparsifier::step_with`] borrows one (burn-train's, whose state then lands
//! in burn-train's own optimizer checkpoints), and [`SparseOptimizer`] owns one,
//! for hand-written loops. Its state stays Burn's: save it with
//! `optimizer().save(..)`; to resume, load it into a fresh optimizer
//! (`AdamConfig::new().init().load(..)`) and pair that with the restored
//! sparsifier through [`SparseOptimizer::from_parts`] (without `init`, which
//! clears the optimizer's state).
//!
//! How the state of dropped and regrown weights is zeroed, and what it costs:
//! [`crate::optim::burn_state`]. The built-in [`crate::OptimizerConfig`]
//! optimizers remain the fast path for SGD and Adam/AdamW.

use burn::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer, OptimizerRecord};

use crate::error::Result;
use crate::mask::Mask;
use crate::method::IntoMethod;
use crate::optim::{OptimizerConfig, SgdSettings};
use crate::plan::SparsityConfig;
use crate::sparsifier::Sparsifier;

impl Sparsifier {
    /// A sparsifier for a Burn optimizer ([`Sparsifier::step_with`],
    /// [`SparseOptimizer`], burn-train): as [`Sparsifier::new`], its built-in
    /// optimizer left unused.
    pub fn for_burn_optimizer<M: Module>(model: &M, config: SparsityConfig, method: impl IntoMethod) -> Result<Self> {
        // never stepped: plain SGD keeps no state
        let unused = OptimizerConfig::Sgd(SgdSettings::new());
        Sparsifier::new(model, config, method, &unused)
    }

    /// Warns when the method asks for weight decay on its own extra parameters
    /// (AutoSparse's thresholds), which a Burn optimizer does not apply unless
    /// told to with `ModuleOptimizer::with_group`.
    pub fn warn_extra_decay(&self) {
        if let Some(decay) = self.method().reparameterization().and_then(|r| r.extra_decay()) {
            tracing::warn!(
                method = self.method().name(),
                decay,
                "the method asks for its own weight decay on its extra parameters; with a Burn optimizer set it with `ModuleOptimizer::with_group`"
            );
        }
    }
}

/// A [`Sparsifier`] that steps the weights with a Burn `ModuleOptimizer`.
#[derive(Debug)]
pub struct SparseOptimizer {
    sparsifier: Sparsifier,
    optim: ModuleOptimizerBox,
}

/// `ModuleOptimizer` is not `Debug`; this shows that it is there.
struct ModuleOptimizerBox(ModuleOptimizer);

impl std::fmt::Debug for ModuleOptimizerBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ModuleOptimizer")
    }
}

impl SparseOptimizer {
    /// Discovers the sparse weights of `model` as [`Sparsifier::new`] does, for
    /// training with `optim`: any Burn optimizer (`SgdConfig::new().init()`,
    /// `AdamWConfig::new().init()`, `RmsPropConfig::new().init()`, a user's
    /// `Optimizer` as `MyOptimizer.into()`, ...). The sparsifier's own built-in
    /// optimizer ([`Sparsifier::optimizer`]) is never used.
    pub fn new<M: Module>(
        model: &M,
        config: SparsityConfig,
        method: impl IntoMethod,
        optim: impl Into<ModuleOptimizer>,
    ) -> Result<Self> {
        let sparsifier = Sparsifier::for_burn_optimizer(model, config, method)?;
        Ok(Self::from_parts(sparsifier, optim))
    }

    /// Pairs an existing sparsifier (e.g. one restored with
    /// [`Sparsifier::load`]) with a Burn optimizer (e.g. one restored with
    /// `ModuleOptimizer::load`).
    pub fn from_parts(sparsifier: Sparsifier, optim: impl Into<ModuleOptimizer>) -> Self {
        sparsifier.warn_extra_decay();
        Self {
            sparsifier,
            optim: ModuleOptimizerBox(optim.into()),
        }
    }

    /// Sets the initial masks ([`Sparsifier::init`]) and clears the optimizer's
    /// state: a new run starts with no moments from an earlier one.
    pub fn init<M: Module>(&mut self, model: M) -> Result<M> {
        let model = self.sparsifier.init(model)?;
        self.clear_state();
        Ok(model)
    }

    /// One training step ([`Sparsifier::step_with`]).
    pub fn step<M: Module>(
        &mut self,
        model: M,
        grads: GradientsParams,
        lr: impl Into<ModuleLearningRate>,
    ) -> Result<M> {
        self.sparsifier.step_with(&mut self.optim.0, model, grads, lr)
    }

    /// Starts a new round ([`Sparsifier::restart`]) and clears the optimizer's state.
    pub fn restart<M: Module>(&mut self, model: M, masks: Vec<Mask>, step: u64) -> Result<M> {
        let model = self.sparsifier.restart(model, masks, step)?;
        self.clear_state();
        Ok(model)
    }

    /// The sparsifier (masks, statistics, saving).
    pub fn sparsifier(&self) -> &Sparsifier {
        &self.sparsifier
    }

    /// The sparsifier, mutably.
    pub fn sparsifier_mut(&mut self) -> &mut Sparsifier {
        &mut self.sparsifier
    }

    /// The Burn optimizer (e.g. to save its state).
    pub fn optimizer(&self) -> &ModuleOptimizer {
        &self.optim.0
    }

    /// The Burn optimizer, mutably (e.g. to load its state).
    pub fn optimizer_mut(&mut self) -> &mut ModuleOptimizer {
        &mut self.optim.0
    }

    /// The sparsifier and the Burn optimizer.
    pub fn into_parts(self) -> (Sparsifier, ModuleOptimizer) {
        (self.sparsifier, self.optim.0)
    }

    fn clear_state(&mut self) {
        let optim = self.optim.0.clone();
        self.optim.0 = optim.load_record(OptimizerRecord::default());
    }
}
