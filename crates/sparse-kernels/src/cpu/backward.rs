//! Backward kernels of `y = x·Wᵀ` (SparseProp, Nikdan et al., ICML 2023, in
//! gather form so no two tasks write the same place):
//!
//! * `dX[b, c] = Σ_r dY[b, r]·W[r, c]`, over a compressed-column index;
//! * `dW[r, c] = Σ_b dY[b, r]·X[b, c]` at the stored positions only (SDDMM),
//!   on feature-major copies of `X` and `dY` so each dot product is contiguous.

use rayon::prelude::*;

use super::transpose;
use crate::plan::PlanData;

/// `dX: [batch, cols]` from `dY: [batch, rows]`.
pub fn transposed(plan: &PlanData, values: &[f32], dy: &[f32], batch: usize) -> Vec<f32> {
    let (rows, cols) = (plan.rows, plan.cols);
    let csc = plan.csc();
    let mut dx = vec![0.0f32; batch * cols];
    dx.par_chunks_mut(cols).enumerate().for_each(|(b, dxb)| {
        let dyb = &dy[b * rows..(b + 1) * rows];
        for (c, out) in dxb.iter_mut().enumerate() {
            let mut s = 0.0f32;
            for e in csc.col_ptr[c] as usize..csc.col_ptr[c + 1] as usize {
                s += values[csc.value[e] as usize] * dyb[csc.row[e] as usize];
            }
            *out = s;
        }
    });
    dx
}

/// Gradient of every stored value (0 at padding) from `dY: [batch, rows]`, `X: [batch, cols]`.
pub fn sddmm(plan: &PlanData, dy: &[f32], x: &[f32], batch: usize) -> Vec<f32> {
    let (rows, cols) = (plan.rows, plan.cols);
    let csr = plan.csr();
    let (dyt, xt) = (transpose(dy, batch, rows), transpose(x, batch, cols));
    let per_row: Vec<Vec<(usize, f32)>> = (0..rows)
        .into_par_iter()
        .map(|r| {
            let g = &dyt[r * batch..(r + 1) * batch];
            (csr.row_ptr[r] as usize..csr.row_ptr[r + 1] as usize)
                .map(|e| {
                    let xc = &xt[csr.col.get(e) * batch..(csr.col.get(e) + 1) * batch];
                    (csr.value_of(e), g.iter().zip(xc).map(|(a, b)| a * b).sum())
                })
                .collect()
        })
        .collect();
    let mut dv = vec![0.0f32; plan.n_values];
    for (p, g) in per_row.into_iter().flatten() {
        dv[p] = g;
    }
    dv
}
