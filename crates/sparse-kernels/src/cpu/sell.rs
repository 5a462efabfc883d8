//! SELL-16 sparse × dense for small batches (constant fan-in and N:M): for
//! each group of 16 kept rows, 16 accumulators walk the `k` entries together;
//! one vector of values and 16 scalar loads of `x` per entry (the hardware
//! gather was slower than scalar loads on AVX-512 Zen 5, see
//! `docs/sparse-execution.md`). Groups are split statically over threads,
//! which is exact because every group has the same work.

// `S` picks the instruction set a `with_simd` body is compiled for; the
// fixed-width index loops are what LLVM vectorises.
#![allow(clippy::extra_unused_type_parameters, clippy::needless_range_loop)]

use macerator::Simd;
use rayon::prelude::*;

use super::threads_for;
use crate::activation::Activation;
use crate::indices::Index;
use crate::plan::{Sell, SellIndex};

const L: usize = Sell::LANES;

/// `out[b, r] = act(bias[r] + Σ W[r, c]·x[b, c])` for `x: [batch, cols]`, `out: [batch, rows]`.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    s: &Sell,
    values: &[f32],
    x: &[f32],
    cols: usize,
    batch: usize,
    bias: &[f32],
    act: Activation,
    out: &mut [f32],
) {
    let rows = bias.len();
    let groups = s.groups();
    let mut kept_out = vec![0.0f32; groups * L];
    let threads = threads_for(groups * L * s.k);
    let per_task = groups.div_ceil(threads).max(1);
    for b in 0..batch {
        let xb = &x[b * cols..(b + 1) * cols];
        kept_out
            .par_chunks_mut(per_task * L)
            .enumerate()
            .for_each(|(t, chunk)| run_groups(s, values, xb, t * per_task, chunk));
        let ob = &mut out[b * rows..(b + 1) * rows];
        for (r, o) in ob.iter_mut().enumerate() {
            *o = act.apply(bias[r]);
        }
        for (i, &r) in s.kept.iter().enumerate() {
            ob[r as usize] = act.apply(kept_out[i] + bias[r as usize]);
        }
    }
}

/// Groups `g0..` into `chunk` (16 accumulators per group), one dispatched call per chunk.
fn run_groups(s: &Sell, values: &[f32], x: &[f32], g0: usize, chunk: &mut [f32]) {
    let span = g0 * s.k * L..(g0 * L + chunk.len()) * s.k;
    let vals = &values[span.clone()];
    match &s.idx {
        SellIndex::Abs(crate::indices::Indices::U16(ix)) => abs_groups(vals, &ix[span], x, s.k, chunk),
        SellIndex::Abs(crate::indices::Indices::U32(ix)) => abs_groups(vals, &ix[span], x, s.k, chunk),
        SellIndex::Nm { n, m, idx } => nm_groups(vals, &idx[span], *n, *m, x, s.k, chunk),
    }
}

#[macerator::with_simd]
fn abs_groups<S: Simd, I: Index>(vals: &[f32], idx: &[I], x: &[f32], k: usize, out: &mut [f32]) {
    for (g, acc) in out.chunks_exact_mut(L).enumerate() {
        let acc: &mut [f32; L] = acc.try_into().expect("16 lanes");
        abs_group(
            &vals[g * k * L..(g + 1) * k * L],
            &idx[g * k * L..(g + 1) * k * L],
            x,
            acc,
        );
    }
}

#[macerator::with_simd]
fn nm_groups<S: Simd>(vals: &[f32], idx: &[u8], n: usize, m: usize, x: &[f32], k: usize, out: &mut [f32]) {
    for (g, acc) in out.chunks_exact_mut(L).enumerate() {
        let acc: &mut [f32; L] = acc.try_into().expect("16 lanes");
        nm_group(
            &vals[g * k * L..(g + 1) * k * L],
            &idx[g * k * L..(g + 1) * k * L],
            n,
            m,
            x,
            acc,
        );
    }
}

/// One group with absolute indices.
#[inline(always)]
fn abs_group<I: Index>(vals: &[f32], idx: &[I], x: &[f32], acc: &mut [f32; L]) {
    let k = vals.len() / L;
    assert!(idx.len() == vals.len());
    debug_assert!(idx.iter().all(|i| i.at() < x.len()));
    let mut a = [0.0f32; L];
    for j in 0..k {
        let v: &[f32; L] = vals[j * L..(j + 1) * L].try_into().expect("lanes");
        let ix: &[I; L] = idx[j * L..(j + 1) * L].try_into().expect("lanes");
        let mut xv = [0.0f32; L];
        for l in 0..L {
            // SAFETY: the plan's indices are < cols == x.len() (checked when built).
            xv[l] = unsafe { *x.get_unchecked(ix[l].at()) };
        }
        for l in 0..L {
            a[l] = v[l].mul_add(xv[l], a[l]);
        }
    }
    *acc = a;
}

/// One group with N:M in-group offsets.
#[inline(always)]
fn nm_group(vals: &[f32], idx: &[u8], n: usize, m: usize, x: &[f32], acc: &mut [f32; L]) {
    let k = vals.len() / L;
    assert!(idx.len() == vals.len() && k / n * m <= x.len());
    let mut a = [0.0f32; L];
    for j in 0..k {
        let base = (j / n) * m;
        let v: &[f32; L] = vals[j * L..(j + 1) * L].try_into().expect("lanes");
        let ix: &[u8; L] = idx[j * L..(j + 1) * L].try_into().expect("lanes");
        let xs = &x[base..base + m];
        let mut xv = [0.0f32; L];
        for l in 0..L {
            // SAFETY: offsets are < m (checked when built) and `xs` has m entries.
            xv[l] = unsafe { *xs.get_unchecked(ix[l] as usize) };
        }
        for l in 0..L {
            a[l] = v[l].mul_add(xv[l], a[l]);
        }
    }
    *acc = a;
}
