//! Mask initialisation shared by the methods.

use sparse_core::method::InitContext;
use sparse_core::{Mask, Result};

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
