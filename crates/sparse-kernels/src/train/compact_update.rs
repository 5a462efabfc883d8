//! SET's and RigL's topology updates computed on the compact layers
//! themselves: drop scores over the active values, growth by the tiled
//! `|Xᵀ·dY|` top-`k` ([`grow_top_k`]) or by counter-based random scores
//! ([`random_top_k`]). No tensor, mask-sized score vector or host copy of
//! the layer's dense shape is built, only the masks (one bit per position),
//! so layers of billions of weights update in `O(nnz)` memory.
//!
//! Each update is the one of `sparse-methods`' drop/grow updater (Evci et
//! al., "Rigging the Lottery", ICML 2020, §3; Mocanu et al., Nature
//! Communications 2018): at the update steps of an [`UpdateSchedule`], every
//! layer that is not dense keeps its `n − k` active weights of highest
//! `|w|` (plus RigL's drop noise), `k = ⌊f(t)·n⌋`, and grows the `k`
//! positions outside the kept set with the highest grow score; grown weights
//! start at 0 and their optimizer moments at 0. The drop noise and SET's
//! random scores come from the same counter-based streams as the masked-dense
//! methods (seed, weight path, step, purpose), so for the same weights and
//! gradients the masks are identical; only the order in which `|Xᵀ·dY|` is
//! summed can differ in the last bits (ties documented in
//! `docs/sparse-execution.md`).

use burn::optim::GradientsParams;
use rayon::prelude::*;
pub use sparse_core::Growth;
use sparse_core::select::{pack, unpack_id};
use sparse_core::{CompactRule, DropFraction, Mask, MaskedOptimizer, Rng, SparseLayer, UpdateSchedule};

use super::compact_step::CompactModel;
use super::growth::{grow_top_k, keep_largest, random_top_k};
use crate::error::{KernelError, Result};

/// The stream of SET's random grow scores (`sparse-methods`' `set.rs`).
pub const SET_GROW_STREAM: &str = "set-grow";
/// The stream of RigL's drop noise (`sparse-methods`' `rigl.rs`).
pub const RIGL_NOISE_STREAM: &str = "rigl-noise";
/// The stream of the random initial masks (`sparse-methods`' `random_masks`).
pub const INIT_STREAM: &str = "init";

/// A drop/grow rule run on compact layers (see the module docs), for
/// unstructured masks (the pattern of the drop/grow methods' defaults).
#[derive(Clone, Debug)]
pub struct CompactUpdate {
    /// How positions are grown and the drop scores' noise (the method's
    /// `Method::compact_rule`).
    pub rule: CompactRule,
    /// When updates run.
    pub updates: UpdateSchedule,
    /// The drop fraction over the schedule's progress.
    pub drop: DropFraction,
    /// No optimizer step on update steps (RigL's reference).
    pub skip_optimizer: bool,
    /// The run's seed (the streams of the drop noise and random growth).
    pub seed: u64,
    /// Output columns per tile of the gradient growth.
    pub tile: usize,
}

/// The inputs of a gradient growth: the layer's input `x` `[batch, d_in]`
/// and the gradient `dy` of its pre-activation output `[batch, d_out]`.
#[derive(Clone, Debug)]
pub struct GrowthTrace {
    /// The layer's input, row-major.
    pub x: Vec<f32>,
    /// The gradient of the layer's output before its activation, row-major.
    pub dy: Vec<f32>,
    /// Rows of both.
    pub batch: usize,
}

impl CompactUpdate {
    /// Checks the settings: the schedule, the drop fraction, a finite
    /// non-negative drop noise and a tile of at least one column.
    pub fn validate(&self) -> Result<()> {
        let invalid = |e: sparse_core::SparseError| KernelError::InvalidConfig(e.to_string());
        self.updates.validate().map_err(invalid)?;
        self.drop.validate().map_err(invalid)?;
        if !(self.rule.drop_noise.is_finite() && self.rule.drop_noise >= 0.0) {
            return Err(KernelError::InvalidConfig(format!(
                "drop noise {} must be a finite number >= 0 (RigL: 1e-5, SET: 0)",
                self.rule.drop_noise
            )));
        }
        if self.tile == 0 {
            return Err(KernelError::InvalidConfig(
                "the gradient growth's tile must hold at least one output column (256 is a good size)".into(),
            ));
        }
        Ok(())
    }

    /// Whether a topology update runs at `step` (0-based, as the `Sparsifier` counts).
    pub fn is_update_step(&self, step: u64) -> bool {
        self.updates.is_update_step(step)
    }

    /// Whether the update at `step` needs [`GrowthTrace`]s.
    pub fn needs_trace(&self, step: u64) -> bool {
        self.rule.growth == Growth::Gradient && self.is_update_step(step)
    }

    /// Whether the optimizer steps at `step`.
    pub fn optimizer_steps(&self, step: u64) -> bool {
        !(self.skip_optimizer && self.is_update_step(step))
    }

    /// The drop fraction at `step`.
    pub fn fraction(&self, step: u64) -> f64 {
        self.drop.at(self.updates.progress(step))
    }

    /// The new mask of one layer at an update step: `values` are its active
    /// weights at the flat positions `positions` (any order), `mask` its mask.
    pub fn layer_mask(
        &self,
        step: u64,
        layer: &SparseLayer,
        mask: &Mask,
        values: &[f32],
        positions: &[usize],
        trace: Option<&GrowthTrace>,
    ) -> Result<Mask> {
        let at = UpdateAt {
            seed: self.seed,
            step,
            fraction: self.fraction(step),
            tile: self.tile,
        };
        exchange(&self.rule, &at, (layer, mask), (values, positions), trace)
    }
}

/// Where in a run an update takes place: the run's seed (the streams of the
/// drop noise and the random growth), the step, the drop fraction `f(t)`
/// at that step, and the output columns per tile of the gradient growth.
#[derive(Clone, Copy, Debug)]
pub struct UpdateAt {
    /// The run's seed.
    pub seed: u64,
    /// The update step (0-based, as the `Sparsifier` counts).
    pub step: u64,
    /// The drop fraction at `step`.
    pub fraction: f64,
    /// Output columns per tile of the gradient growth ([`super::GROWTH_TILE`]).
    pub tile: usize,
}

/// The new mask of one layer (`layer` under `mask`) by `rule` at `at`:
/// `values` are its active weights at the flat positions `positions` (any
/// order); `trace` its input and output gradient (gradient growth only).
pub fn exchange(
    rule: &CompactRule,
    at: &UpdateAt,
    (layer, mask): (&SparseLayer, &Mask),
    (values, positions): (&[f32], &[usize]),
    trace: Option<&GrowthTrace>,
) -> Result<Mask> {
    let active = mask.count_ones();
    if values.len() != active || positions.len() != active {
        return Err(KernelError::shape(
            &layer.path,
            format!(
                "{} values at {} positions for a mask of {active} active weights",
                values.len(),
                positions.len()
            ),
        ));
    }
    if let Some(&f) = positions.iter().find(|&&f| f >= layer.numel() || !mask.get(f)) {
        return Err(KernelError::shape(
            &layer.path,
            format!("position {f} is not an active position of the mask; pass the layer's own positions"),
        ));
    }
    let n_drop = (at.fraction * active as f64).floor() as usize;
    if active == layer.numel() || n_drop == 0 {
        return Ok(mask.clone()); // a dense layer, or nothing to exchange
    }
    let kept = kept(
        rule.drop_noise,
        at,
        layer,
        values,
        positions,
        active - n_drop.min(active),
    )?;
    let grow_n = active - kept.count_ones();
    let grown = match (rule.growth, trace) {
        (Growth::Random, _) => {
            let start = Rng::for_layer(at.seed, &layer.path, at.step, SET_GROW_STREAM);
            random_top_k(layer, Some(&kept), grow_n, &start)?
        }
        (Growth::Gradient, Some(t)) => grow_top_k(layer, &t.x, &t.dy, t.batch, &kept, grow_n, at.tile)?,
        (Growth::Gradient, None) => {
            return Err(KernelError::shape(
                &layer.path,
                format!(
                    "gradient growth at step {} needs the layer's input and output gradient (a GrowthTrace): give the layer an output probe of the batch's rows before the forward pass (`compact_prepare` with `Some(rows)`, or `with_output_probes`)",
                    at.step
                ),
            ));
        }
    };
    let mut out = kept;
    for f in grown {
        out.set(f as usize, true);
    }
    Ok(out)
}

/// The `n_keep` active positions of highest `|w|` (plus the drop noise of
/// std `noise`, drawn per flat position as RigL's `add_noise_at` draws it).
fn kept(
    noise: f64,
    at: &UpdateAt,
    layer: &SparseLayer,
    values: &[f32],
    positions: &[usize],
    n_keep: usize,
) -> Result<Mask> {
    let stream = Rng::for_layer(at.seed, &layer.path, at.step, RIGL_NOISE_STREAM);
    let score = |(&v, &f): (&f32, &usize)| -> Result<u64> {
        let id = u32::try_from(f).map_err(|_| {
            KernelError::shape(
                &layer.path,
                "more than 2³² weights: flat ids do not fit u32; split the layer",
            )
        })?;
        let mut score = v.abs();
        if noise > 0.0 {
            let mut r = stream.clone();
            r.skip(2 * f as u64); // a normal sample takes two draws
            score += (r.normal() * noise) as f32;
        }
        Ok(pack(score, id))
    };
    // every active weight is scored (the noise draws dominate, so in parallel);
    // the kept ones are the `n_keep` best, in no particular order
    let mut keys = values
        .par_iter()
        .zip(positions)
        .map(score)
        .collect::<Result<Vec<u64>>>()?;
    keep_largest(&mut keys, n_keep);
    Ok(Mask::from_indices(
        layer.numel(),
        keys.into_iter().map(|key| unpack_id(key) as usize),
    ))
}

/// The random initial mask of `layer` with `count` active weights: the
/// positions of the `count` largest scores of `Rng::for_layer(seed, path, 0,
/// "init").scores(numel)`, the mask `sparse-methods`' `random_masks` picks
/// for an unstructured plan, computed without the score vector.
pub fn random_mask(layer: &SparseLayer, count: usize, seed: u64) -> Result<Mask> {
    let start = Rng::for_layer(seed, &layer.path, 0, INIT_STREAM);
    let ids = random_top_k(layer, None, count, &start)?;
    Ok(Mask::from_indices(layer.numel(), ids.into_iter().map(|f| f as usize)))
}

/// The topology update of every layer of `model` at `step` (call at an
/// update step, after the optimizer step when the rule takes one): new masks
/// by `rule`, kept values carried over, grown ones at 0, and the optimizer
/// state re-aligned (grown entries' moments 0). `traces[i]` is layer `i`'s
/// [`GrowthTrace`] (needed for gradient growth).
pub fn update_model<M: CompactModel>(
    model: M,
    rule: &CompactUpdate,
    optimizer: &mut MaskedOptimizer,
    step: u64,
    traces: &[Option<GrowthTrace>],
) -> Result<M> {
    rule.validate()?;
    model.try_map_compact(&mut |i, layer| {
        let values = layer.values_host()?;
        let trace = traces.get(i).and_then(Option::as_ref);
        let mask = rule.layer_mask(step, layer.layer(), layer.mask(), &values, &layer.positions(), trace)?;
        if &mask == layer.mask() {
            return Ok(layer);
        }
        let (layer, map) = layer.with_kept_values(mask)?;
        optimizer.realign(layer.values.id, &layer.values_path(), &map);
        Ok(layer)
    })
}

/// `model` with an output probe of `batch` rows on every layer (see
/// [`super::CompactLinear::with_output_probe`]), for a step that grows by the gradient.
pub fn with_output_probes<M: CompactModel>(model: M, batch: usize) -> Result<M> {
    model.try_map_compact(&mut |_, layer| Ok(layer.with_output_probe(batch)))
}

/// Removes the output probes' gradients from `grads` and pairs each with the
/// input its layer recorded in the forward pass, as that layer's
/// [`GrowthTrace`] (`None` for a layer without a probe).
pub fn take_traces<M: CompactModel>(model: M, grads: &mut GradientsParams) -> Result<(M, Vec<Option<GrowthTrace>>)> {
    let mut traces = Vec::new();
    let model = model.try_map_compact(&mut |_, mut layer| {
        traces.push(layer.take_trace(grads)?);
        Ok(layer)
    })?;
    Ok((model, traces))
}
