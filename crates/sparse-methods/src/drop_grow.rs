//! Drop/grow updaters and the one adapter that makes each of them a [`Method`].
//!
//! SET, RigL, SRigL and MEST share one shape (that of rigl's `SparseRigLOptimizer`
//! and jaxpruner's `SparseUpdater`): a random initial mask, then at the steps of
//! an [`UpdateSchedule`] every layer drops its lowest-scored active weights and
//! grows its highest-scored inactive ones, `⌊f(t)·n_active⌋` of them, inside the
//! plan's pattern. An updater supplies only what differs: its scores, its drop
//! fraction `f(t)`, whether it skips the optimizer step on update steps and,
//! rarely, a layer update of its own (SRigL's neuron ablation, MEST's bounds).
//! [`DropGrowMethod`] does the rest: initialisation, the schedule, the `Needs`,
//! the loop over layers and the reported drop fraction.

use sparse_core::method::{CompactRule, InitContext, Method, MethodState, Needs, SparseExecution, StepContext};
use sparse_core::{DropFraction, Mask, Plan, Result, SparseInit, UpdateSchedule};

use crate::registry::Switch;
use crate::scores::random_masks;

/// The switches the drop/grow methods share (each method's config holds its own
/// defaults for them).
pub mod switches {
    use super::Switch;

    /// ΔT.
    pub const DELTA_T: Switch = Switch::new("delta_t", "steps between topology updates (ΔT)");
    /// T_end / T.
    pub const END_FRACTION: Switch = Switch::new("end_fraction", "no update from this fraction of training on");
    /// α or ζ.
    pub const DROP_FRACTION: Switch = Switch::new("drop_fraction", "initial drop fraction α (SET: ζ)");
    /// Its decay.
    pub const DROP_SCHEDULE: Switch = Switch::new("drop_schedule", "cosine, constant or exponential decay of α");
    /// k of the exponential decay.
    pub const DROP_EXPONENT: Switch = Switch::new("drop_exponent", "exponent k of the exponential decay");
    /// No optimizer step on update steps.
    pub const SKIP_WEIGHT_UPDATE: Switch = Switch::new("skip_weight_update", "no optimizer step on update steps");
}

/// What a drop/grow method supplies.
pub trait DropGrow: Send + std::fmt::Debug {
    /// Short name (`"rigl"`).
    fn name(&self) -> &'static str;

    /// When updates run.
    fn updates(&self) -> &UpdateSchedule;

    /// The drop fraction over the schedule's progress (`None`: the updater sets
    /// its own counts in [`DropGrow::update_layer`]).
    fn drop_fraction(&self) -> Option<&DropFraction>;

    /// Skip the optimizer step on update steps.
    fn skip_optimizer(&self) -> bool {
        false
    }

    /// The sparse-aware initialisation of the method's reference (SRigL: grad-flow).
    fn sparse_init(&self) -> SparseInit {
        SparseInit::None
    }

    /// How the updater can train in sparse execution (default: it needs
    /// nothing dense; one that grows by the dense gradient says so).
    fn sparse_execution(&self) -> SparseExecution {
        SparseExecution::Supported
    }

    /// The update as a [`CompactRule`], where sparse execution can compute
    /// it from the active values alone (default: none).
    fn compact_rule(&self) -> Option<CompactRule> {
        None
    }

    /// Whether the dense gradient is read at `step`.
    fn needs_grads(&self, step: u64) -> bool {
        let _ = step;
        false
    }

    /// Whether a topology update runs at `step` (default: the schedule's steps).
    fn is_update_step(&self, step: u64) -> bool {
        self.updates().is_update_step(step)
    }

    /// The first masks (default: uniformly random under the plan).
    fn initial_masks(&self, ctx: &InitContext<'_>) -> Result<Vec<Mask>> {
        random_masks(ctx)
    }

    /// Checks the plan and prepares per-layer targets, before the first masks.
    fn check(&mut self, plan: &Plan) -> Result<()> {
        let _ = plan;
        Ok(())
    }

    /// Sees every step the method is called at, update or not (e.g. to average gradients).
    fn observe(&mut self, ctx: &StepContext<'_>) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Called once per update, before the layers are updated.
    fn begin_update(&mut self, ctx: &StepContext<'_>) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// `(drop, grow)` scores of layer `l`: the lowest-dropped active weights go,
    /// the highest-grown inactive ones come.
    fn scores(&self, ctx: &StepContext<'_>, l: usize) -> Result<(Vec<f32>, Vec<f32>)>;

    /// The new mask of layer `l`. Default: a dense layer stays dense; otherwise
    /// the pattern's exchange of `⌊fraction · active units⌋` units by the scores.
    fn update_layer(&self, ctx: &StepContext<'_>, l: usize, fraction: f64) -> Result<Mask> {
        let (layer, mask) = (&ctx.layers()[l], &ctx.masks()[l]);
        if mask.count_ones() == layer.numel() {
            return Ok(mask.clone()); // a dense layer has nothing to exchange
        }
        let (drop, grow) = self.scores(ctx, l)?;
        let pattern = ctx.plan().pattern();
        let n_drop = (fraction * pattern.active_units(layer, mask) as f64).floor() as usize;
        Ok(pattern.exchange(layer, mask, &drop, &grow, n_drop))
    }

    /// Called once per update, after every layer was updated.
    fn end_update(&mut self) {}

    /// State to checkpoint.
    fn save_state(&self) -> MethodState {
        MethodState::default()
    }

    /// Restores [`DropGrow::save_state`]'s output.
    fn load_state(&mut self, state: MethodState) -> Result<()> {
        let _ = state;
        Ok(())
    }
}

/// A [`DropGrow`] updater as a [`Method`].
#[derive(Debug)]
pub struct DropGrowMethod<U> {
    updater: U,
}

impl<U: DropGrow> DropGrowMethod<U> {
    /// Wraps `updater`.
    pub fn from_updater(updater: U) -> Self {
        Self { updater }
    }

    /// The updater.
    pub fn updater(&self) -> &U {
        &self.updater
    }
}

impl<U: DropGrow> Method for DropGrowMethod<U> {
    fn name(&self) -> &'static str {
        self.updater.name()
    }

    fn init(&mut self, ctx: &mut InitContext<'_>, masks: &mut [Mask]) -> Result<()> {
        self.updater.check(ctx.plan())?;
        masks.clone_from_slice(&self.updater.initial_masks(ctx)?);
        Ok(())
    }

    fn check_plan(&mut self, plan: &Plan) -> Result<()> {
        self.updater.check(plan)
    }

    fn default_sparse_init(&self) -> SparseInit {
        self.updater.sparse_init()
    }

    fn sparse_execution(&self) -> SparseExecution {
        self.updater.sparse_execution()
    }

    fn compact_rule(&self) -> Option<CompactRule> {
        self.updater.compact_rule()
    }

    fn needs(&self, step: u64) -> Needs {
        let update = self.updater.is_update_step(step);
        Needs {
            grads: self.updater.needs_grads(step),
            update,
            skip_optimizer: update && self.updater.skip_optimizer(),
        }
    }

    fn on_step(&mut self, ctx: &mut StepContext<'_>) -> Result<()> {
        self.updater.observe(ctx)?;
        if !self.updater.is_update_step(ctx.step()) {
            return Ok(());
        }
        self.updater.begin_update(ctx)?;
        let fraction = self.drop_fraction(ctx.step()).unwrap_or(0.0);
        for l in 0..ctx.layers().len() {
            let mask = self.updater.update_layer(ctx, l, fraction)?;
            ctx.masks_mut()[l] = mask;
        }
        self.updater.end_update();
        Ok(())
    }

    fn save_state(&self) -> MethodState {
        self.updater.save_state()
    }

    fn load_state(&mut self, state: MethodState) -> Result<()> {
        self.updater.load_state(state)
    }

    fn drop_fraction(&self, step: u64) -> Option<f64> {
        let progress = self.updater.updates().progress(step);
        self.updater.drop_fraction().map(|f| f.at(progress))
    }
}
