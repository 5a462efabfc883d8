//! Host kernels on plain slices (used by the flex backend): SELL-16 and CSR
//! sparse × dense products for linear layers, the transposed product and the
//! sampled dense-dense product (SDDMM) for the backward pass, and a direct
//! sparse convolution. Threads come from rayon's global pool (the one
//! burn-flex uses); SIMD code is compiled per instruction set through
//! `macerator::with_simd`, with the inner loops written as fixed-width arrays
//! that LLVM turns into vector FMAs.

pub mod backward;
pub mod bsr;
pub mod conv;
pub mod csr;
pub mod sell;

/// A raw output pointer shared by tasks that write disjoint ranges.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(pub *mut f32);
// SAFETY: every user writes disjoint index ranges from different tasks.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// Writes `v` at `i`.
    ///
    /// # Safety
    /// `i` must be in bounds and no other task may touch index `i`.
    #[inline(always)]
    pub unsafe fn write(self, i: usize, v: f32) {
        unsafe { *self.0.add(i) = v }
    }

    /// The `len` values from `start` as a slice.
    ///
    /// # Safety
    /// The range must be in bounds and touched by no other task while the slice lives.
    #[inline(always)]
    pub unsafe fn slice<'a>(self, start: usize, len: usize) -> &'a mut [f32] {
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }
}

/// Splits `0..n` rows into `parts` ranges with about equal `prefix` weight
/// (`prefix` has `n + 1` ascending entries, e.g. CSR row pointers).
pub(crate) fn balanced_ranges(prefix: &[u32], parts: usize) -> Vec<std::ops::Range<usize>> {
    let n = prefix.len() - 1;
    let total = prefix[n] as u64;
    let mut cuts = vec![0usize];
    for p in 1..parts {
        let target = (total * p as u64 / parts as u64) as u32;
        let cut = prefix.partition_point(|&v| v < target).min(n);
        cuts.push(cut.max(*cuts.last().unwrap_or(&0)));
    }
    cuts.push(n);
    cuts.windows(2).map(|w| w[0]..w[1]).filter(|r| !r.is_empty()).collect()
}

/// Threads worth using for `work` multiply-adds (small ops stay on one thread).
pub(crate) fn threads_for(work: usize) -> usize {
    if work < 1 << 15 {
        1
    } else {
        rayon::current_num_threads().max(1)
    }
}

/// Transposes a row-major `[rows, cols]` matrix into `[cols, rows]`.
pub fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; rows * cols];
    const T: usize = 32;
    for r0 in (0..rows).step_by(T) {
        for c0 in (0..cols).step_by(T) {
            for r in r0..(r0 + T).min(rows) {
                for c in c0..(c0 + T).min(cols) {
                    out[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
    out
}

/// `out[b, r] = act(bias[r] + Σ W[r, c]·x[b, c])`, choosing the kernel from the
/// plan's storage and the batch size.
pub fn linear_forward(
    plan: &crate::plan::PlanData,
    values: &[f32],
    x: &[f32],
    batch: usize,
    bias: &[f32],
    act: crate::activation::Activation,
    out: &mut [f32],
) {
    use crate::plan::Storage;
    let small = batch < csr::TILED_FROM_BATCH;
    match &plan.storage {
        Storage::Sell(s) if small => sell::forward(s, values, x, plan.cols, batch, bias, act, out),
        Storage::Bsr(b) if small => bsr::forward(b, values, x, plan.cols, batch, bias, act, out),
        _ => csr::forward(plan.csr(), values, x, plan.cols, batch, bias, act, out),
    }
}
