//! Magnitude pruning, the baseline of the Wanda and SparseGPT papers: the weights
//! with the smallest `|W_ij|` go, compared over the **whole layer** (one threshold per
//! layer, as Wanda's `prune_magnitude`; we prune exactly `⌊numel · s⌋`, the reference
//! one more unless there are ties). Under N:M, the `M − N` smallest of each group of
//! `M` consecutive fan-in weights go. No calibration data is needed and no weight is
//! updated.

use super::matrix::Matrix;
use super::target::{Target, keep_row, lowest, prune_count};

/// Keep flags (row-major over `neurons × fan-in`, `false` = pruned).
pub fn magnitude_keep(w: &Matrix, target: Target) -> Vec<bool> {
    match target {
        Target::Sparsity(s) => {
            let scores: Vec<f64> = w.data().iter().map(|v| v.abs()).collect();
            let mut keep = vec![true; scores.len()];
            for i in lowest(&scores, prune_count(scores.len(), s)) {
                keep[i] = false;
            }
            keep
        }
        Target::NM { .. } => (0..w.rows())
            .flat_map(|r| {
                let scores: Vec<f64> = w.row(r).iter().map(|v| v.abs()).collect();
                keep_row(&scores, target)
            })
            .collect(),
    }
}
