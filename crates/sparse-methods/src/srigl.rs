//! SRigL: structured RigL with a constant fan-in and dynamic neuron ablation
//! (Lasby, Golubeva, Evci, Nica & Ioannou, "Dynamic Sparse Training with
//! Structured Sparsity", ICLR 2024; reference `calgaryml/condensed-sparsity`,
//! `RigLConstFanScheduler._rigl_step`).
//!
//! Every active neuron (output channel) has exactly `k` active fan-in weights,
//! `k = ⌊T / n_alive⌋` (`T` the layer's nonzero budget `≈ d·N`), so a layer can be
//! stored condensed as `[n_alive, k]` values + indices. Updates run on RigL's
//! schedule (cosine drop fraction α = 0.3, ΔT, T_end), after the optimizer step.
//! At an update, per layer (`n` neurons, dense fan-in `F`):
//!
//! 1. `n_drop = ⌊f(t)·n_active⌋`, `n_keep = n_active − n_drop`; if fewer than
//!    `n_keep` active weights are nonzero, `n_keep = nnz` and `n_drop = n_active − nnz`;
//! 2. **ablation** (never in the last layer): saliency set
//!    `S = TopK(|θ|, n_keep) ∪ TopK(|∇θ L|, n_drop)` (the gradient top-k over all
//!    weights, kept ones included); neuron `o` is ablated when `|S ∩ row o| < τ`,
//!    `τ = max(1, ⌊γ_sal·K⌋)` with `K = ⌊T / n⌋`, the constant fan-in before any
//!    ablation (a constant of the layer); `τ` is lowered to the
//!    `⌊T / F⌋`-th largest count if needed so that enough neurons survive. The
//!    list is recomputed at every update: an ablated neuron whose gradient
//!    becomes salient comes back;
//! 3. `k = ⌊T / n_alive⌋`; ablated neurons' weights get the lowest drop score, so
//!    the `n_keep` largest `|θ|` are taken among the surviving neurons only (the
//!    ablated neurons' share of the budget goes to the survivors' next-largest
//!    weights), then every row is cut to its `k` largest `|θ|`;
//! 4. every surviving neuron grows its largest-`|∇θ L|` entries not kept back to `k`
//!    (entries dropped in this update may come back); ablated neurons grow nothing.
//!
//! Grown weights are 0 with zero optimizer state. Requires `Pattern::ConstantFanIn`.
//! The grow score is the mean dense gradient over the last `grad_window` steps
//! (the reference's `grad_accumulation_n`: 1 for CIFAR, 8 for its ImageNet recipe).
//! The reference re-initialises every sparse layer once after the first masks
//! with its `grad_flow_init` (std `2/k_o` per neuron): the run's `sparse_init`
//! (`auto` = grad-flow for SRigL, see `sparse_core::SparseInit`).
//!
//! Defaults follow the reference: γ_sal = 0.3, the rules above, the update applied
//! after the optimizer step (`skip_weight_update = false`), `grad_window = 1`.
//!
//! Switches (the rule this crate used before issue 13 is `ablation_fan_in =
//! current`, `salient_grow = unkept`, `ablated_budget = discard`, `sparse_init =
//! none`):
//! * `ablation_fan_in`: `initial` (reference) | `dense` (`K = F`, the reference's
//!   `use_sparse_const_fan_in_for_ablation = False`) | `current`
//!   (`K = ⌊n_active / active neurons⌋`, which rises as neurons die);
//! * `salient_grow`: `all` (reference) | `unkept` (the gradient top-k only among
//!   weights not in the keep set);
//! * `ablated_budget`: `redirect` (reference) | `discard` (the keep set is taken
//!   over all neurons, and the ablated neurons' share is regrown as zeros).
//!
//! Remaining differences to the reference, none with a switch:
//! * `T` comes from the plan's largest-remainder counts and can differ from the
//!   reference's `⌊N·d⌋` by one weight;
//! * the reference cuts a row to `k` in the order of an unstable sort of a
//!   boolean row (unspecified); we keep the `k` largest `|θ|` (ties: lower
//!   fan-in position). When the survivors hold fewer than `n_keep` nonzero weights,
//!   `torch.topk` fills the budget with zero entries in unspecified order; ours
//!   takes them by our tie rule (lower flat index); they become active with value 0,
//!   as in the reference;
//! * the reference never ablates the layers named in `no_ablation_module_names`
//!   (every shipped config names the classifier); ours never ablates the last layer;
//! * `γ_sal` is always a fraction here (the reference reads `γ > 1` as an absolute count).

use burn::config::Config;
use serde::{Deserialize, Serialize};
use sparse_core::method::{MethodState, SparseExecution, StepContext};
use sparse_core::select::top_k;
use sparse_core::{
    DropFraction, DropSchedule, Mask, Pattern, Plan, Result, SparseError, SparseInit, SparseLayer, UpdateSchedule,
};

use crate::drop_grow::{DropGrow, DropGrowMethod, switches};
use crate::grad_window::GradWindow;
use crate::registry::{BuildContext, MethodSpec, Switch};
use crate::scores::magnitudes;

/// Which fan-in `K` the ablation threshold `τ = max(1, ⌊γ_sal·K⌋)` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AblationFanIn {
    /// `K = ⌊T / n⌋`, the constant fan-in before any ablation (reference).
    Initial,
    /// `K = F`, the dense fan-in (reference with `use_sparse_const_fan_in_for_ablation = False`).
    Dense,
    /// `K = ⌊n_active / active neurons⌋`, the current fan-in (this crate before issue 13).
    Current,
}

/// Among which weights the gradient half of the saliency set is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SalientGrow {
    /// All weights of the layer, kept ones included (reference).
    All,
    /// Only weights outside the keep set (this crate before issue 13).
    Unkept,
}

/// What happens to the keep budget of ablated neurons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AblatedBudget {
    /// Ablated neurons score lowest before the top-`n_keep`: surviving neurons keep
    /// more of their existing weights (reference).
    Redirect,
    /// The keep set is taken over all neurons; the ablated neurons' share is
    /// regrown as zero weights (this crate before issue 13).
    Discard,
}

/// SRigL settings.
#[derive(Config, Debug, PartialEq)]
pub struct SRigLConfig {
    /// Steps between topology updates (ΔT).
    #[config(default = 100)]
    pub delta_t: u64,
    /// No update from this fraction of training on.
    #[config(default = 0.75)]
    pub end_fraction: f64,
    /// Initial drop fraction α.
    #[config(default = 0.3)]
    pub drop_fraction: f64,
    /// How the drop fraction decays over the updates.
    #[config(default = "DropSchedule::Cosine")]
    pub drop_schedule: DropSchedule,
    /// Exponent k of the exponential decay.
    #[config(default = 3.0)]
    pub drop_exponent: f64,
    /// Minimum salient fraction of a neuron's fan-in to stay alive (γ_sal).
    #[config(default = 0.3)]
    pub gamma_sal: f64,
    /// Dynamic neuron ablation on or off.
    #[config(default = true)]
    pub ablation: bool,
    /// The fan-in γ_sal is a fraction of.
    #[config(default = "AblationFanIn::Initial")]
    pub ablation_fan_in: AblationFanIn,
    /// Among which weights the gradient-salient set is taken.
    #[config(default = "SalientGrow::All")]
    pub salient_grow: SalientGrow,
    /// What happens to the keep budget of ablated neurons.
    #[config(default = "AblatedBudget::Redirect")]
    pub ablated_budget: AblatedBudget,
    /// Steps of dense gradient averaged for the grow score (1 ≤ n ≤ ΔT).
    #[config(default = 1)]
    pub grad_window: u64,
    /// Skip the optimizer step on update steps.
    #[config(default = false)]
    pub skip_weight_update: bool,
}

/// The ablation and budget rules of one SRigL update (from [`SRigLConfig`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AblationRules {
    /// γ_sal.
    pub gamma_sal: f64,
    /// Ablation on (off for the last layer).
    pub ablation: bool,
    /// The fan-in of the threshold.
    pub fan_in: AblationFanIn,
    /// The gradient-salient set.
    pub salient: SalientGrow,
    /// The ablated neurons' budget.
    pub budget: AblatedBudget,
}

impl AblationRules {
    /// The rules of `config`.
    pub fn of(config: &SRigLConfig) -> Self {
        Self {
            gamma_sal: config.gamma_sal,
            ablation: config.ablation,
            fan_in: config.ablation_fan_in,
            salient: config.salient_grow,
            budget: config.ablated_budget,
        }
    }
}

/// The outcome of one SRigL update of one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerUpdate {
    /// The new mask.
    pub mask: Mask,
    /// The ablated neurons, in order.
    pub ablated: Vec<usize>,
    /// The ablation threshold τ used (0 when ablation is off).
    pub tau: usize,
    /// The constant fan-in `k` of the surviving neurons.
    pub k: usize,
}

/// SRigL's updater: RigL's scores with a constant fan-in and neuron ablation.
#[derive(Debug)]
pub struct SRigLUpdate {
    updates: UpdateSchedule,
    drop: DropFraction,
    rules: AblationRules,
    skip_weight_update: bool,
    window: GradWindow,
    targets: Vec<usize>,
}

/// SRigL.
pub type SRigL = DropGrowMethod<SRigLUpdate>;

impl SRigL {
    /// SRigL with `config` for a run of `total_steps`.
    pub fn new(config: &SRigLConfig, total_steps: u64) -> Result<Self> {
        let updates = UpdateSchedule::until_fraction(total_steps, config.end_fraction, config.delta_t)?;
        Self::with_schedule(config, updates)
    }

    /// SRigL with `config`, updating on `updates` (its ΔT and end fraction unused).
    pub fn with_schedule(config: &SRigLConfig, updates: UpdateSchedule) -> Result<Self> {
        updates.validate()?;
        if !(0.0..=1.0).contains(&config.gamma_sal) {
            return Err(SparseError::method(
                "srigl",
                "gamma_sal must be in [0, 1] (0.3 in the paper)",
            ));
        }
        if config.grad_window == 0 || config.grad_window > updates.interval {
            return Err(SparseError::method(
                "srigl",
                format!(
                    "grad_window {} must be between 1 and ΔT = {} (the reference's grad_accumulation_n: 1, or 8 for its ImageNet recipe)",
                    config.grad_window, updates.interval
                ),
            ));
        }
        Ok(Self::from_updater(SRigLUpdate {
            updates,
            drop: config
                .drop_schedule
                .with_alpha(config.drop_fraction, config.drop_exponent)?,
            rules: AblationRules::of(config),
            skip_weight_update: config.skip_weight_update,
            window: GradWindow::new(config.grad_window),
            targets: Vec::new(),
        }))
    }
}

/// One SRigL update of one layer (see the module docs): `weights` and `grow`
/// (the grow score, `|∇θ L|` or its window mean) in flat order, `target` the
/// layer's nonzero budget `T`.
#[allow(clippy::too_many_arguments)]
pub fn update_layer(
    layer: &SparseLayer,
    mask: &Mask,
    weights: &[f32],
    grow: &[f32],
    fraction: f64,
    target: usize,
    rules: &AblationRules,
) -> Result<LayerUpdate> {
    let (neurons, fan_in, n) = (layer.neurons(), layer.fan_in(), layer.numel());
    let drop = magnitudes(weights);
    let n_active = mask.count_ones();
    let mut n_drop = (fraction * n_active as f64).floor() as usize;
    let mut n_keep = n_active - n_drop;
    let nonzero = mask.iter_ones().filter(|&i| weights[i] != 0.0).count();
    if nonzero < n_keep {
        n_keep = nonzero;
        n_drop = n_active - n_keep;
    }
    let keep = top_k(mask.iter_ones().map(|i| i as u32), n_keep, |i| drop[i as usize]);
    let kept = Mask::from_indices(n, keep.iter().map(|&i| i as usize));

    let (ablated, tau) = if rules.ablation {
        neurons_to_ablate(layer, mask, &keep, &kept, grow, n_drop, target, rules)
    } else {
        (vec![false; neurons], 0)
    };
    let alive = ablated.iter().filter(|a| !**a).count();
    let k = (target / alive.max(1)).min(fan_in);
    if k == 0 {
        return Err(SparseError::RoundsToZero {
            layer: layer.path.clone(),
            pattern: "SRigL constant fan-in".into(),
            unit: "weights per neuron".into(),
            density: target as f64 / n as f64,
            neurons,
            fan_in,
        });
    }
    let kept = match rules.budget {
        AblatedBudget::Discard => kept,
        AblatedBudget::Redirect => {
            let candidates: Vec<u32> = (0..neurons)
                .filter(|&o| !ablated[o])
                .flat_map(|o| layer.neuron_indices(o))
                .map(|f| f as u32)
                .collect();
            let keep = top_k(candidates.iter().copied(), n_keep, |i| drop[i as usize]);
            Mask::from_indices(n, keep.iter().map(|&i| i as usize))
        }
    };
    let mut out = Mask::zeros(n);
    for o in (0..neurons).filter(|&o| !ablated[o]) {
        let row: Vec<u32> = layer.neuron_indices(o).map(|f| f as u32).collect();
        let kept_row = top_k(row.iter().copied().filter(|&f| kept.get(f as usize)), k, |f| {
            drop[f as usize]
        });
        for &f in &kept_row {
            out.set(f as usize, true);
        }
        let need = k - kept_row.len();
        for f in top_k(row.iter().copied().filter(|&f| !out.get(f as usize)), need, |f| {
            grow[f as usize]
        }) {
            out.set(f as usize, true);
        }
    }
    Ok(LayerUpdate {
        mask: out,
        ablated: (0..neurons).filter(|&o| ablated[o]).collect(),
        tau,
        k,
    })
}

/// Step 2 of the update: which neurons are ablated, and the threshold τ
/// (condensed-sparsity `_get_neurons_to_ablate`).
#[allow(clippy::too_many_arguments)]
fn neurons_to_ablate(
    layer: &SparseLayer,
    mask: &Mask,
    keep: &[u32],
    kept: &Mask,
    grow: &[f32],
    n_drop: usize,
    target: usize,
    rules: &AblationRules,
) -> (Vec<bool>, usize) {
    let (neurons, fan_in, n) = (layer.neurons(), layer.fan_in(), layer.numel());
    let salient_grow = match rules.salient {
        SalientGrow::All => top_k(0..n as u32, n_drop, |i| grow[i as usize]),
        SalientGrow::Unkept => top_k((0..n as u32).filter(|&i| !kept.get(i as usize)), n_drop, |i| {
            grow[i as usize]
        }),
    };
    let salient = Mask::from_indices(n, keep.iter().chain(&salient_grow).map(|&i| i as usize));
    let mut counts = vec![0usize; neurons];
    for i in salient.iter_ones() {
        counts[layer.neuron_of(i)] += 1;
    }
    let k_threshold = match rules.fan_in {
        AblationFanIn::Initial => target / neurons.max(1),
        AblationFanIn::Dense => fan_in,
        AblationFanIn::Current => {
            let active_neurons = (0..neurons)
                .filter(|&o| layer.neuron_indices(o).any(|f| mask.get(f)))
                .count()
                .max(1);
            mask.count_ones() / active_neurons
        }
    };
    let mut tau = ((rules.gamma_sal * k_threshold as f64).floor() as usize).max(1);
    let min_neurons = target / fan_in;
    let mut sorted = counts.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    if min_neurons < neurons && sorted[min_neurons] < tau {
        tau = sorted[min_neurons];
    }
    (counts.iter().map(|&c| c < tau).collect(), tau)
}

impl DropGrow for SRigLUpdate {
    fn sparse_execution(&self) -> SparseExecution {
        // grows by the dense gradient's magnitude on update steps
        SparseExecution::DenseGradientAtUpdates
    }

    fn name(&self) -> &'static str {
        "srigl"
    }

    fn updates(&self) -> &UpdateSchedule {
        &self.updates
    }

    fn drop_fraction(&self) -> Option<&DropFraction> {
        Some(&self.drop)
    }

    fn skip_optimizer(&self) -> bool {
        self.skip_weight_update
    }

    fn sparse_init(&self) -> SparseInit {
        <SRigLConfig as MethodSpec>::default_sparse_init()
    }

    fn needs_grads(&self, step: u64) -> bool {
        self.window.needs(&self.updates, step)
    }

    fn observe(&mut self, ctx: &StepContext<'_>) -> Result<()> {
        self.window.observe(&self.updates, ctx)
    }

    fn check(&mut self, plan: &Plan) -> Result<()> {
        if *plan.pattern() != Pattern::ConstantFanIn {
            return Err(SparseError::method(
                "srigl",
                "keeps a constant fan-in per neuron: set the pattern to constant fan-in",
            ));
        }
        self.targets = plan.raw_counts(plan.sparsity())?;
        Ok(())
    }

    fn begin_update(&mut self, ctx: &StepContext<'_>) -> Result<()> {
        if self.targets.len() != ctx.layers().len() {
            self.targets = ctx.plan().raw_counts(ctx.plan().sparsity())?;
        }
        Ok(())
    }

    fn scores(&self, ctx: &StepContext<'_>, l: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((magnitudes(&ctx.weights()?[l]), self.window.grow_scores(ctx, l)?))
    }

    fn update_layer(&self, ctx: &StepContext<'_>, l: usize, fraction: f64) -> Result<Mask> {
        let layer = &ctx.layers()[l];
        if self.targets[l] >= layer.numel() {
            return Ok(ctx.masks()[l].clone());
        }
        let rules = AblationRules {
            ablation: self.rules.ablation && l + 1 != ctx.layers().len(),
            ..self.rules
        };
        let grow = self.window.grow_scores(ctx, l)?;
        let update = update_layer(
            layer,
            &ctx.masks()[l],
            &ctx.weights()?[l],
            &grow,
            fraction,
            self.targets[l],
            &rules,
        )?;
        if !update.ablated.is_empty() {
            tracing::debug!(
                layer = %layer.path,
                step = ctx.step(),
                ablated = update.ablated.len(),
                tau = update.tau,
                k = update.k,
                "srigl ablation"
            );
        }
        Ok(update.mask)
    }

    fn end_update(&mut self) {
        self.window.clear();
    }

    fn save_state(&self) -> MethodState {
        self.window.save_state()
    }

    fn load_state(&mut self, state: MethodState) -> Result<()> {
        self.window.load_state(&state);
        Ok(())
    }
}

impl MethodSpec for SRigLConfig {
    const NAME: &'static str = "srigl";
    const SUMMARY: &'static str = "RigL with a constant fan-in and neuron ablation (Lasby et al. 2024)";
    const CHANGES_MASK: &'static str = "constant fan-in + ablation";
    const SWITCHES: &'static [Switch] = &[
        switches::DELTA_T,
        switches::END_FRACTION,
        switches::DROP_FRACTION,
        switches::DROP_SCHEDULE,
        switches::DROP_EXPONENT,
        Switch::new(
            "gamma_sal",
            "γ_sal: salient fraction of a neuron's fan-in to stay alive",
        ),
        Switch::new("ablation", "dynamic neuron ablation"),
        Switch::new(
            "ablation_fan_in",
            "initial, dense or current: the fan-in K of τ = ⌊γ_sal·K⌋",
        ),
        Switch::new(
            "salient_grow",
            "all or unkept: weights the gradient-salient set is taken from",
        ),
        Switch::new("ablated_budget", "redirect or discard: ablated neurons' keep budget"),
        Switch::new("grad_window", "steps of dense gradient averaged for growth"),
        switches::SKIP_WEIGHT_UPDATE,
    ];

    fn default_config() -> Self {
        Self::new()
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn sparse_core::Method>> {
        Ok(Box::new(SRigL::new(self, ctx.total_steps)?))
    }

    fn preferred_pattern() -> Option<Pattern> {
        Some(Pattern::ConstantFanIn)
    }

    fn default_sparse_init() -> SparseInit {
        SparseInit::GradFlow
    }
}
