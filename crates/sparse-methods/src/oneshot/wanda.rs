//! Wanda: pruning by weights and activations (Sun, Liu, Bair & Kolter, "A Simple and
//! Effective Pruning Approach for Large Language Models", arXiv 2306.11695).
//!
//! Each weight is scored by its magnitude times the norm of its input feature over
//! the calibration tokens,
//!
//! ```text
//! S_ij = |W_ij| · ‖X_j‖₂,
//! ```
//!
//! and the comparison group is **each output neuron** (a row of the paper's
//! `W ∈ R^{out×in}`; a column of Burn's `[d_input, d_output]` Linear weight): in every
//! row the `⌊fan_in · s⌋` lowest scores are pruned (stable ascending order, so ties
//! go to the lower fan-in index), so every neuron ends at sparsity `s`. Under N:M,
//! the `M − N` lowest scores of every aligned group of `M` fan-in weights go. No
//! weight is updated. For a conv the features are the im2col patches in
//! [`sparse_core::SparseLayer::flat`] order (the paper prunes Linear layers only;
//! this is the natural extension, each group of a grouped conv being its own layer).

use super::matrix::Matrix;
use super::target::{Target, keep_row};

/// `|W_ij| · sqrt(feature_sq[j])` for `w` as `neurons × fan-in` and `feature_sq[j] = Σ_t X_tj²`.
pub fn wanda_scores(w: &Matrix, feature_sq: &[f64]) -> Matrix {
    assert_eq!(w.cols(), feature_sq.len(), "one squared norm per fan-in feature");
    let norms: Vec<f64> = feature_sq.iter().map(|s| s.max(0.0).sqrt()).collect();
    Matrix::from_fn(w.rows(), w.cols(), |r, c| w.get(r, c).abs() * norms[c])
}

/// Keep flags (row-major over `neurons × fan-in`, `false` = pruned), compared per row.
pub fn wanda_keep(w: &Matrix, feature_sq: &[f64], target: Target) -> Vec<bool> {
    let scores = wanda_scores(w, feature_sq);
    (0..w.rows()).flat_map(|r| keep_row(scores.row(r), target)).collect()
}
