//! SRigL: structured RigL with a constant fan-in and dynamic neuron ablation
//! (Lasby, Golubeva, Evci, Nica & Ioannou, "Dynamic Sparse Training with
//! Structured Sparsity", ICLR 2024; reference `calgaryml/condensed-sparsity`).
//!
//! Every active neuron (output channel) has exactly `k` active fan-in weights,
//! `k = ⌊d·N / n_active_neurons⌋`, so a layer can be stored condensed as
//! `[n_active, k]` values + indices. Updates run on RigL's schedule (cosine drop
//! fraction α = 0.3, ΔT, T_end). At an update, per layer:
//!
//! 1. `n_drop = ⌊f(t)·n_active⌋`, `n_keep = n_active − n_drop` (fewer if fewer weights are nonzero);
//! 2. **ablation** (not in the last layer): saliency set `S = TopK(|θ|, n_keep) ∪
//!    TopK(|∇θ L|, n_drop)`; neuron `i` is ablated when `|S_i| < τ`,
//!    `τ = max(1, ⌊γ_sal·K⌋)` (`K` = the current constant fan-in, or the dense fan-in
//!    with `sparse_fan_in_for_ablation = false`), lowered if needed so that at least
//!    `⌊N·d / fan_in⌋` neurons survive;
//! 3. `k = ⌊N·d / n_active_neurons⌋`; keep the `n_keep` largest `|θ|` of active
//!    neurons, at most `k` per neuron;
//! 4. every active neuron grows its largest-`|∇θ L|` inactive weights back to `k`.
//!
//! Grown weights are 0 with zero optimizer state. Requires `Pattern::ConstantFanIn`.
//! Defaults follow the reference: γ_sal = 0.3, the update applied after the
//! optimizer step (`skip_weight_update = false`).

use burn::config::Config;
use sparse_core::method::StepContext;
use sparse_core::select::top_k;
use sparse_core::{DropFraction, DropSchedule, Mask, Pattern, Plan, Result, SparseError, SparseLayer, UpdateSchedule};

use crate::drop_grow::{DropGrow, DropGrowMethod, switches};
use crate::registry::{BuildContext, MethodSpec, Switch};
use crate::scores::magnitudes;

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
    /// γ_sal applies to the sparse constant fan-in (else to the dense fan-in).
    #[config(default = true)]
    pub sparse_fan_in_for_ablation: bool,
    /// Skip the optimizer step on update steps.
    #[config(default = false)]
    pub skip_weight_update: bool,
}

/// SRigL's updater: RigL's scores with a constant fan-in and neuron ablation.
#[derive(Debug)]
pub struct SRigLUpdate {
    updates: UpdateSchedule,
    drop: DropFraction,
    gamma_sal: f64,
    ablation: bool,
    sparse_fan_in: bool,
    skip_weight_update: bool,
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
        Ok(Self::from_updater(SRigLUpdate {
            updates,
            drop: config
                .drop_schedule
                .with_alpha(config.drop_fraction, config.drop_exponent)?,
            gamma_sal: config.gamma_sal,
            ablation: config.ablation,
            sparse_fan_in: config.sparse_fan_in_for_ablation,
            skip_weight_update: config.skip_weight_update,
            targets: Vec::new(),
        }))
    }
}

/// One SRigL update of one layer (see the module docs). `target` is the layer's
/// nonzero budget `d·N`; `last` disables ablation.
#[allow(clippy::too_many_arguments)]
pub fn update_layer(
    layer: &SparseLayer,
    mask: &Mask,
    weights: &[f32],
    grads: &[f32],
    fraction: f64,
    target: usize,
    gamma_sal: f64,
    ablation: bool,
    sparse_fan_in: bool,
) -> Result<Mask> {
    let (neurons, fan_in, n) = (layer.neurons(), layer.fan_in(), layer.numel());
    let drop = magnitudes(weights);
    let grow: Vec<f32> = grads.iter().map(|g| g.abs()).collect();
    let n_active = mask.count_ones();
    let n_drop = (fraction * n_active as f64).floor() as usize;
    let nonzero = mask.iter_ones().filter(|&i| weights[i] != 0.0).count();
    let n_keep = (n_active - n_drop).min(nonzero);
    let keep = top_k(mask.iter_ones().map(|i| i as u32), n_keep, |i| drop[i as usize]);
    let kept = Mask::from_indices(n, keep.iter().map(|&i| i as usize));

    let mut ablated = vec![false; neurons];
    if ablation {
        let salient_grow = top_k((0..n as u32).filter(|&i| !kept.get(i as usize)), n_drop, |i| {
            grow[i as usize]
        });
        let mut counts = vec![0usize; neurons];
        for i in keep.iter().chain(&salient_grow) {
            counts[layer.neuron_of(*i as usize)] += 1;
        }
        let active_neurons = (0..neurons)
            .filter(|&o| layer.neuron_indices(o).any(|f| mask.get(f)))
            .count()
            .max(1);
        let k_now = if sparse_fan_in {
            n_active / active_neurons
        } else {
            fan_in
        };
        let mut tau = ((gamma_sal * k_now as f64).floor() as usize).max(1);
        let min_neurons = target / fan_in;
        let mut sorted = counts.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        if min_neurons < neurons && sorted[min_neurons] < tau {
            tau = sorted[min_neurons];
        }
        for (a, c) in ablated.iter_mut().zip(&counts) {
            *a = *c < tau;
        }
    }
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
    Ok(out)
}

impl DropGrow for SRigLUpdate {
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

    fn needs_grads(&self, step: u64) -> bool {
        self.updates.is_update_step(step)
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
        let grow = ctx.grads()?[l].iter().map(|g| g.abs()).collect();
        Ok((magnitudes(&ctx.weights()?[l]), grow))
    }

    fn update_layer(&self, ctx: &StepContext<'_>, l: usize, fraction: f64) -> Result<Mask> {
        let layer = &ctx.layers()[l];
        if self.targets[l] >= layer.numel() {
            return Ok(ctx.masks()[l].clone());
        }
        update_layer(
            layer,
            &ctx.masks()[l],
            &ctx.weights()?[l],
            &ctx.grads()?[l],
            fraction,
            self.targets[l],
            self.gamma_sal,
            self.ablation && l + 1 != ctx.layers().len(),
            self.sparse_fan_in,
        )
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
            "sparse_fan_in_for_ablation",
            "γ_sal applies to the sparse fan-in (else the dense)",
        ),
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
}
