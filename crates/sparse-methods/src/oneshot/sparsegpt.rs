//! SparseGPT (Frantar & Alistarh, "SparseGPT: Massive Language Models Can Be
//! Accurately Pruned in One-Shot", ICML 2023, Algorithm 1).
//!
//! For a layer `W ∈ R^{r×c}` (rows = neurons, columns = fan-in features) and its
//! calibration inputs `X ∈ R^{c×N}`, SparseGPT minimises `‖WX − ŴX‖²` under a mask by
//! Optimal Brain Surgeon updates with the Hessian `H = 2XXᵀ/N`:
//!
//! 1. dead inputs (`H_jj = 0`) get `H_jj := 1` and `W[:, j] := 0`;
//! 2. dampening `H ← H + λI`, `λ = percdamp · mean(diag H)` (`percdamp` = 0.01);
//! 3. `U` = upper Cholesky factor of `H⁻¹` ([`inverse_upper_factor`]);
//! 4. the columns are swept left to right in blocks of `B` (128). On entering a
//!    block, the mask of the whole block is chosen at once (*adaptive mask
//!    selection*): the OBS errors `ε_rj = W_rj² / U_jj²` of the current, already
//!    updated weights are ranked jointly over the `r × B` block and the lowest
//!    `⌊r·B·s⌋` are pruned (the reference prunes one more through its `≤ threshold`).
//!    Under N:M, at every column `i` with `(i − i1) mod M = 0` the `M − N` lowest `ε`
//!    of each row among columns `i … i+M−1` are pruned instead;
//! 5. for each column `i` of the block: `q` = the column with its pruned entries set to
//!    0, `e = (w − q)/U_ii`, `W[:, i+1..i2] −= e·U[i, i+1..i2]`, and `e` is stored in `E`;
//! 6. after the block, the lazy batched update `W[:, i2..] −= E·U[i1..i2, i2..]`.
//!
//! Column `i` ends at `q`. Everything is in `f64` on the host. Any positive multiple
//! of `XXᵀ` gives the same result (the dampening is relative), so the raw sum
//! `Σ_t x_t x_tᵀ` is passed in.
//!
//! With an interleaved mask the result is *not* the least-squares optimum of the
//! chosen mask: a kept column is frozen once the sweep has passed it, so pruning
//! a later column cannot correct it. It equals the optimum when every pruned column
//! precedes every kept one; the tests check both facts.

use sparse_core::{Result, SparseError};

use super::cholesky::inverse_upper_factor;
use super::matrix::{Matrix, gemm_into};
use super::target::{Target, keep_row, lowest, prune_count};

/// SparseGPT's two knobs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SparseGptSettings {
    /// Columns per lazy-update and mask-selection block (128 in the paper).
    pub block_size: usize,
    /// `percdamp`: the dampening `λ` as a fraction of the mean Hessian diagonal (0.01).
    pub dampening: f64,
}

impl Default for SparseGptSettings {
    fn default() -> Self {
        Self {
            block_size: 128,
            dampening: 0.01,
        }
    }
}

impl SparseGptSettings {
    /// Checks the settings against a layer of `fan_in` columns under `target`.
    pub fn check(&self, fan_in: usize, target: Target) -> Result<()> {
        if self.block_size == 0 {
            return Err(SparseError::InvalidConfig(
                "SparseGPT block size must be at least 1 (the paper uses 128)".into(),
            ));
        }
        if !(self.dampening.is_finite() && self.dampening >= 0.0) {
            return Err(SparseError::InvalidConfig(format!(
                "SparseGPT dampening {} must be a finite number >= 0 (the paper uses 0.01)",
                self.dampening
            )));
        }
        if let Target::NM { n, m } = target {
            if m == 0 || n > m || !fan_in.is_multiple_of(m) {
                return Err(SparseError::InvalidConfig(format!(
                    "N:M {n}:{m} needs 1 <= M, N <= M and M dividing the fan-in {fan_in}"
                )));
            }
            if !self.block_size.is_multiple_of(m) {
                return Err(SparseError::InvalidConfig(format!(
                    "SparseGPT block size {} must be a multiple of M = {m} so N:M groups stay aligned; use e.g. 128",
                    self.block_size
                )));
            }
        }
        Ok(())
    }
}

/// Prunes `w` (`neurons × fan-in`) in place with `gram = Σ_t x_t x_tᵀ` (`fan-in ×
/// fan-in`) and returns the keep flags (row-major, `false` = pruned; pruned weights
/// are exactly 0 in `w`).
pub fn sparsegpt_prune(
    w: &mut Matrix,
    gram: &Matrix,
    target: Target,
    settings: SparseGptSettings,
) -> Result<Vec<bool>> {
    let (rows, cols) = (w.rows(), w.cols());
    if gram.rows() != cols || gram.cols() != cols {
        return Err(SparseError::InvalidConfig(format!(
            "SparseGPT: the Hessian is {}x{} but the layer has fan-in {cols}",
            gram.rows(),
            gram.cols()
        )));
    }
    settings.check(cols, target)?;
    if target.is_dense() {
        return Ok(vec![true; rows * cols]);
    }
    let u = damped_inverse_factor(w, gram, settings.dampening)?;
    let mut keep = vec![true; rows * cols];
    for i1 in (0..cols).step_by(settings.block_size) {
        let i2 = (i1 + settings.block_size).min(cols);
        if let Target::Sparsity(s) = target {
            select_block(w, &u, i1, i2, s, &mut keep);
        }
        let err = sweep_block(w, &u, i1, i2, target, &mut keep);
        if i2 < cols {
            let (er, ec) = (err.rows(), err.cols());
            gemm_into(
                w.view_mut(0..rows, i2..cols),
                err.view(0..er, 0..ec),
                u.view(i1..i2, i2..cols),
                1.0,
                -1.0,
            );
        }
    }
    Ok(keep)
}

/// Steps 1–3: dead inputs, dampening, `U`.
fn damped_inverse_factor(w: &mut Matrix, gram: &Matrix, dampening: f64) -> Result<Matrix> {
    let cols = gram.cols();
    if gram.data().iter().any(|v| !v.is_finite()) {
        return Err(SparseError::InvalidConfig(
            "SparseGPT: the calibration activations contain NaN or infinity; check the calibration data and the model"
                .into(),
        ));
    }
    let mut h = gram.clone();
    for j in 0..cols {
        if h.get(j, j) == 0.0 {
            h.set(j, j, 1.0);
            for r in 0..w.rows() {
                w.set(r, j, 0.0);
            }
        }
    }
    let lambda = dampening * (0..cols).map(|j| h.get(j, j)).sum::<f64>() / cols as f64;
    for j in 0..cols {
        h.set(j, j, h.get(j, j) + lambda);
    }
    inverse_upper_factor(&h).map_err(|e| {
        SparseError::InvalidConfig(format!(
            "SparseGPT: the dampened Hessian is not positive definite (column {}); raise the dampening above {dampening}",
            e.column
        ))
    })
}

/// Adaptive mask selection of the block `[i1, i2)`: the `⌊r·B·s⌋` lowest `W²/U_jj²`.
fn select_block(w: &Matrix, u: &Matrix, i1: usize, i2: usize, sparsity: f64, keep: &mut [bool]) {
    let (rows, cols, width) = (w.rows(), w.cols(), i2 - i1);
    let mut scores = Vec::with_capacity(rows * width);
    for r in 0..rows {
        for j in i1..i2 {
            let d = u.get(j, j);
            scores.push(w.get(r, j).powi(2) / (d * d));
        }
    }
    for idx in lowest(&scores, prune_count(rows * width, sparsity)) {
        keep[(idx / width) * cols + i1 + idx % width] = false;
    }
}

/// Steps 4 (N:M selection) and 5 over the block; returns `E` (`rows × (i2 − i1)`).
fn sweep_block(w: &mut Matrix, u: &Matrix, i1: usize, i2: usize, target: Target, keep: &mut [bool]) -> Matrix {
    let (rows, cols) = (w.rows(), w.cols());
    let mut err = Matrix::zeros(rows, i2 - i1);
    for i in i1..i2 {
        if let Target::NM { m, .. } = target
            && (i - i1).is_multiple_of(m)
        {
            select_group(w, u, i, m, target, keep);
        }
        let d = u.get(i, i);
        let urow = &u.row(i)[i + 1..i2];
        for r in 0..rows {
            let wv = w.get(r, i);
            let q = if keep[r * cols + i] { wv } else { 0.0 };
            let e = (wv - q) / d;
            err.set(r, i - i1, e);
            let row = w.row_mut(r);
            row[i] = q;
            if e != 0.0 {
                for (x, uv) in row[i + 1..i2].iter_mut().zip(urow) {
                    *x -= e * uv;
                }
            }
        }
    }
    err
}

/// N:M selection of the group of columns `[i, i + m)` in every row.
fn select_group(w: &Matrix, u: &Matrix, i: usize, m: usize, target: Target, keep: &mut [bool]) {
    let cols = w.cols();
    for r in 0..w.rows() {
        let scores: Vec<f64> = (i..i + m)
            .map(|j| {
                let d = u.get(j, j);
                w.get(r, j).powi(2) / (d * d)
            })
            .collect();
        for (k, kept) in keep_row(&scores, target).into_iter().enumerate() {
            keep[r * cols + i + k] = kept;
        }
    }
}
