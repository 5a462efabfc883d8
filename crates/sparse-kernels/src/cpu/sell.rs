//! SELL-16 sparse × dense for small batches (constant fan-in and N:M): for
//! each group of 16 kept rows, 16 accumulators walk the `k` entries together,
//! one vector of values per entry. `x` is read with one AVX-512 gather per
//! entry on Intel CPUs ([`super::avx512`]) and with scalar loads elsewhere
//! (the hardware gather was slower on both the Zen 5 of
//! `shared/notes/sparse-kernels.md` and the Zen 3 of [`super::avx2`]); N:4
//! groups are looked up in registers.
//! Groups are split statically over threads (exact: every group has the same
//! work) and each task writes its rows of the output directly, bias and
//! activation fused, with no temporary buffer.

// `S` picks the instruction set a `with_simd` body is compiled for; the
// fixed-width index loops are what LLVM vectorises.
#![allow(clippy::extra_unused_type_parameters, clippy::needless_range_loop)]

use macerator::Simd;

use super::{SharedOut, even_ranges, for_ranges, tasks_for};
use crate::activation::Activation;
use crate::indices::{Index, Indices};
use crate::plan::{Sell, SellIndex};

const L: usize = Sell::LANES;

/// `out[b, r] = act(bias[r] + Σ W[r, c]·x[b, c])` for `x: [batch, cols]`, `out: [batch, rows]`.
/// `packed`: the N:4 offsets packed by [`super::avx2::pack_n4`], when the
/// caller has checked that the AVX2 kernel runs.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    s: &Sell,
    packed: Option<&[u32]>,
    values: &[f32],
    x: &[f32],
    cols: usize,
    batch: usize,
    bias: &[f32],
    act: Activation,
    out: &mut [f32],
) {
    let rows = bias.len();
    assert!(
        values.len() >= s.groups() * s.k * L && x.len() >= batch * cols && out.len() >= batch * rows,
        "sell::forward: buffers shorter than the plan"
    );
    if s.kept.len() < rows {
        // ablated rows: the bias alone (kept rows are overwritten below)
        for ob in out.chunks_exact_mut(rows).take(batch) {
            ob.iter_mut().zip(bias).for_each(|(o, &b)| *o = act.apply(b));
        }
    }
    let ranges = even_ranges(s.groups(), tasks_for(s.groups() * L * s.k * batch));
    let o = SharedOut(out.as_mut_ptr());
    for_ranges(&ranges, |groups| {
        for b in 0..batch {
            let xb = &x[b * cols..(b + 1) * cols];
            for g in groups.clone() {
                let acc = group(s, packed, values, xb, g);
                for (l, &a) in acc.iter().enumerate() {
                    if let Some(&r) = s.kept.get(g * L + l) {
                        let r = r as usize;
                        // SAFETY: kept rows are distinct and each group belongs to one task.
                        unsafe { o.write(b * rows + r, act.apply(a + bias[r])) };
                    }
                }
            }
        }
    });
}

/// The 16 accumulators of group `g`.
fn group(s: &Sell, packed: Option<&[u32]>, values: &[f32], x: &[f32], g: usize) -> [f32; L] {
    let span = g * s.k * L..(g + 1) * s.k * L;
    let vals = &values[span.clone()];
    match &s.idx {
        SellIndex::Abs(Indices::U16(ix)) => {
            #[cfg(target_arch = "x86_64")]
            if super::avx512::gather_pays() {
                // SAFETY: AVX-512F checked; `span` holds k·16 entries; plan indices are < cols == x.len().
                return unsafe { super::avx512::sell_group_u16(vals, &ix[span], x, s.k) };
            }
            #[cfg(target_arch = "x86_64")]
            if super::avx2::available() {
                // SAFETY: AVX2 checked; `span` holds k·16 entries; plan indices are < cols == x.len().
                return unsafe { super::avx2::sell_group_u16(vals, &ix[span], x, s.k) };
            }
            abs_group(vals, &ix[span], x)
        }
        SellIndex::Abs(Indices::U32(ix)) => abs_group(vals, &ix[span], x),
        SellIndex::Nm { n, m, idx } => {
            #[cfg(target_arch = "x86_64")]
            if let Some(p) = packed.filter(|p| *m == 4 && p.len() * L == idx.len()) {
                let p = &p[g * s.k..(g + 1) * s.k];
                if super::avx512::available() {
                    // SAFETY: AVX-512F checked; as below.
                    return unsafe { super::avx512::sell_group_n4(vals, p, x, s.k, *n) };
                }
                // SAFETY: the caller checked AVX2; `p` has k words per group; 4·k/n == cols == x.len().
                return unsafe { super::avx2::sell_group_n4(vals, p, x, s.k, *n) };
            }
            let _ = packed;
            nm_group(vals, &idx[span], *n, *m, x)
        }
    }
}

#[macerator::with_simd]
fn abs_group<S: Simd, I: Index>(vals: &[f32], idx: &[I], x: &[f32]) -> [f32; L] {
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
    a
}

/// One group with N:M in-group offsets (any `m`).
#[macerator::with_simd]
fn nm_group<S: Simd>(vals: &[f32], idx: &[u8], n: usize, m: usize, x: &[f32]) -> [f32; L] {
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
    a
}
