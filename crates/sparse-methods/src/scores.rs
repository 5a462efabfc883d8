//! Scores the methods share: uniform random scores for a random initial mask,
//! and weight magnitudes, with pruned weights ranked last.

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
    ctx.plan().select(&scores, ctx.plan().sparsity())
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
