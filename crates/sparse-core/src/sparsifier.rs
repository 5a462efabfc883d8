//! The step hook: the single place where a sparse training step happens.
//!
//! ```text
//! let mut sparse = Sparsifier::new(&model, config, RigL::new(..), &OptimizerConfig::sgd(0.9, 5e-4))?;
//! let mut model = sparse.init(model)?;                 // initial masks, pruned weights = 0
//! for batch in data {
//!     let grads = GradientsParams::from_grads(loss(&model, batch).backward(), &model);
//!     model = sparse.step(model, grads, lr)?;        // mask grads, step, re-mask, maybe update topology
//! }
//! ```
//!
//! At every step: the dense gradients are read when the method asks for them
//! (RigL at update steps), the mask-aware optimizer masks the gradients, steps and
//! re-masks the weights, and, when the method's schedule says so, the method
//! changes the masks; then dropped weights are zeroed, their optimizer state
//! cleared, grown weights start at 0 with zero state, and the ITOP record grows.

use std::collections::HashMap;
use std::sync::Arc;

use burn::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::module::{Module, ParamId};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};

use crate::discovery::{all_weights, discover};
use crate::error::{Result, SparseError};
use crate::grad_term::GradTerm;
use crate::layer::SparseLayer;
use crate::mask::Mask;
use crate::method::{GradRequest, GradientOracle, InitContext, IntoMethod, Method, StepContext};
use crate::optim::burn_state::{self, StateKeep};
use crate::optim::{MaskedOptimizer, OptimizerConfig};
use crate::plan::{Plan, SparsityConfig};
use crate::reparam::{self, ForwardRule};
use crate::stats::{SparsityReport, itop_rate};
use crate::step_record::{StepRecord, TopologyChange};
use crate::traverse;

/// Sparse training state of one model: plan, masks, method, optimizer, counters.
pub struct Sparsifier {
    pub(crate) plan: Plan,
    pub(crate) method: Box<dyn Method>,
    pub(crate) optim: MaskedOptimizer,
    pub(crate) masks: Vec<Mask>,
    pub(crate) explored: Vec<Mask>,
    pub(crate) step: u64,
    /// Terms added to the sparse weights' gradients (the method's, then the caller's).
    pub(crate) terms: Vec<Arc<dyn GradTerm>>,
    /// The method's forward rule, attached to the model by `attach`.
    rule: Option<Arc<dyn ForwardRule>>,
    pub(crate) ids: HashMap<ParamId, usize>,
    devices: Vec<Device>,
    /// Device copies of the masks (f32 1.0 = active), one per sparse weight.
    pub(crate) keep: HashMap<ParamId, Tensor<1>>,
}

impl std::fmt::Debug for Sparsifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sparsifier")
            .field("method", &self.method.name())
            .field("layers", &self.plan.layers().len())
            .field("step", &self.step)
            .field("density", &self.report().density())
            .finish()
    }
}

impl Sparsifier {
    /// Discovers the sparse weights of `model`, validates `config` against them
    /// and prepares `method` (any [`Method`], or a boxed one) and a mask-aware
    /// optimizer. Masks start all-active until [`Sparsifier::init`], which also
    /// attaches the method's reparameterization to the model, if it has one.
    pub fn new<M: Module>(
        model: &M,
        config: SparsityConfig,
        method: impl IntoMethod,
        optimizer: &OptimizerConfig,
    ) -> Result<Self> {
        optimizer.validate()?;
        let method = method.into_method();
        let layers = discover(model, &config.filter)?;
        let plan = Plan::new(layers, config)?;
        let masks: Vec<Mask> = plan.layers().iter().map(|l| Mask::ones(l.numel())).collect();
        let mut optim = optimizer.init();
        let (mut rule, mut terms) = (None, Vec::new());
        if let Some(r) = method.reparameterization() {
            rule = r.forward_rule(&plan)?;
            terms = r.grad_terms(&plan)?;
            if let Some(decay) = r.extra_decay() {
                optim.override_decay(reparam::EXTRA_GLOB, decay);
            }
        }
        let mut sparsifier = Self {
            explored: masks.clone(),
            masks,
            plan,
            method,
            optim,
            step: 0,
            terms,
            rule,
            ids: HashMap::new(),
            devices: Vec::new(),
            keep: HashMap::new(),
        };
        sparsifier.bind(model)?;
        Ok(sparsifier)
    }

    /// Adds a term to the sparse weights' gradients at every step (e.g. an L1 or
    /// group-lasso penalty), after the method's own terms.
    pub fn with_grad_term(mut self, term: impl GradTerm + 'static) -> Self {
        self.terms.push(Arc::new(term));
        self
    }

    /// Attaches the method's forward rule (and its extra parameters) to every
    /// sparse weight of `model`, if the method has one and `model` does not carry
    /// it yet. [`Sparsifier::init`] calls it; call it yourself before loading saved
    /// weights into a fresh model that [`Sparsifier::load`] will continue.
    pub fn attach<M: Module>(&mut self, model: M) -> Result<M> {
        let Some(rule) = self.rule.clone() else {
            return Ok(model);
        };
        let n = self.plan.layers().len();
        let model = match reparam::attached_count(&model, self.plan.layers()) {
            0 => reparam::attach(model, self.plan.layers(), rule),
            c if c == n => model,
            c => {
                return Err(SparseError::InvalidConfig(format!(
                    "{c} of the {n} sparse weights carry the method's reparameterization; attach it to an unchanged model"
                )));
            }
        };
        self.bind(&model)?;
        Ok(model)
    }

    /// Whether `model` carries what the method needs (its reparameterization).
    pub(crate) fn check_attached<M: Module>(&self, model: &M) -> Result<()> {
        if self.rule.is_some() && reparam::attached_count(model, self.plan.layers()) != self.plan.layers().len() {
            return Err(SparseError::InvalidConfig(format!(
                "{} changes the model's forward pass: call `Sparsifier::attach(model)` (done by `init`) before loading weights or training",
                self.method.name()
            )));
        }
        Ok(())
    }

    /// Sets the initial masks with the method (random, magnitude, ...), attaches
    /// the method's reparameterization if any, and zeroes the pruned weights.
    pub fn init<M: Module>(&mut self, model: M) -> Result<M> {
        let model = self.attach(model)?;
        self.init_inner(model, None)
    }

    /// Like [`Sparsifier::init`], for methods that score with gradients on data
    /// (SNIP, GraSP): `loss_grads(model, request)` must run a forward and backward
    /// pass on the user's batch(es) (logits divided by `request.temperature`) and
    /// return the gradients, or an error (e.g. too few samples of a class).
    pub fn init_with<M, F>(&mut self, model: M, loss_grads: F) -> Result<M>
    where
        M: Module,
        F: FnMut(&M, &GradRequest) -> Result<GradientsParams>,
    {
        let model = self.attach(model)?;
        self.bind(&model)?;
        // `valid().train()` gives a copy with its own BatchNorm running statistics, so
        // the scoring passes never touch the model's.
        let mut oracle = ModelOracle {
            model: model.valid().train(),
            ids: self.ids.clone(),
            n: self.plan.layers().len(),
            loss_grads,
        };
        self.init_inner(model, Some(&mut oracle))
    }

    fn init_inner<M: Module>(&mut self, model: M, oracle: Option<&mut dyn GradientOracle>) -> Result<M> {
        self.bind(&model)?;
        self.optim.clear_state(); // a new run: no moments from an earlier one
        let n = self.plan.layers().len();
        let mut weights = traverse::read_weights(&model, &self.ids, n)?;
        let mut masks: Vec<Mask> = self.plan.layers().iter().map(|l| Mask::ones(l.numel())).collect();
        let mut ctx = InitContext::new(&self.plan, &mut weights, self.plan.config().seed);
        if let Some(oracle) = oracle {
            ctx = ctx.with_oracle(oracle);
        }
        self.method.init(&mut ctx, &mut masks)?;
        let mut weights_changed = ctx.weights_changed();
        self.check_masks(&masks)?;
        let sparse_init = (self.plan.config().sparse_init).unwrap_or_else(|| self.method.default_sparse_init());
        weights_changed |= sparse_init.apply(self.plan.layers(), &masks, &mut weights, self.plan.config().seed);
        let model = if weights_changed {
            traverse::write_weights(model, &self.ids, &weights)
        } else {
            model
        };
        self.masks = masks;
        self.explored = self.masks.clone();
        self.step = 0;
        self.upload_masks(None);
        self.method.before_step(0);
        tracing::info!(
            method = self.method.name(),
            density = self.report().density(),
            "sparse masks initialised"
        );
        Ok(self.masked(model))
    }

    /// One training step: call it after `backward` instead of the optimizer step.
    ///
    /// Reads dense gradients if the method needs them, takes the mask-aware
    /// optimizer step (unless the method skips it on update steps), runs the
    /// method's topology update when scheduled, re-masks, and advances the step.
    pub fn step<M: Module>(
        &mut self,
        model: M,
        grads: GradientsParams,
        lr: impl Into<ModuleLearningRate>,
    ) -> Result<M> {
        self.step_inner(model, grads, lr.into(), None).map(|(model, _)| model)
    }

    /// One training step with any Burn optimizer instead of the built-in one:
    /// the same step as [`Sparsifier::step`] (same schedule, same topology
    /// updates, same step counter), but the weights move by `optim`, Burn's
    /// `ModuleOptimizer` (`SgdConfig::new().init()`, `AdamWConfig`, `RmsPropConfig`,
    /// `AdaGradConfig`, a user's `Optimizer` through `.into()`, with its parameter
    /// groups and gradient clipping).
    ///
    /// The gradients of pruned weights are zeroed before `optim`'s step and the
    /// pruned weights after it, so they stay exactly 0 whatever the update rule.
    /// After a topology update, the state of every weight that was dropped or
    /// regrown is zeroed in `optim` through its record (see
    /// [`crate::optim::burn_state`]), so regrown weights start from zero state as
    /// with the built-in optimizers. The state stays in `optim`, so it is saved
    /// and restored with `optim` (`ModuleOptimizer::save`, burn-train's
    /// checkpoints), not by [`Sparsifier::save`].
    ///
    /// Slower than the built-in [`OptimizerConfig`] optimizers, which need neither
    /// the extra re-masking multiply per step nor the host round trip of the whole
    /// optimizer state at each topology update; see `docs/architecture.md`.
    /// A method's own weight decay for its extra parameters (a reparameterization's
    /// `extra_decay`) is not applied here: give those parameters their decay with
    /// `ModuleOptimizer::with_group`.
    pub fn step_with<M: Module>(
        &mut self,
        optim: &mut ModuleOptimizer,
        model: M,
        grads: GradientsParams,
        lr: impl Into<ModuleLearningRate>,
    ) -> Result<M> {
        self.step_with_record(optim, model, grads, lr).map(|(model, _)| model)
    }

    /// [`Sparsifier::step_with`], also returning what the step did, so that
    /// other replicas of the model (data-parallel workers, each with its own
    /// optimizer) can take the same step with [`Sparsifier::replay`].
    pub fn step_with_record<M: Module>(
        &mut self,
        optim: &mut ModuleOptimizer,
        model: M,
        grads: GradientsParams,
        lr: impl Into<ModuleLearningRate>,
    ) -> Result<(M, StepRecord)> {
        self.step_inner(model, grads, lr.into(), Some(optim))
    }

    /// The step with the built-in optimizer (`burn` = `None`) or a Burn one.
    fn step_inner<M: Module>(
        &mut self,
        model: M,
        grads: GradientsParams,
        lr: ModuleLearningRate,
        mut burn: Option<&mut ModuleOptimizer>,
    ) -> Result<(M, StepRecord)> {
        self.ensure_bound(&model)?;
        let needs = self.method.needs(self.step);
        let mut record = StepRecord {
            step: self.step,
            optimizer_step: !(needs.update && needs.skip_optimizer),
            keep_before: if self.hard_masks() {
                self.keep.clone()
            } else {
                HashMap::new()
            },
            change: None,
        };
        let n = self.plan.layers().len();
        let dense_grads = if needs.grads {
            Some(traverse::read_grads(&model, &grads, &self.ids, n)?)
        } else {
            None
        };
        let grads = traverse::add_grad_terms(&model, grads, &self.ids, self.plan.layers(), &self.terms, self.step);
        let mut model = model;
        if needs.update && needs.skip_optimizer {
            (model, record.change) = self.run_method(model, dense_grads.as_deref(), needs.update, burn)?;
        } else {
            let no_masks = HashMap::new();
            let keep = if self.hard_masks() { &self.keep } else { &no_masks };
            model = match burn.as_deref_mut() {
                None => self.optim.step(lr, model, grads, keep),
                Some(optim) => {
                    let grads = traverse::mask_grads(&model, grads, keep);
                    traverse::apply_masks(optim.step(lr, model, grads), keep)
                }
            };
            if needs.any() {
                (model, record.change) = self.run_method(model, dense_grads.as_deref(), needs.update, burn)?;
            }
        }
        self.step += 1;
        self.method.before_step(self.step);
        Ok((model, record))
    }

    /// The step for burn-train: call from `TrainStep::optimize`, ignoring Burn's
    /// optimizer. burn-train gives `optimize` no error channel, so an error here
    /// (only possible from a method bug or a model rebuilt with other shapes) is
    /// logged and then panics with its message.
    pub fn optimize<M: Module>(&mut self, model: M, grads: GradientsParams, lr: ModuleLearningRate) -> M {
        match self.step(model, grads, lr) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "sparse step failed");
                panic!("sparse step failed: {e}");
            }
        }
    }

    /// Whether the masks are imposed on weights and gradients now.
    fn hard_masks(&self) -> bool {
        self.method.reparameterization().is_none_or(|r| r.hard_masks())
    }

    fn run_method<M: Module>(
        &mut self,
        model: M,
        grads: Option<&[Vec<f32>]>,
        update: bool,
        burn: Option<&mut ModuleOptimizer>,
    ) -> Result<(M, Option<TopologyChange>)> {
        let n = self.plan.layers().len();
        let mut weights = if update {
            Some(traverse::read_weights(&model, &self.ids, n)?)
        } else {
            None
        };
        let extra = if update && self.rule.is_some() {
            Some(traverse::read_extra(&model, self.plan.layers())?)
        } else {
            None
        };
        let hard_before = self.hard_masks();
        let (before, weights_changed) = self.on_step_checked(weights.as_deref_mut(), grads, extra.as_deref())?;
        // a method that turns its masks hard (AutoSparse freezing) re-masks every layer
        let all = self.hard_masks() && !hard_before;
        let changed: Vec<usize> = (0..n).filter(|&l| all || self.masks[l] != before[l]).collect();
        let model = match (weights_changed, &weights) {
            (true, Some(w)) => traverse::write_weights(model, &self.ids, w),
            _ => model,
        };
        if changed.is_empty() && !weights_changed {
            return Ok((model, None));
        }
        for &l in &changed {
            self.explored[l] = self.explored[l].or(&self.masks[l]);
        }
        self.upload_masks(Some(&changed));
        if let (true, Some(optim)) = (self.hard_masks(), burn) {
            self.reset_burn_state(optim, &before, &changed)?;
        } else if self.hard_masks() {
            let reset: Vec<_> = changed
                .iter()
                .map(|&l| {
                    let layer = &self.plan.layers()[l];
                    (
                        layer.param_id,
                        layer.path.as_str(),
                        &self.masks[l],
                        self.keep[&layer.param_id].clone(),
                    )
                })
                .collect();
            self.optim.reset_inactive(&reset);
        }
        tracing::debug!(step = self.step, layers = changed.len(), "topology update");
        let change = self.topology_change(weights.filter(|_| weights_changed), &before, &changed);
        Ok((self.masked(model), Some(change)))
    }

    /// Runs the method's `on_step` on host copies of the weights, gradients
    /// and extra parameters, and keeps its masks if they pass the plan's
    /// checks (else, or when the method fails, the masks stay as they were).
    /// Returns the masks before and whether the method wrote weights.
    pub(crate) fn on_step_checked(
        &mut self,
        weights: Option<&mut [Vec<f32>]>,
        grads: Option<&[Vec<f32>]>,
        extra: Option<&[Vec<Vec<f32>>]>,
    ) -> Result<(Vec<Mask>, bool)> {
        let before = self.masks.clone();
        let mut ctx = StepContext::new(self.step, &self.plan, self.plan.config().seed, &mut self.masks);
        if let Some(w) = weights {
            ctx = ctx.with_weights(w);
        }
        if let Some(g) = grads {
            ctx = ctx.with_grads(g);
        }
        if let Some(e) = extra {
            ctx = ctx.with_extra(e);
        }
        let outcome = self.method.on_step(&mut ctx);
        let wrote = ctx.weights_changed();
        if let Err(e) = outcome {
            self.masks = before; // a method may fail halfway through its masks
            return Err(e);
        }
        let masks = std::mem::take(&mut self.masks);
        if let Err(e) = self.check_masks(&masks) {
            self.masks = before;
            return Err(e);
        }
        self.masks = masks;
        Ok((before, wrote))
    }

    /// The [`TopologyChange`] of a step that changed the `changed` layers'
    /// masks from `before` (and wrote `weights`, if given), for
    /// [`Sparsifier::replay`]: the same state zeroing as
    /// `reset_burn_state` and the same re-masking as `masked`.
    fn topology_change(&self, weights: Option<Vec<Vec<f32>>>, before: &[Mask], changed: &[usize]) -> TopologyChange {
        let hard = self.hard_masks();
        let reset = match hard {
            false => Vec::new(),
            true => changed
                .iter()
                .map(|&l| {
                    let layer = &self.plan.layers()[l];
                    (layer.param_id, layer.shape.clone(), before[l].and(&self.masks[l]))
                })
                .collect(),
        };
        TopologyChange {
            weights,
            reset,
            keep_after: hard.then(|| self.keep.clone()),
        }
    }

    /// Zeroes, in a Burn optimizer, the state of every weight of the `changed`
    /// layers that is not active both `before` and now: dropped and regrown
    /// weights (and inactive ones, whose state is 0 already with masked gradients).
    fn reset_burn_state(&self, optim: &mut ModuleOptimizer, before: &[Mask], changed: &[usize]) -> Result<()> {
        let kept: Vec<Mask> = changed.iter().map(|&l| before[l].and(&self.masks[l])).collect();
        let params: Vec<StateKeep<'_>> = changed
            .iter()
            .zip(&kept)
            .map(|(&l, keep)| {
                let layer = &self.plan.layers()[l];
                StateKeep {
                    id: layer.param_id,
                    shape: &layer.shape,
                    keep,
                }
            })
            .collect();
        let tensors = burn_state::zero_state(optim, &params)?;
        tracing::debug!(
            step = self.step,
            tensors,
            "Burn optimizer state zeroed for changed weights"
        );
        Ok(())
    }

    /// `model` with pruned weights zeroed (unchanged for soft-mask methods).
    fn masked<M: Module>(&self, model: M) -> M {
        if self.hard_masks() {
            traverse::apply_masks(model, &self.keep)
        } else {
            model
        }
    }

    pub(crate) fn check_masks(&self, masks: &[Mask]) -> Result<()> {
        let method = self.method.name();
        if masks.len() != self.plan.layers().len() {
            return Err(SparseError::method(method, "returned a wrong number of masks"));
        }
        for (l, m) in self.plan.layers().iter().zip(masks) {
            if m.len() != l.numel() {
                return Err(SparseError::method(
                    method,
                    format!("mask for `{}` has the wrong length", l.path),
                ));
            }
            self.plan
                .pattern()
                .verify(l, m)
                .map_err(|e| SparseError::method(method, e))?;
        }
        Ok(())
    }

    /// Rebuilds the device copies of the masks (all layers, or `only` these).
    fn upload_masks(&mut self, only: Option<&[usize]>) {
        for (l, layer) in self.plan.layers().iter().enumerate() {
            if only.is_some_and(|o| !o.contains(&l)) {
                continue;
            }
            self.keep
                .insert(layer.param_id, self.masks[l].float_tensor(&self.devices[l]));
        }
    }

    /// Maps the plan's weight paths to `model`'s parameter ids and devices.
    pub(crate) fn bind<M: Module>(&mut self, model: &M) -> Result<()> {
        let params = traverse::params(model);
        let by_path: HashMap<&str, &traverse::ParamInfo> = params.iter().map(|p| (p.path.as_str(), p)).collect();
        let mut layers: Vec<SparseLayer> = self.plan.layers().to_vec();
        let mut devices = Vec::with_capacity(layers.len());
        for layer in &mut layers {
            let p = by_path
                .get(layer.path.as_str())
                .ok_or_else(|| SparseError::UnknownLayer {
                    path: layer.path.clone(),
                    known: crate::discovery::known_paths(&all_weights(model)),
                })?;
            if p.shape != layer.shape {
                return Err(SparseError::InvalidConfig(format!(
                    "`{}` has shape {:?} in this model but {:?} in the sparsity plan; the model changed since the sparsifier was built",
                    layer.path, p.shape, layer.shape
                )));
            }
            layer.param_id = p.id;
            devices.push(p.device.clone());
        }
        self.plan.rebind(layers);
        self.optim
            .rekey(&params.iter().map(|p| (p.path.clone(), p.id)).collect());
        self.ids = self
            .plan
            .layers()
            .iter()
            .enumerate()
            .map(|(i, l)| (l.param_id, i))
            .collect();
        self.devices = devices;
        self.keep.clear();
        self.upload_masks(None);
        Ok(())
    }

    fn ensure_bound<M: Module>(&mut self, model: &M) -> Result<()> {
        if traverse::count_ids(model, &self.ids) == self.ids.len() {
            return Ok(());
        }
        tracing::debug!("parameter ids changed; rebinding sparse weights by path");
        self.bind(model)
    }

    /// Zeroes the pruned weights of `model` (e.g. after loading weights).
    pub fn apply_masks<M: Module>(&mut self, model: M) -> Result<M> {
        self.ensure_bound(&model)?;
        Ok(self.masked(model))
    }

    /// Host copies of the sparse weights of `model`, in layer order.
    pub fn read_weights<M: Module>(&mut self, model: &M) -> Result<Vec<Vec<f32>>> {
        self.ensure_bound(model)?;
        traverse::read_weights(model, &self.ids, self.plan.layers().len())
    }

    /// Starts a new round of training (iterative pruning): `masks` become the
    /// masks (checked against the plan's pattern), the ITOP record starts again from
    /// them, the optimizer forgets its state, the step counter is set to `step`
    /// (e.g. the rewind step), and `model` comes back with its pruned weights zeroed.
    pub fn restart<M: Module>(&mut self, model: M, masks: Vec<Mask>, step: u64) -> Result<M> {
        self.check_masks(&masks)?;
        let model = self.attach(model)?; // a fresh model (re-initialisation) needs the method's rule too
        self.ensure_bound(&model)?;
        self.masks = masks;
        self.explored = self.masks.clone();
        self.optim.clear_state();
        self.step = step;
        self.upload_masks(None);
        self.method.before_step(step);
        Ok(self.masked(model))
    }

    /// Continues training from `masks` handed over by an earlier stage (a
    /// recipe's sparse stage): the method brings them to its starting point
    /// ([`Method::continue_from`]: e.g. GMP prunes to its schedule's sparsity at
    /// step 0; a drop/grow method checks its plan), then the training restarts at
    /// step 0 from them as in [`Sparsifier::restart`].
    pub fn continue_from<M: Module>(&mut self, model: M, mut masks: Vec<Mask>) -> Result<M> {
        self.check_masks(&masks)?;
        let model = self.attach(model)?;
        self.bind(&model)?;
        let mut weights = traverse::read_weights(&model, &self.ids, self.plan.layers().len())?;
        let mut ctx = InitContext::new(&self.plan, &mut weights, self.plan.config().seed);
        self.method.continue_from(&mut ctx, &mut masks)?;
        if ctx.weights_changed() {
            return Err(SparseError::method(
                self.method.name(),
                "changed the weights while continuing from handed-over masks",
            ));
        }
        self.restart(model, masks, 0)
    }

    /// Checks that the method can train under the plan ([`Method::check_plan`]).
    pub fn check_plan(&mut self) -> Result<()> {
        self.method.check_plan(&self.plan)
    }

    /// Sets the step counter that drives the schedules, e.g. to the number of
    /// environment steps in deep RL, where topology updates count environment
    /// steps rather than optimizer steps (Graesser et al. 2022).
    pub fn set_step(&mut self, step: u64) {
        self.step = step;
    }

    /// The optimizer, mutably (e.g. to exclude parameters from weight decay).
    pub fn optimizer_mut(&mut self) -> &mut MaskedOptimizer {
        &mut self.optim
    }

    /// The method, mutably.
    pub fn method_mut(&mut self) -> &mut dyn Method {
        self.method.as_mut()
    }

    /// Zeroes the gradients of pruned weights, for loops that keep Burn's own optimizer.
    pub fn mask_gradients<M: Module>(&mut self, model: &M, grads: GradientsParams) -> Result<GradientsParams> {
        self.ensure_bound(model)?;
        Ok(traverse::mask_grads(model, grads, &self.keep))
    }

    /// Parameter sizes by path (for validating saved optimizer state).
    pub fn param_numels<M: Module>(model: &M) -> HashMap<String, usize> {
        traverse::params(model)
            .into_iter()
            .map(|p| (p.path, p.shape.iter().product()))
            .collect()
    }

    /// The sparse layers.
    pub fn layers(&self) -> &[SparseLayer] {
        self.plan.layers()
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The current masks, in layer order.
    pub fn masks(&self) -> &[Mask] {
        &self.masks
    }

    /// The union of every mask so far (for the ITOP rate).
    pub fn explored(&self) -> &[Mask] {
        &self.explored
    }

    /// Steps taken.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The method.
    pub fn method(&self) -> &dyn Method {
        self.method.as_ref()
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &MaskedOptimizer {
        &self.optim
    }

    /// Per-layer and global sparsity now.
    pub fn report(&self) -> SparsityReport {
        SparsityReport::new(self.plan.layers(), &self.masks)
    }

    /// In-time over-parameterisation rate: the fraction of sparse weights ever active.
    pub fn itop_rate(&self) -> f64 {
        itop_rate(&self.explored)
    }

    /// Active weights per sparse layer, by path (for [`crate::stats::forward_macs`]).
    pub fn active_counts(&self) -> std::collections::BTreeMap<String, usize> {
        self.plan
            .layers()
            .iter()
            .zip(&self.masks)
            .map(|(l, m)| (l.path.clone(), m.count_ones()))
            .collect()
    }

    /// The parameter id of sparse layer `l` in the bound model.
    pub fn param_id(&self, l: usize) -> ParamId {
        self.plan.layers()[l].param_id
    }
}

struct ModelOracle<M, F> {
    model: M,
    ids: HashMap<ParamId, usize>,
    n: usize,
    loss_grads: F,
}

impl<M: Module, F: FnMut(&M, &GradRequest) -> Result<GradientsParams>> GradientOracle for ModelOracle<M, F> {
    fn gradients(&mut self, weights: Option<&[Vec<f32>]>, request: &GradRequest) -> Result<Vec<Vec<f32>>> {
        let model = match weights {
            Some(w) => traverse::write_weights(self.model.clone(), &self.ids, w),
            None => self.model.clone(),
        };
        let grads = (self.loss_grads)(&model, request)?;
        traverse::read_grads(&model, &grads, &self.ids, self.n)
    }
}
