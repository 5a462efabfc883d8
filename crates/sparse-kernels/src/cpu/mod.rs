//! Host kernels on plain slices (used by the flex backend): SELL-16 and CSR
//! sparse × dense products for linear layers, the transposed product and the
//! sampled dense-dense product (SDDMM) for the backward pass, and a direct
//! sparse convolution. Threads come from rayon's global pool (the one
//! burn-flex uses); SIMD code is compiled per instruction set through
//! `macerator::with_simd`, with the inner loops written as fixed-width arrays
//! that LLVM turns into vector FMAs.

#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
pub mod backward;
pub mod batch_norm;
pub mod bsr;
pub mod conv;
pub mod conv_backward;
pub mod csr;
mod pool;
pub mod sell;

/// The widest kernels the host code may run: a cap under what the CPU has,
/// for tests and benchmarks that compare the paths. Process-wide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum KernelLevel {
    /// The portable `macerator` code only.
    Portable,
    /// Up to the x86 AVX2 + FMA kernels ([`avx2`]).
    Avx2,
    /// Up to the x86 AVX-512 kernels ([`avx512`]): whatever the CPU has (the default).
    Fastest,
}

static LEVEL: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(KernelLevel::Fastest as u8);

/// Caps the kernels at `level` (every kernel still checks the CPU).
pub fn limit_kernels(level: KernelLevel) {
    LEVEL.store(level as u8, std::sync::atomic::Ordering::Relaxed);
}

/// The cap set by [`limit_kernels`].
pub fn kernel_limit() -> KernelLevel {
    match LEVEL.load(std::sync::atomic::Ordering::Relaxed) {
        0 => KernelLevel::Portable,
        1 => KernelLevel::Avx2,
        _ => KernelLevel::Fastest,
    }
}

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

    /// The pointer moved forward by `n` elements (the caller keeps it in bounds when used).
    #[inline(always)]
    pub fn offset(self, n: usize) -> SharedOut {
        SharedOut(self.0.wrapping_add(n))
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

/// Tasks worth splitting `work` multiply-adds into: one for small ops,
/// [`TASKS_PER_THREAD`] per thread otherwise (so that a helper that starts
/// late still finds tasks left, see [`pool`]).
pub(crate) fn tasks_for(work: usize) -> usize {
    if work < 1 << 15 {
        1
    } else {
        TASKS_PER_THREAD * rayon::current_num_threads().max(1)
    }
}

/// Tasks per thread of a split op ([`tasks_for`]).
pub(crate) const TASKS_PER_THREAD: usize = 4;

/// Runs `f` on every range, the calling thread first and rayon's workers as
/// they arrive ([`pool::run`]: batch-1 kernels last tens of µs, less than
/// waking a sleeping worker on a VM).
pub(crate) fn for_ranges<F>(ranges: &[std::ops::Range<usize>], f: F)
where
    F: Fn(std::ops::Range<usize>) + Sync,
{
    let helpers = rayon::current_num_threads().saturating_sub(1);
    pool::run(ranges.len(), helpers, &|t| f(ranges[t].clone()));
}

/// `f(i)` for every `i` in `0..n`, in parallel over [`pool::run`] (the
/// caller first): the drop-in for `(0..n).into_par_iter().for_each(f)`.
pub(crate) fn for_each_index<F: Fn(usize) + Sync>(n: usize, f: F) {
    pool::run(n, rayon::current_num_threads().saturating_sub(1), &f);
}

/// `f(i, chunk)` for every `len`-element chunk of `out` (the last may be
/// shorter), in parallel over [`pool::run`]: the drop-in for
/// `out.par_chunks_mut(len).enumerate().for_each(..)`.
pub(crate) fn for_chunks<T: Send, F: Fn(usize, &mut [T]) + Sync>(out: &mut [T], len: usize, f: F) {
    assert!(len > 0, "for_chunks: empty chunks");
    let total = out.len();
    let base = SendPtr(out.as_mut_ptr());
    for_each_index(total.div_ceil(len), |i| {
        let start = i * len;
        // SAFETY: chunk `i` is `start..start + len` clipped to `out`; each index runs once,
        // so no two tasks hold the same elements, and `out` is borrowed for the whole call.
        let chunk = unsafe { std::slice::from_raw_parts_mut(base.get().add(start), len.min(total - start)) };
        f(i, chunk)
    });
}

/// A raw pointer shared by tasks that touch disjoint elements.
struct SendPtr<T>(*mut T);

impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SendPtr<T> {}
// SAFETY: every user hands disjoint elements to different tasks.
unsafe impl<T: Send> Send for SendPtr<T> {}
unsafe impl<T: Send> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    fn get(self) -> *mut T {
        self.0
    }
}

/// Splits `0..n` into `parts` contiguous ranges of (almost) equal length.
pub(crate) fn even_ranges(n: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.clamp(1, n.max(1));
    (0..parts)
        .map(|p| n * p / parts..n * (p + 1) / parts)
        .filter(|r| !r.is_empty())
        .collect()
}

/// Transposes a row-major `[rows, cols]` matrix into `[cols, rows]`.
pub fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    assert_eq!(
        src.len(),
        rows * cols,
        "transpose: {} values for {rows}×{cols}",
        src.len()
    );
    let mut out = vec![0.0f32; rows * cols];
    if rows == 0 || cols == 0 {
        return out;
    }
    const T: usize = 32;
    // tasks over blocks of T output rows (T source columns), tiled T×T inside
    for_chunks(&mut out, T * rows, |block, chunk| {
        let c0 = block * T;
        let width = chunk.len() / rows;
        for r0 in (0..rows).step_by(T) {
            for r in r0..(r0 + T).min(rows) {
                let row = &src[r * cols + c0..r * cols + c0 + width];
                for (dc, &v) in row.iter().enumerate() {
                    chunk[dc * rows + r] = v;
                }
            }
        }
    });
    out
}

/// The packed N:4 offsets the x86 kernel reads, when it applies.
fn packed_n4(plan: &crate::plan::PlanData) -> Option<&[u32]> {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        return plan.nm4_packed();
    }
    let _ = plan;
    None
}

/// Batch below which SELL storage (condensed, N:M) runs the SELL kernel, one
/// sample after another; from it, the feature-major product, which must
/// gather the values into row order on every call. At 3072→768, batch 8
/// (`kernels -- --quick linear-3072`): the feature-major product took
/// 0.72 ms for constant fan-in at 90% and 3.3 ms for 2:4, eight batch-1
/// calls 0.4–0.55 ms and 1.1–1.2 ms; at batch 16 the two tied.
pub const SELL_BELOW_BATCH: usize = 16;

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
        Storage::Sell(s) if batch < SELL_BELOW_BATCH => {
            sell::forward(s, packed_n4(plan), values, x, plan.cols, batch, bias, act, out)
        }
        Storage::Bsr(b) if small => bsr::forward(b, values, x, plan.cols, batch, bias, act, out),
        _ => csr::forward(plan.csr(), values, x, plan.cols, batch, bias, act, out),
    }
}

#[cfg(test)]
mod transpose_tests {
    use super::transpose;

    /// Every shape, including sides that are not multiples of the tile and empty ones.
    #[test]
    fn transpose_moves_every_value_to_its_place() {
        for (rows, cols) in [(0, 5), (5, 0), (1, 1), (3, 70), (128, 33), (65, 64), (31, 97)] {
            let src: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let out = transpose(&src, rows, cols);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(out[c * rows + r], src[r * cols + c], "{rows}×{cols} at ({r}, {c})");
                }
            }
            assert_eq!(out.len(), src.len());
        }
    }
}
