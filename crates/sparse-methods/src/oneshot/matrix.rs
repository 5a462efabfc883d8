//! Dense row-major `f64` matrices on the host, and the one product the one-shot
//! algorithms need, `C ← β·C + α·A·B` on (strided) sub-blocks.
//!
//! The product goes through the [`gemm`] crate (already in Burn's dependency tree: it
//! is Flex's matrix multiply, so it adds nothing to the build); it runs at
//! BLAS-like speed even in debug builds, which keeps SparseGPT's O(c³) Hessian work
//! fast. Large products are split by rows over the available cores with scoped threads.

use sparse_core::{Result, SparseError};

/// A dense row-major matrix of `f64`.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

impl Matrix {
    /// All zeros.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// The identity.
    pub fn identity(n: usize) -> Self {
        let mut m = Self::zeros(n, n);
        for i in 0..n {
            m.data[i * n + i] = 1.0;
        }
        m
    }

    /// From row-major values; errors when `data.len() != rows · cols`.
    pub fn from_vec(rows: usize, cols: usize, data: Vec<f64>) -> Result<Self> {
        if data.len() != rows * cols {
            return Err(SparseError::InvalidConfig(format!(
                "a {rows}x{cols} matrix needs {} values, got {}",
                rows * cols,
                data.len()
            )));
        }
        Ok(Self { rows, cols, data })
    }

    /// From a function of (row, column), called in row-major order.
    pub fn from_fn(rows: usize, cols: usize, mut f: impl FnMut(usize, usize) -> f64) -> Self {
        let data = (0..rows * cols).map(|i| f(i / cols, i % cols)).collect();
        Self { rows, cols, data }
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row-major values.
    pub fn data(&self) -> &[f64] {
        &self.data
    }

    /// Mutable row-major values.
    pub fn data_mut(&mut self) -> &mut [f64] {
        &mut self.data
    }

    /// The row-major values.
    pub fn into_vec(self) -> Vec<f64> {
        self.data
    }

    /// Entry `(r, c)`.
    pub fn get(&self, r: usize, c: usize) -> f64 {
        self.data[r * self.cols + c]
    }

    /// Sets entry `(r, c)`.
    pub fn set(&mut self, r: usize, c: usize, v: f64) {
        self.data[r * self.cols + c] = v;
    }

    /// Row `r`.
    pub fn row(&self, r: usize) -> &[f64] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// Mutable row `r`.
    pub fn row_mut(&mut self, r: usize) -> &mut [f64] {
        &mut self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// The transpose.
    pub fn transpose(&self) -> Self {
        Self::from_fn(self.cols, self.rows, |r, c| self.get(c, r))
    }

    /// `self · other`.
    pub fn matmul(&self, other: &Self) -> Self {
        assert_eq!(self.cols, other.rows, "matmul: inner dimensions differ");
        let mut out = Self::zeros(self.rows, other.cols);
        let (r, c) = (out.rows, out.cols);
        gemm_into(
            out.view_mut(0..r, 0..c),
            self.view(0..self.rows, 0..self.cols),
            other.view(0..other.rows, 0..other.cols),
            0.0,
            1.0,
        );
        out
    }

    /// The sub-block `rows × cols` as a view.
    pub(crate) fn view(&self, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>) -> View<'_> {
        assert!(rows.end <= self.rows && cols.end <= self.cols, "view out of range");
        View::new(
            &self.data[(rows.start * self.cols + cols.start).min(self.data.len())..],
            rows.len(),
            cols.len(),
            self.cols,
            1,
        )
    }

    /// The transpose of the sub-block `rows × cols` as a view (`cols.len() × rows.len()`).
    pub(crate) fn view_t(&self, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>) -> View<'_> {
        assert!(rows.end <= self.rows && cols.end <= self.cols, "view out of range");
        View::new(
            &self.data[(rows.start * self.cols + cols.start).min(self.data.len())..],
            cols.len(),
            rows.len(),
            1,
            self.cols,
        )
    }

    /// The sub-block `rows × cols` as a mutable view.
    pub(crate) fn view_mut(&mut self, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>) -> ViewMut<'_> {
        assert!(rows.end <= self.rows && cols.end <= self.cols, "view out of range");
        let start = (rows.start * self.cols + cols.start).min(self.data.len());
        ViewMut::new(&mut self.data[start..], rows.len(), cols.len(), self.cols)
    }

    /// A copy of the sub-block `rows × cols`.
    pub(crate) fn block(&self, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>) -> Self {
        let (r0, c0) = (rows.start, cols.start);
        Self::from_fn(rows.len(), cols.len(), |r, c| self.get(r0 + r, c0 + c))
    }
}

/// A read-only strided view: entry `(r, c)` is `data[r·rs + c·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    data: &'a [f64],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> View<'a> {
    fn new(data: &'a [f64], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        if rows > 0 && cols > 0 {
            assert!((rows - 1) * rs + (cols - 1) * cs < data.len(), "view exceeds its data");
        }
        Self {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    fn rows_range(self, r0: usize, r1: usize) -> Self {
        let start = (r0 * self.rs).min(self.data.len());
        Self::new(&self.data[start..], r1 - r0, self.cols, self.rs, self.cs)
    }
}

/// A mutable row-major view with row stride `rs >= cols`: rows never overlap.
pub(crate) struct ViewMut<'a> {
    data: &'a mut [f64],
    rows: usize,
    cols: usize,
    rs: usize,
}

impl<'a> ViewMut<'a> {
    fn new(data: &'a mut [f64], rows: usize, cols: usize, rs: usize) -> Self {
        assert!(rows <= 1 || rs >= cols, "rows of a mutable view must not overlap");
        if rows > 0 && cols > 0 {
            assert!((rows - 1) * rs + cols <= data.len(), "view exceeds its data");
        }
        Self { data, rows, cols, rs }
    }

    /// Splits after `r` rows.
    fn split_rows(self, r: usize) -> (Self, Self) {
        let at = (r * self.rs).min(self.data.len());
        let (a, b) = self.data.split_at_mut(at);
        (
            Self::new(a, r, self.cols, self.rs),
            Self::new(b, self.rows - r, self.cols, self.rs),
        )
    }
}

/// Work (multiply–adds) above which a product is split over threads.
const PARALLEL_WORK: usize = 1 << 22;

/// `dst ← beta·dst + alpha·a·b` (`beta = 0` does not read `dst`).
pub(crate) fn gemm_into(dst: ViewMut<'_>, a: View<'_>, b: View<'_>, beta: f64, alpha: f64) {
    assert!(
        a.rows == dst.rows && b.cols == dst.cols && a.cols == b.rows,
        "gemm: shapes {}x{} · {}x{} -> {}x{}",
        a.rows,
        a.cols,
        b.rows,
        b.cols,
        dst.rows,
        dst.cols
    );
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(16);
    let work = dst.rows * dst.cols * a.cols;
    if threads > 1 && work >= PARALLEL_WORK && dst.rows >= 2 * threads {
        let chunk = dst.rows.div_ceil(threads);
        std::thread::scope(|s| {
            let mut rest = dst;
            let mut r0 = 0;
            while rest.rows > 0 {
                let take = chunk.min(rest.rows);
                let (head, tail) = rest.split_rows(take);
                let a_part = a.rows_range(r0, r0 + take);
                s.spawn(move || gemm_serial(head, a_part, b, beta, alpha));
                rest = tail;
                r0 += take;
            }
        });
    } else {
        gemm_serial(dst, a, b, beta, alpha);
    }
}

fn gemm_serial(dst: ViewMut<'_>, a: View<'_>, b: View<'_>, beta: f64, alpha: f64) {
    if dst.rows == 0 || dst.cols == 0 {
        return;
    }
    if a.cols == 0 {
        for r in 0..dst.rows {
            for v in &mut dst.data[r * dst.rs..r * dst.rs + dst.cols] {
                *v *= beta;
            }
        }
        return;
    }
    // SAFETY: the constructors of `View`/`ViewMut` checked that every addressed
    // element (`r·rs + c·cs` for r < rows, c < cols) lies inside its slice, and the
    // shapes agree (asserted above). `dst` is a unique borrow, so it cannot alias `a`
    // or `b`; its rows do not overlap (`rs >= cols`, column stride 1). gemm reads
    // `dst` only when `read_dst` is true.
    unsafe {
        gemm::gemm(
            dst.rows,
            dst.cols,
            a.cols,
            dst.data.as_mut_ptr(),
            1,
            dst.rs as isize,
            beta != 0.0,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            beta,
            alpha,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &Matrix, b: &Matrix) -> Matrix {
        Matrix::from_fn(a.rows(), b.cols(), |r, c| {
            (0..a.cols()).map(|k| a.get(r, k) * b.get(k, c)).sum()
        })
    }

    #[test]
    fn matmul_matches_the_definition() {
        let a = Matrix::from_fn(7, 5, |r, c| (r as f64 - 2.0) * 0.3 + c as f64 * 0.7);
        let b = Matrix::from_fn(5, 3, |r, c| (r * 3 + c) as f64 * 0.1 - 0.4);
        let got = a.matmul(&b);
        let want = naive(&a, &b);
        for (g, w) in got.data().iter().zip(want.data()) {
            assert!((g - w).abs() < 1e-12);
        }
    }

    #[test]
    fn strided_blocks_and_transposes() {
        // C[1..3, 2..4] -= A[0..2, 1..3] · B[1..3, 0..2]ᵀ
        let a = Matrix::from_fn(4, 4, |r, c| (r * 4 + c) as f64);
        let b = Matrix::from_fn(4, 4, |r, c| (r as f64) - (c as f64) * 0.5);
        let mut c = Matrix::from_fn(4, 5, |r, c| (r + c) as f64);
        let before = c.clone();
        gemm_into(
            c.view_mut(1..3, 2..4),
            a.view(0..2, 1..3),
            b.view_t(1..3, 0..2),
            1.0,
            -1.0,
        );
        for r in 0..4 {
            for col in 0..5 {
                let mut want = before.get(r, col);
                if (1..3).contains(&r) && (2..4).contains(&col) {
                    let (i, j) = (r - 1, col - 2);
                    want -= (0..2).map(|k| a.get(i, 1 + k) * b.get(1 + j, k)).sum::<f64>();
                }
                assert!((c.get(r, col) - want).abs() < 1e-12, "({r},{col})");
            }
        }
    }

    #[test]
    fn large_products_split_over_threads_agree() {
        let a = Matrix::from_fn(300, 130, |r, c| ((r * 7 + c * 13) % 17) as f64 - 8.0);
        let b = Matrix::from_fn(130, 200, |r, c| ((r * 5 + c * 3) % 11) as f64 - 5.0);
        assert_eq!(a.matmul(&b), naive(&a, &b));
    }
}
