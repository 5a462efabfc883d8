//! Cholesky factorisation, triangular inverse, and the upper Cholesky factor of
//! `H⁻¹` that SparseGPT sweeps with (Frantar & Alistarh 2023, Algorithm 1).
//!
//! SparseGPT needs `U` upper triangular with `H⁻¹ = UᵀU` (PyTorch's
//! `cholesky(cholesky_inverse(cholesky(H)), upper=True)`). Row `i` of `U`, divided by
//! `U_ii`, is the OBS update direction for column `i` once the columns before `i`
//! are fixed, since `U_ii² = [(H_{F,F})⁻¹]_{00}` and `U_ii·U_ij = [(H_{F,F})⁻¹]_{0,j−i}`
//! for `F = {i, …, c−1}`.
//!
//! The paper reaches `U` with three `O(c³)` steps (Cholesky of `H`, inverse, Cholesky
//! of the inverse). We use two: with `J` the reversal permutation, the lower Cholesky
//! factor `L̃` of `JHJ` gives `H = R·Rᵀ` with `R = J·L̃·J` upper triangular, hence
//! `H⁻¹ = R⁻ᵀR⁻¹`, and `U = R⁻¹ = J·L̃⁻¹·J` is upper triangular with a positive
//! diagonal: by uniqueness of the Cholesky factor it is the paper's `U`.
//!
//! Both steps are blocked (block 64): the small diagonal blocks are done with scalar
//! loops, everything else with [`gemm`](super::matrix). No crate in the dependency
//! tree offers a Cholesky (`faer` and `nalgebra` would add a heavy dependency for
//! two routines), so they are written here.

use super::matrix::{Matrix, gemm_into};

/// Block size of the blocked factorisations.
const NB: usize = 64;

/// A matrix that is not (numerically) positive definite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotPositiveDefinite {
    /// The first column whose pivot was not positive.
    pub column: usize,
}

/// Lower Cholesky factor `L` (`A = L·Lᵀ`) of the symmetric positive-definite `a`,
/// computed in place; only the lower triangle of `a` is read and the strict upper
/// triangle of the result is zero.
pub fn cholesky_lower(a: &mut Matrix) -> Result<(), NotPositiveDefinite> {
    let n = a.rows();
    assert_eq!(n, a.cols(), "Cholesky needs a square matrix");
    for k0 in (0..n).step_by(NB) {
        let k1 = (k0 + NB).min(n);
        factor_diagonal_block(a, k0, k1)?;
        if k1 == n {
            break;
        }
        // Panel: L21 = A21 · L11⁻ᵀ.
        let inv11 = invert_lower_small(&a.block(k0..k1, k0..k1));
        let a21 = a.block(k1..n, k0..k1);
        let mut panel = Matrix::zeros(n - k1, k1 - k0);
        let (pr, pc) = (panel.rows(), panel.cols());
        gemm_into(
            panel.view_mut(0..pr, 0..pc),
            a21.view(0..pr, 0..pc),
            inv11.view_t(0..pc, 0..pc),
            0.0,
            1.0,
        );
        for r in 0..pr {
            a.row_mut(k1 + r)[k0..k1].copy_from_slice(panel.row(r));
        }
        // Trailing update of the lower triangle, one block column at a time:
        // A[j0.., j0..j1] -= L21[j0..] · L21[j0..j1]ᵀ.
        for j0 in (k1..n).step_by(NB) {
            let j1 = (j0 + NB).min(n);
            gemm_into(
                a.view_mut(j0..n, j0..j1),
                panel.view(j0 - k1..pr, 0..pc),
                panel.view_t(j0 - k1..j1 - k1, 0..pc),
                1.0,
                -1.0,
            );
        }
    }
    for r in 0..n {
        a.row_mut(r)[r + 1..].fill(0.0);
    }
    Ok(())
}

/// Unblocked Cholesky of the diagonal block `[k0, k1)` (earlier blocks already
/// subtracted by the trailing updates).
fn factor_diagonal_block(a: &mut Matrix, k0: usize, k1: usize) -> Result<(), NotPositiveDefinite> {
    for j in k0..k1 {
        let rj: Vec<f64> = a.row(j)[k0..j].to_vec();
        let d = a.get(j, j) - rj.iter().map(|v| v * v).sum::<f64>();
        if !(d > 0.0 && d.is_finite()) {
            return Err(NotPositiveDefinite { column: j });
        }
        let d = d.sqrt();
        a.set(j, j, d);
        for i in j + 1..k1 {
            let dot: f64 = a.row(i)[k0..j].iter().zip(&rj).map(|(x, y)| x * y).sum();
            let v = (a.get(i, j) - dot) / d;
            a.set(i, j, v);
        }
    }
    Ok(())
}

/// Inverse of a small lower-triangular matrix by forward substitution.
fn invert_lower_small(l: &Matrix) -> Matrix {
    let n = l.rows();
    let mut x = Matrix::zeros(n, n);
    for i in 0..n {
        let d = l.get(i, i);
        x.set(i, i, 1.0 / d);
        for j in 0..i {
            let s: f64 = (j..i).map(|t| l.get(i, t) * x.get(t, j)).sum();
            x.set(i, j, -s / d);
        }
    }
    x
}

/// Inverse of a lower-triangular matrix with a nonzero diagonal (blocked, from the
/// last block column to the first: `X_jj = L_jj⁻¹`,
/// `X[j1.., j] = −X[j1.., j1..] · L[j1.., j] · X_jj`).
pub fn invert_lower(l: &Matrix) -> Matrix {
    let n = l.rows();
    assert_eq!(n, l.cols(), "triangular inverse needs a square matrix");
    let mut x = Matrix::zeros(n, n);
    let starts: Vec<usize> = (0..n).step_by(NB).collect();
    for &j0 in starts.iter().rev() {
        let j1 = (j0 + NB).min(n);
        let xjj = invert_lower_small(&l.block(j0..j1, j0..j1));
        for r in j0..j1 {
            x.row_mut(r)[j0..j1].copy_from_slice(xjj.row(r - j0));
        }
        if j1 == n {
            continue;
        }
        // T = X[j1.., j1..] · L[j1.., j0..j1], using that X is lower triangular.
        let mut t = Matrix::zeros(n - j1, j1 - j0);
        let tc = t.cols();
        for i0 in (j1..n).step_by(NB) {
            let i1 = (i0 + NB).min(n);
            gemm_into(
                t.view_mut(i0 - j1..i1 - j1, 0..tc),
                x.view(i0..i1, j1..i1),
                l.view(j1..i1, j0..j1),
                0.0,
                1.0,
            );
        }
        let tr = t.rows();
        gemm_into(
            x.view_mut(j1..n, j0..j1),
            t.view(0..tr, 0..tc),
            xjj.view(0..tc, 0..tc),
            0.0,
            -1.0,
        );
    }
    x
}

/// The upper-triangular `U` with `H⁻¹ = UᵀU` for a symmetric positive-definite `H`
/// (see the module docs for why this equals the paper's factor).
pub fn inverse_upper_factor(h: &Matrix) -> Result<Matrix, NotPositiveDefinite> {
    let n = h.rows();
    assert_eq!(n, h.cols(), "the Hessian must be square");
    let mut reversed = Matrix::from_fn(n, n, |r, c| h.get(n - 1 - r, n - 1 - c));
    cholesky_lower(&mut reversed).map_err(|e| NotPositiveDefinite {
        column: n - 1 - e.column,
    })?;
    let inv = invert_lower(&reversed);
    Ok(Matrix::from_fn(n, n, |r, c| inv.get(n - 1 - r, n - 1 - c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A random SPD matrix `B·Bᵀ + n·I` from a fixed LCG.
    fn spd(n: usize, seed: u64) -> Matrix {
        let mut s = seed;
        let mut next = move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        let b = Matrix::from_fn(n, n, |_, _| next());
        let mut h = b.matmul(&b.transpose());
        for i in 0..n {
            h.set(i, i, h.get(i, i) + 0.1 * n as f64);
        }
        h
    }

    fn max_abs_diff(a: &Matrix, b: &Matrix) -> f64 {
        a.data()
            .iter()
            .zip(b.data())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn cholesky_reconstructs_the_matrix_across_block_boundaries() {
        for n in [1, 5, 64, 65, 150] {
            let h = spd(n, n as u64);
            let mut l = h.clone();
            cholesky_lower(&mut l).unwrap();
            for r in 0..n {
                assert!(l.row(r)[r + 1..].iter().all(|v| *v == 0.0));
            }
            assert!(max_abs_diff(&l.matmul(&l.transpose()), &h) < 1e-9 * n as f64, "n = {n}");
        }
    }

    #[test]
    fn triangular_inverse_is_an_inverse() {
        for n in [3, 64, 130] {
            let mut l = spd(n, 7 + n as u64);
            cholesky_lower(&mut l).unwrap();
            let x = invert_lower(&l);
            assert!(max_abs_diff(&x.matmul(&l), &Matrix::identity(n)) < 1e-10, "n = {n}");
        }
    }

    #[test]
    fn a_non_positive_definite_matrix_is_refused() {
        let mut m = Matrix::from_vec(2, 2, vec![1.0, 2.0, 2.0, 1.0]).unwrap();
        assert_eq!(cholesky_lower(&mut m), Err(NotPositiveDefinite { column: 1 }));
    }

    /// The notes' worked example: H = [[2,1],[1,2]] gives U = [[√(2/3), −1/√6], [0, 1/√2]].
    #[test]
    fn worked_example_of_the_inverse_factor() {
        let h = Matrix::from_vec(2, 2, vec![2.0, 1.0, 1.0, 2.0]).unwrap();
        let u = inverse_upper_factor(&h).unwrap();
        let want = [(2.0f64 / 3.0).sqrt(), -1.0 / 6.0f64.sqrt(), 0.0, 1.0 / 2.0f64.sqrt()];
        for (g, w) in u.data().iter().zip(want) {
            assert!((g - w).abs() < 1e-14, "{:?}", u.data());
        }
    }

    /// UᵀU = H⁻¹, U upper with a positive diagonal, and row i of U is the trailing
    /// inverse: U_ii·U_ij = [(H_FF)⁻¹]_{0, j−i} for F = {i..n}.
    #[test]
    fn inverse_factor_identities() {
        let n = 70;
        let h = spd(n, 3);
        let u = inverse_upper_factor(&h).unwrap();
        for r in 0..n {
            assert!(u.get(r, r) > 0.0);
            assert!((0..r).all(|c| u.get(r, c) == 0.0));
        }
        let hinv_h = u.transpose().matmul(&u).matmul(&h);
        assert!(max_abs_diff(&hinv_h, &Matrix::identity(n)) < 1e-10);
        for i in [0, 1, 33, 64, 69] {
            let f = h.block(i..n, i..n);
            let mut lf = f.clone();
            cholesky_lower(&mut lf).unwrap();
            let li = invert_lower(&lf);
            let finv = li.transpose().matmul(&li);
            for j in i..n {
                let got = u.get(i, i) * u.get(i, j);
                assert!((got - finv.get(0, j - i)).abs() < 1e-12, "i = {i}, j = {j}");
            }
        }
    }
}
