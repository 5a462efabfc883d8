//! Pieces the methods share: random initial masks, magnitudes, and the
//! drop/grow exchange over every layer.

use sparse_core::method::{InitContext, StepContext};
use sparse_core::{Mask, Result, SparseError};

/// Uniformly random masks under the plan's distribution and pattern: every
/// weight (or unit) gets a uniform score from the run's counter-based RNG and the
/// plan keeps the top ones. Deterministic per (seed, weight path).
pub fn random_masks(ctx: &InitContext<'_>) -> Result<Vec<Mask>> {
    let scores: Vec<Vec<f32>> = ctx
        .layers()
        .iter()
        .enumerate()
        .map(|(l, layer)| ctx.rng(l, "init").scores(layer.numel()))
        .collect();
    ctx.plan.select(&scores, ctx.plan.sparsity())
}

/// Magnitude `|w|` of every weight.
pub fn magnitudes(weights: &[f32]) -> Vec<f32> {
    weights.iter().map(|w| w.abs()).collect()
}

/// `|w|` for active weights and `−∞` for pruned ones, so pruning by magnitude never
/// brings a pruned weight back.
pub fn active_magnitudes(weights: &[Vec<f32>], masks: &[Mask]) -> Vec<Vec<f32>> {
    weights
        .iter()
        .zip(masks)
        .map(|(w, m)| {
            let mut s = magnitudes(w);
            for (i, x) in s.iter_mut().enumerate() {
                if !m.get(i) {
                    *x = f32::NEG_INFINITY;
                }
            }
            s
        })
        .collect()
}

/// For every layer that is not dense, drops `⌊fraction·active units⌋` units with
/// the lowest drop score and grows as many with the highest grow score, inside
/// the plan's pattern. `scores(ctx, l)` returns `(drop, grow)` scores of layer `l`.
pub fn exchange_all(
    ctx: &mut StepContext<'_>,
    fraction: f64,
    mut scores: impl FnMut(&StepContext<'_>, usize) -> (Vec<f32>, Vec<f32>),
) {
    for l in 0..ctx.layers().len() {
        let layer = &ctx.plan.layers()[l];
        if ctx.masks[l].count_ones() == layer.numel() {
            continue; // a dense layer has nothing to exchange
        }
        let (drop, grow) = scores(ctx, l);
        let pattern = ctx.plan.pattern();
        let n_drop = (fraction * pattern.active_units(layer, &ctx.masks[l]) as f64).floor() as usize;
        let new = pattern.exchange(layer, &ctx.masks[l], &drop, &grow, n_drop);
        ctx.masks[l] = new;
    }
}

/// The error for a data-driven method initialised without data.
pub fn needs_data(method: &str) -> SparseError {
    SparseError::method(
        method,
        "scores weights with gradients on data: initialise with `Sparsifier::init_with(model, |model, request| ...)`",
    )
}
