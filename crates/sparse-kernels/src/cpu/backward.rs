//! Backward kernels of `y = x·Wᵀ` (SparseProp, Nikdan et al., ICML 2023, in
//! gather form so no two tasks write the same place):
//!
//! * `dX[b, c] = Σ_r dY[b, r]·W[r, c]`, over a compressed-column index;
//! * `dW[r, c] = Σ_b dY[b, r]·X[b, c]` at the stored positions only (SDDMM),
//!   on feature-major copies of `X` and `dY` so each dot product is contiguous.

use super::{SharedOut, for_chunks, for_each_index, transpose};
use crate::plan::PlanData;

/// Batches from which `dX` is computed feature-major (vectorised over the batch).
const FEATURE_MAJOR_FROM: usize = 8;

/// `dX: [batch, cols]` from `dY: [batch, rows]`.
///
/// Batch ≥ 8: feature-major, `dXᵀ[c, :] += W[r, c]·dYᵀ[r, :]` over column
/// `c`'s entries, one contiguous AXPY over the batch per nonzero (tasks over
/// columns, so no two write the same place). Smaller batches: one gather sum
/// per output element. Both add the same products in the same order (a
/// column's entries ascending), so they give the same bits.
pub fn transposed(plan: &PlanData, values: &[f32], dy: &[f32], batch: usize) -> Vec<f32> {
    if batch >= FEATURE_MAJOR_FROM {
        return transposed_feature_major(plan, values, dy, batch);
    }
    let (rows, cols) = (plan.rows, plan.cols);
    let csc = plan.csc();
    let mut dx = vec![0.0f32; batch * cols];
    for_chunks(&mut dx, cols, |b, dxb| {
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

/// [`transposed`] on feature-major copies of `dY` and `dX`.
fn transposed_feature_major(plan: &PlanData, values: &[f32], dy: &[f32], batch: usize) -> Vec<f32> {
    let (rows, cols) = (plan.rows, plan.cols);
    let csc = plan.csc();
    let dyt = transpose(dy, batch, rows);
    let mut dxt = vec![0.0f32; cols * batch];
    #[cfg(target_arch = "x86_64")]
    let avx2 = super::avx2::available();
    #[cfg(not(target_arch = "x86_64"))]
    let avx2 = false;
    for_chunks(&mut dxt, batch, |c, out| {
        let entries = csc.col_ptr[c] as usize..csc.col_ptr[c + 1] as usize;
        let column = Column {
            rows: &csc.row[entries.clone()],
            value_of: &csc.value[entries],
            values,
            dyt: &dyt,
            batch,
        };
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the CPU has AVX2 (checked above).
            return unsafe { column.accumulate_avx2(out) };
        }
        let _ = avx2;
        column.accumulate(out);
    });
    transpose(&dxt, cols, batch)
}

/// The entries of one column of `W` and what [`transposed_feature_major`]
/// multiplies them with.
struct Column<'a> {
    rows: &'a [u32],
    value_of: &'a [u32],
    values: &'a [f32],
    dyt: &'a [f32],
    batch: usize,
}

impl Column<'_> {
    /// `out += W[r, c]·dYᵀ[r, :]` over the column's entries, in order (a
    /// multiply then an add per element, so every instruction set gives the
    /// same bits).
    #[inline(always)]
    fn accumulate(&self, out: &mut [f32]) {
        for (&r, &v) in self.rows.iter().zip(self.value_of) {
            let w = self.values[v as usize];
            let r = r as usize;
            for (o, g) in out.iter_mut().zip(&self.dyt[r * self.batch..(r + 1) * self.batch]) {
                *o += w * g;
            }
        }
    }

    /// [`Column::accumulate`] compiled for AVX2 (8 lanes instead of SSE's 4).
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn accumulate_avx2(&self, out: &mut [f32]) {
        self.accumulate(out)
    }
}

/// `Σ a[i]·b[i]`: the AVX2 + FMA kernel where the CPU has it, else eight
/// partial sums (so the compiler can vectorise it), combined pairwise, then
/// the tail.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if super::avx2::available() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { super::avx2::dot(a, b) };
    }
    dot_portable(a, b)
}

fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Gradient of every stored value (0 at padding) from `dY: [batch, rows]`, `X: [batch, cols]`.
///
/// Tasks over rows write each entry's dot product straight into its value's
/// slot (every entry has its own slot), so no per-row buffers are allocated.
pub fn sddmm(plan: &PlanData, dy: &[f32], x: &[f32], batch: usize) -> Vec<f32> {
    let (rows, cols) = (plan.rows, plan.cols);
    let csr = plan.csr();
    let (dyt, xt) = (transpose(dy, batch, rows), transpose(x, batch, cols));
    let n = plan.n_values;
    let mut dv = vec![0.0f32; n];
    let out = SharedOut(dv.as_mut_ptr());
    for_each_index(rows, |r| {
        let g = &dyt[r * batch..(r + 1) * batch];
        for e in csr.row_ptr[r] as usize..csr.row_ptr[r + 1] as usize {
            let c = csr.col.get(e);
            let p = csr.value_of(e);
            assert!(p < n, "value slot out of range");
            // SAFETY: `p < n` (checked), and every entry of the view has its own
            // value slot (a permutation for CSR storage; the unpadded storage
            // positions for SELL and BSR), so no other task writes `p`.
            unsafe { out.write(p, dot(g, &xt[c * batch..(c + 1) * batch])) };
        }
    });
    dv
}

#[cfg(test)]
mod tests {
    use sparse_core::{Mask, Rng, SparseLayer};

    use super::*;
    use crate::formats::csr;
    use crate::plan::OpKind;

    #[test]
    fn feature_major_dx_equals_the_gather_form_bit_for_bit() {
        let mut rng = Rng::new(4);
        let (d_in, d_out) = (37, 29);
        let layer = SparseLayer::linear("fc.weight", d_in, d_out);
        let mask = Mask::from_indices(layer.numel(), (0..layer.numel()).filter(|_| rng.next_f64() < 0.3));
        let w: Vec<f32> = (0..layer.numel()).map(|_| rng.next_f32() - 0.5).collect();
        let built = csr::build(&layer, OpKind::Linear, &mask, &w);
        for batch in [8, 13, 40] {
            let dy: Vec<f32> = (0..batch * d_out).map(|_| rng.next_f32() - 0.5).collect();
            let fast = transposed(&built.plan, &built.values, &dy, batch);
            let gather: Vec<f32> = (0..batch)
                .flat_map(|b| transposed(&built.plan, &built.values, &dy[b * d_out..(b + 1) * d_out], 1))
                .collect();
            assert!(fast == gather, "batch {batch}");
            for b in 0..batch {
                for i in 0..d_in {
                    let want: f64 = (0..d_out)
                        .filter(|&o| mask.get(i * d_out + o))
                        .map(|o| f64::from(dy[b * d_out + o]) * f64::from(w[i * d_out + o]))
                        .sum();
                    assert!(
                        (f64::from(fast[b * d_in + i]) - want).abs() < 1e-5,
                        "batch {batch} ({b}, {i})"
                    );
                }
            }
        }
    }

    #[test]
    fn dot_equals_the_f64_sum() {
        let mut rng = Rng::new(9);
        for n in 0..100 {
            let (a, b): (Vec<f32>, Vec<f32>) = (0..n).map(|_| (rng.next_f32() - 0.5, rng.next_f32() - 0.5)).unzip();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
            assert!((f64::from(dot(&a, &b)) - want).abs() < 1e-5, "n {n}");
            assert!((f64::from(dot_portable(&a, &b)) - want).abs() < 1e-5, "n {n}");
        }
    }
}
