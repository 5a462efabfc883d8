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
use sparse_core::method::{InitContext, Method, Needs, StepContext};
use sparse_core::select::top_k;
use sparse_core::{DropFraction, Mask, Pattern, Result, SparseError, SparseLayer, UpdateSchedule};

use crate::init::{magnitudes, random_masks};

/// SRigL settings.
#[derive(Config, Debug)]
pub struct SRigLConfig {
    /// When updates run.
    pub updates: UpdateSchedule,
    /// Drop fraction (cosine, α = 0.3).
    #[config(default = "DropFraction::Cosine { alpha: 0.3 }")]
    pub drop_fraction: DropFraction,
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

/// SRigL.
#[derive(Debug)]
pub struct SRigL {
    config: SRigLConfig,
    targets: Vec<usize>,
}

impl SRigL {
    /// SRigL with `config`.
    pub fn new(config: SRigLConfig) -> Self {
        Self {
            config,
            targets: Vec::new(),
        }
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

impl Method for SRigL {
    fn name(&self) -> &'static str {
        "srigl"
    }

    fn init(&mut self, ctx: &mut InitContext<'_>, masks: &mut [Mask]) -> Result<()> {
        self.config.updates.validate()?;
        self.config.drop_fraction.validate()?;
        if *ctx.plan.pattern() != Pattern::ConstantFanIn {
            return Err(SparseError::method(
                "srigl",
                "keeps a constant fan-in per neuron: set the pattern to constant fan-in",
            ));
        }
        if !(0.0..=1.0).contains(&self.config.gamma_sal) {
            return Err(SparseError::method(
                "srigl",
                "gamma_sal must be in [0, 1] (0.3 in the paper)",
            ));
        }
        self.targets = ctx.plan.raw_counts(ctx.plan.sparsity())?;
        masks.clone_from_slice(&random_masks(ctx)?);
        Ok(())
    }

    fn needs(&self, step: u64) -> Needs {
        let update = self.config.updates.is_update_step(step);
        Needs {
            grads: update,
            update,
            skip_optimizer: update && self.config.skip_weight_update,
        }
    }

    fn on_step(&mut self, ctx: &mut StepContext<'_>) -> Result<()> {
        if self.targets.len() != ctx.layers().len() {
            self.targets = ctx.plan.raw_counts(ctx.plan.sparsity())?;
        }
        let fraction = self.drop_fraction(ctx.step).unwrap_or(0.0);
        let last = ctx.layers().len() - 1;
        for l in 0..ctx.layers().len() {
            let layer = &ctx.plan.layers()[l];
            if self.targets[l] >= layer.numel() {
                continue;
            }
            ctx.masks[l] = update_layer(
                layer,
                &ctx.masks[l],
                &ctx.weights[l],
                &ctx.grads[l],
                fraction,
                self.targets[l],
                self.config.gamma_sal,
                self.config.ablation && l != last,
                self.config.sparse_fan_in_for_ablation,
            )?;
        }
        Ok(())
    }

    fn drop_fraction(&self, step: u64) -> Option<f64> {
        Some(self.config.drop_fraction.at(self.config.updates.progress(step)))
    }
}
