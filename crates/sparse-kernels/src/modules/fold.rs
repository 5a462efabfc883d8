//! Folding an inference-mode BatchNorm into the preceding convolution:
//! `s = γ / √(σ² + ε)`, `W'[o] = s[o]·W[o]`, `b'[o] = s[o]·(b[o] − μ[o]) + β[o]`
//! (Ioffe & Szegedy 2015, with running statistics). Zeros of the weight stay
//! zero, so the mask is unchanged.

use burn::nn::BatchNorm;

use super::host;
use crate::error::{KernelError, Result};

/// Folds `bn` into `weights` (`[out, ...]` row-major, neuron-major) and `bias` in place.
pub fn fold_batch_norm(bn: &BatchNorm, weights: &mut [f32], bias: &mut [f32]) -> Result<()> {
    let gamma = host(bn.gamma.val())?;
    let beta = host(bn.beta.val())?;
    let mean = host(bn.running_mean.value())?;
    let var = host(bn.running_var.value())?;
    let out = bias.len();
    if gamma.len() != out || out == 0 || !weights.len().is_multiple_of(out) {
        return Err(KernelError::InvalidConfig(format!(
            "BatchNorm over {} channels cannot follow a layer with {out} outputs",
            gamma.len()
        )));
    }
    let per = weights.len() / out;
    for o in 0..out {
        let s = gamma[o] / (var[o] + bn.epsilon as f32).sqrt();
        weights[o * per..(o + 1) * per].iter_mut().for_each(|w| *w *= s);
        bias[o] = s * (bias[o] - mean[o]) + beta[o];
    }
    Ok(())
}
