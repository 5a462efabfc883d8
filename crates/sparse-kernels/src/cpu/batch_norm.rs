//! Batch normalisation in training mode on host slices, one channel per
//! task: the forward pass in three sweeps over a channel's values (mean,
//! variance about it, then the normalised output with an optional ReLU) and
//! its backward pass in two, where Burn's primitive composition takes a
//! dozen whole-tensor operations and two transposed copies
//! (`docs/sparse-execution.md`, "Batch norm").
//!
//! Ioffe & Szegedy (2015), "Batch Normalization", Algorithm 1 and its
//! gradient: with `m` values per channel, `x̂ = (x − μ)/√(σ² + ε)` (σ² the
//! biased variance), `y = γ·x̂ + β`, and for the output gradient `g`
//!
//! ```text
//! ∂β = Σ g,   ∂γ = Σ g·x̂,   ∂x = γ/√(σ² + ε) · (g − ∂β/m − x̂·∂γ/m).
//! ```
//!
//! With a ReLU after it, `g` is the incoming gradient where `γ·x̂ + β > 0`
//! and 0 elsewhere, computed from the same expression as the forward pass.
//! Sums run in f32 lanes per block of a sample's values and in f64 across
//! blocks.

use super::{SharedOut, for_each_index};
use crate::activation::Activation;

/// The layout of an `[n, c, s]` tensor (`s`: the spatial size, 1 for `[n, c]`).
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Samples.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Values per sample and channel.
    pub s: usize,
}

impl Layout {
    /// The `s` values of sample `i` in channel `ch`.
    fn block(self, i: usize, ch: usize) -> std::ops::Range<usize> {
        let start = (i * self.c + ch) * self.s;
        start..start + self.s
    }

    /// Values per channel.
    fn per_channel(self) -> f64 {
        (self.n * self.s) as f64
    }
}

/// What the forward pass returns: the output, the batch mean and the biased
/// batch variance per channel.
#[derive(Debug)]
pub struct Forward {
    /// `act(γ·x̂ + β)`, laid out as the input.
    pub y: Vec<f32>,
    /// μ per channel.
    pub mean: Vec<f32>,
    /// σ² per channel (biased: divided by the values per channel).
    pub var: Vec<f32>,
}

/// What the backward pass returns.
#[derive(Debug)]
pub struct Backward {
    /// ∂x, laid out as the input.
    pub dx: Vec<f32>,
    /// ∂γ per channel.
    pub dgamma: Vec<f32>,
    /// ∂β per channel.
    pub dbeta: Vec<f32>,
}

/// Σ of `f(v)` over a block: 16 f32 lanes, then f64.
#[inline(always)]
fn lane_sum(xs: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut lanes = [0.0f32; 16];
    let chunks = xs.chunks_exact(16);
    let tail: f64 = chunks.remainder().iter().map(|&v| f(v) as f64).sum();
    for chunk in chunks {
        for (l, &v) in lanes.iter_mut().zip(chunk) {
            *l += f(v);
        }
    }
    lanes.iter().map(|&l| l as f64).sum::<f64>() + tail
}

/// `(scale, shift)` with `γ·x̂ + β = x·scale + shift`.
fn affine(gamma: f32, beta: f32, mean: f32, var: f32, eps: f64) -> (f32, f32, f32) {
    let inv_std = (1.0 / (var as f64 + eps).sqrt()) as f32;
    let scale = gamma * inv_std;
    (scale, beta - mean * scale, inv_std)
}

/// Panics unless `x` holds `layout` and γ, β one value per channel.
fn check_sizes(len: usize, layout: Layout, gamma: usize, beta: usize) {
    assert_eq!(len, layout.n * layout.c * layout.s, "batch norm: input size");
    assert!(
        gamma == layout.c && beta == layout.c,
        "batch norm: γ has {gamma} and β {beta} values for an input of {} channels",
        layout.c
    );
}

/// The forward pass over `x` laid out as `layout`.
pub fn forward(x: &[f32], layout: Layout, gamma: &[f32], beta: &[f32], eps: f64, act: Activation) -> Forward {
    check_sizes(x.len(), layout, gamma.len(), beta.len());
    let relu = act == Activation::Relu;
    let mut out = Forward {
        y: vec![0.0; x.len()],
        mean: vec![0.0; layout.c],
        var: vec![0.0; layout.c],
    };
    let (y, mean, var) = (
        SharedOut(out.y.as_mut_ptr()),
        SharedOut(out.mean.as_mut_ptr()),
        SharedOut(out.var.as_mut_ptr()),
    );
    for_each_index(layout.c, |ch| {
        let blocks = || (0..layout.n).map(|i| layout.block(i, ch));
        let mu = blocks().map(|r| lane_sum(&x[r], |v| v)).sum::<f64>() / layout.per_channel();
        let m = mu as f32;
        let sq = blocks().map(|r| lane_sum(&x[r], |v| (v - m) * (v - m))).sum::<f64>();
        let sigma2 = (sq / layout.per_channel()) as f32;
        let (scale, shift, _) = affine(gamma[ch], beta[ch], m, sigma2, eps);
        for r in blocks() {
            // SAFETY: channel `ch`'s blocks belong to this task alone, and lie in `y`.
            let dst = unsafe { y.slice(r.start, r.len()) };
            for (d, &v) in dst.iter_mut().zip(&x[r]) {
                // `pre <= 0` as the backward pass tests it (a NaN passes, as in Burn's relu)
                let pre = v * scale + shift;
                *d = if relu && pre <= 0.0 { 0.0 } else { pre };
            }
        }
        // SAFETY: index `ch` of `mean` and `var` is this task's alone.
        unsafe {
            mean.write(ch, m);
            var.write(ch, sigma2);
        }
    });
    out
}

/// The inputs of the backward pass besides `x` and the output gradient.
#[derive(Clone, Copy, Debug)]
pub struct Saved<'a> {
    /// γ.
    pub gamma: &'a [f32],
    /// β (read only to recompute where the ReLU was active).
    pub beta: &'a [f32],
    /// The forward pass's μ.
    pub mean: &'a [f32],
    /// The forward pass's σ².
    pub var: &'a [f32],
    /// ε.
    pub eps: f64,
    /// The activation after the normalisation.
    pub act: Activation,
}

/// The backward pass for the output gradient `dy` (of the activated output).
pub fn backward(x: &[f32], dy: &[f32], layout: Layout, saved: Saved<'_>) -> Backward {
    check_sizes(x.len(), layout, saved.gamma.len(), saved.beta.len());
    assert_eq!(dy.len(), x.len(), "batch norm: output-gradient size");
    assert!(
        saved.mean.len() == layout.c && saved.var.len() == layout.c,
        "batch norm: the statistics have {} and {} values for {} channels",
        saved.mean.len(),
        saved.var.len(),
        layout.c
    );
    let mut out = Backward {
        dx: vec![0.0; x.len()],
        dgamma: vec![0.0; layout.c],
        dbeta: vec![0.0; layout.c],
    };
    let (dx, dgamma, dbeta) = (
        SharedOut(out.dx.as_mut_ptr()),
        SharedOut(out.dgamma.as_mut_ptr()),
        SharedOut(out.dbeta.as_mut_ptr()),
    );
    if layout.n * layout.s == 0 {
        return out; // nothing to sum: ∂γ = ∂β = 0, as Burn's sums over nothing
    }
    for_each_index(layout.c, |ch| {
        let (m, gamma) = (saved.mean[ch], saved.gamma[ch]);
        let (scale, shift, inv_std) = affine(gamma, saved.beta[ch], m, saved.var[ch], saved.eps);
        let relu = saved.act == Activation::Relu;
        let grad = |v: f32, g: f32| if relu && v * scale + shift <= 0.0 { 0.0 } else { g };
        let (mut sum_g, mut sum_gx) = (0.0f64, 0.0f64);
        for r in (0..layout.n).map(|i| layout.block(i, ch)) {
            let (xs, gs) = (&x[r.clone()], &dy[r]);
            let (xc, gc) = (xs.chunks_exact(16), gs.chunks_exact(16));
            for (&v, &g) in xc.remainder().iter().zip(gc.remainder()) {
                let g = grad(v, g);
                sum_g += g as f64;
                sum_gx += (g * (v - m)) as f64;
            }
            let (mut lg, mut lgx) = ([0.0f32; 16], [0.0f32; 16]);
            for (xb, gb) in xc.zip(gc) {
                for k in 0..16 {
                    let g = grad(xb[k], gb[k]);
                    lg[k] += g;
                    lgx[k] += g * (xb[k] - m);
                }
            }
            sum_g += lg.iter().map(|&l| l as f64).sum::<f64>();
            sum_gx += lgx.iter().map(|&l| l as f64).sum::<f64>();
        }
        let count = layout.per_channel();
        let d_beta = sum_g;
        let d_gamma = sum_gx * inv_std as f64;
        // ∂x = scale·g − scale·inv_std·(∂γ/m)·(x − μ) − scale·∂β/m
        let k_x = (scale as f64 * inv_std as f64 * d_gamma / count) as f32;
        let k_0 = (scale as f64 * d_beta / count) as f32;
        for r in (0..layout.n).map(|i| layout.block(i, ch)) {
            // SAFETY: channel `ch`'s blocks belong to this task alone, and lie in `dx`.
            let dst = unsafe { dx.slice(r.start, r.len()) };
            for ((d, &v), &g) in dst.iter_mut().zip(&x[r.clone()]).zip(&dy[r]) {
                *d = scale * grad(v, g) - k_x * (v - m) - k_0;
            }
        }
        // SAFETY: index `ch` of `dgamma` and `dbeta` is this task's alone.
        unsafe {
            dgamma.write(ch, d_gamma as f32);
            dbeta.write(ch, d_beta as f32);
        }
    });
    out
}
