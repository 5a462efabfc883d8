//! The layer-wise reconstruction error SparseGPT minimises, `‖W·X − Ŵ·X‖²_F`, summed
//! over the calibration tokens. With `G = Σ_t x_t x_tᵀ` over the fan-in features it is
//! `Σ_rows δ·G·δᵀ`, `δ = W − Ŵ`, so it is computed from the accumulated statistics
//! without keeping any activation.

use super::matrix::Matrix;

/// `‖(W₀ − W₁)·X‖²_F` for `neurons × fan-in` weights and `gram = Σ_t x_t x_tᵀ`.
pub fn reconstruction_error(w0: &Matrix, w1: &Matrix, gram: &Matrix) -> f64 {
    assert_eq!(
        (w0.rows(), w0.cols()),
        (w1.rows(), w1.cols()),
        "weights differ in shape"
    );
    let delta = Matrix::from_fn(w0.rows(), w0.cols(), |r, c| w0.get(r, c) - w1.get(r, c));
    quadratic(&delta, gram)
}

/// `‖W·X‖²_F`, the dense output energy the error is relative to.
pub fn output_energy(w: &Matrix, gram: &Matrix) -> f64 {
    quadratic(w, gram)
}

fn quadratic(d: &Matrix, gram: &Matrix) -> f64 {
    let p = d.matmul(gram);
    p.data().iter().zip(d.data()).map(|(a, b)| a * b).sum::<f64>().max(0.0)
}
