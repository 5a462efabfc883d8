//! CSR sparse × dense.
//!
//! * Small batches: per row, four partial sums over `v[e]·x[col[e]]`; rows are
//!   split into nnz-balanced static ranges, one per thread.
//! * Large batches (SparseProp's feature-major layout, with register blocking
//!   over the batch): `Xᵀ` is packed as `[batch/T][cols][T]` tiles; per row and
//!   tile, `T` accumulators stay in registers and every nonzero costs one
//!   broadcast and `T/16` vector FMAs that each load a contiguous strip of `Xᵀ`.

// `S` picks the instruction set a `with_simd` body is compiled for; the
// fixed-width index loops are what LLVM vectorises.
#![allow(clippy::extra_unused_type_parameters, clippy::needless_range_loop)]

use macerator::Simd;

use super::{SharedOut, balanced_ranges, for_chunks, for_each_index, for_ranges, tasks_for};
use crate::activation::Activation;
use crate::indices::{Index, Indices};
use crate::plan::CsrView;

/// Batch from which the feature-major tiled kernel is used.
pub const TILED_FROM_BATCH: usize = 8;
/// Batch columns per register tile at batch 33 and above; smaller batches
/// take 16- or 32-wide tiles ([`forward`]), so a batch of 8 does not pay for
/// 64 columns.
pub const TILE: usize = 64;

/// `out[b, r] = act(bias[r] + Σ W[r, c]·x[b, c])`; `values` in the storage order of `csr.perm`.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    csr: &CsrView,
    values: &[f32],
    x: &[f32],
    cols: usize,
    batch: usize,
    bias: &[f32],
    act: Activation,
    out: &mut [f32],
) {
    let ordered;
    let vals = match &csr.perm {
        None => values,
        Some(p) => {
            ordered = p.iter().map(|&i| values[i as usize]).collect::<Vec<f32>>();
            &ordered
        }
    };
    if batch >= TILED_FROM_BATCH {
        match batch {
            ..=16 => tiled_forward::<16>(csr, vals, x, cols, batch, bias, act, out),
            17..=32 => tiled_forward::<32>(csr, vals, x, cols, batch, bias, act, out),
            _ => tiled_forward::<TILE>(csr, vals, x, cols, batch, bias, act, out),
        }
        return;
    }
    let rows = bias.len();
    assert!(
        x.len() >= batch * cols && out.len() >= batch * rows && vals.len() >= csr.nnz(),
        "csr::forward: buffers shorter than the plan"
    );
    let ranges = balanced_ranges(&csr.row_ptr, tasks_for(csr.nnz() * batch));
    let o = SharedOut(out.as_mut_ptr());
    for_ranges(&ranges, |range| {
        for b in 0..batch {
            let xb = &x[b * cols..(b + 1) * cols];
            // each task owns rows `range` of every output row `b`
            let ob = o.offset(b * rows);
            match &csr.col {
                Indices::U16(c) => u16_rows(&csr.row_ptr, c, vals, xb, bias, act, range.clone(), ob),
                Indices::U32(c) => gemv_rows(&csr.row_ptr, c, vals, xb, bias, act, range.clone(), ob),
            }
        }
    });
}

/// Rows with `u16` columns: the AVX2 row kernel when the CPU has it.
#[allow(clippy::too_many_arguments)]
fn u16_rows(
    row_ptr: &[u32],
    col: &[u16],
    vals: &[f32],
    x: &[f32],
    bias: &[f32],
    act: Activation,
    rows: std::ops::Range<usize>,
    out: SharedOut,
) {
    #[cfg(target_arch = "x86_64")]
    if super::avx2::available() {
        for r in rows {
            let (a, b) = (row_ptr[r] as usize, row_ptr[r + 1] as usize);
            // SAFETY: AVX2 checked; the plan's columns are < cols == x.len() (checked when built).
            let s = unsafe { super::avx2::csr_row_u16(&col[a..b], &vals[a..b], x) };
            // SAFETY: row r of this output row belongs to this task only.
            unsafe { out.write(r, act.apply(s + bias[r])) };
        }
        return;
    }
    gemv_rows(row_ptr, col, vals, x, bias, act, rows, out)
}

#[macerator::with_simd]
#[allow(clippy::too_many_arguments)]
fn gemv_rows<S: Simd, I: Index>(
    row_ptr: &[u32],
    col: &[I],
    vals: &[f32],
    x: &[f32],
    bias: &[f32],
    act: Activation,
    rows: std::ops::Range<usize>,
    out: SharedOut,
) {
    assert!(col.len() <= vals.len() && rows.end < row_ptr.len());
    for r in rows {
        let (a, b) = (row_ptr[r] as usize, row_ptr[r + 1] as usize);
        let (c, v) = (&col[a..b], &vals[a..b]);
        let mut s = [0.0f32; 4];
        let quads = c.len() / 4;
        for q in 0..quads {
            for u in 0..4 {
                let e = q * 4 + u;
                // SAFETY: column indices are < cols == x.len() (checked when built).
                s[u] = v[e].mul_add(unsafe { *x.get_unchecked(c[e].at()) }, s[u]);
            }
        }
        for e in quads * 4..c.len() {
            s[0] = v[e].mul_add(unsafe { *x.get_unchecked(c[e].at()) }, s[0]);
        }
        // SAFETY: row r of this output row belongs to this task only.
        unsafe { out.write(r, act.apply((s[0] + s[1]) + (s[2] + s[3]) + bias[r])) };
    }
}

/// The feature-major product with `T`-wide batch tiles.
#[allow(clippy::too_many_arguments)]
fn tiled_forward<const T: usize>(
    csr: &CsrView,
    vals: &[f32],
    x: &[f32],
    cols: usize,
    batch: usize,
    bias: &[f32],
    act: Activation,
    out: &mut [f32],
) {
    let xt = pack_tiles::<T>(x, batch, cols);
    let yt = tiled::<T>(csr, vals, &xt, cols, batch, bias.len());
    unpack_tiles::<T>(&yt, bias, act, out);
}

/// Packs `x: [batch, cols]` as `[tiles][cols][TILE]` (zero padded).
pub fn pack_tiles<const TILE: usize>(x: &[f32], batch: usize, cols: usize) -> Vec<f32> {
    let tiles = batch.div_ceil(TILE);
    let mut xt = vec![0.0f32; tiles * cols * TILE];
    for_chunks(&mut xt, cols * TILE, |t, tile| {
        for bi in 0..TILE.min(batch - t * TILE) {
            let row = &x[(t * TILE + bi) * cols..(t * TILE + bi + 1) * cols];
            for (c, &v) in row.iter().enumerate() {
                tile[c * TILE + bi] = v;
            }
        }
    });
    xt
}

/// Writes `act(yt + bias)` from `[tiles][rows][TILE]` into `out: [batch, rows]`.
pub fn unpack_tiles<const TILE: usize>(yt: &[f32], bias: &[f32], act: Activation, out: &mut [f32]) {
    let rows = bias.len();
    for_chunks(out, rows, |b, ob| {
        let (t, bi) = (b / TILE, b % TILE);
        let tile = &yt[t * rows * TILE..(t + 1) * rows * TILE];
        for (r, o) in ob.iter_mut().enumerate() {
            *o = act.apply(tile[r * TILE + bi] + bias[r]);
        }
    });
}

/// `yt[t][r][..] = Σ_e v[e]·xt[t][col[e]][..]` for every tile and row.
fn tiled<const TILE: usize>(
    csr: &CsrView,
    vals: &[f32],
    xt: &[f32],
    cols: usize,
    batch: usize,
    rows: usize,
) -> Vec<f32> {
    let tiles = batch.div_ceil(TILE);
    let mut yt = vec![0.0f32; tiles * rows * TILE];
    let chunk_rows = 64usize;
    let chunks = rows.div_ceil(chunk_rows);
    let out = SharedOut(yt.as_mut_ptr());
    for_each_index(tiles * chunks, |task| {
        let (t, rc) = (task / chunks, task % chunks);
        let xtile = &xt[t * cols * TILE..(t + 1) * cols * TILE];
        let r0 = rc * chunk_rows;
        let r1 = (r0 + chunk_rows).min(rows);
        // SAFETY: rows r0..r1 of tile t lie within `yt` and belong to this task alone.
        let ychunk = unsafe { out.slice((t * rows + r0) * TILE, (r1 - r0) * TILE) };
        match &csr.col {
            Indices::U16(c) => tile_rows::<_, TILE>(&csr.row_ptr, c, vals, xtile, r0..r1, ychunk),
            Indices::U32(c) => tile_rows::<_, TILE>(&csr.row_ptr, c, vals, xtile, r0..r1, ychunk),
        }
    });
    yt
}

#[macerator::with_simd]
fn tile_rows<S: Simd, I: Index, const TILE: usize>(
    row_ptr: &[u32],
    col: &[I],
    vals: &[f32],
    xtile: &[f32],
    rows: std::ops::Range<usize>,
    out: &mut [f32],
) {
    let cols = xtile.len() / TILE;
    debug_assert!(col.iter().all(|c| c.at() < cols));
    for (i, r) in rows.enumerate() {
        let mut acc = [0.0f32; TILE];
        for e in row_ptr[r] as usize..row_ptr[r + 1] as usize {
            let w = vals[e];
            let c = col[e].at();
            // SAFETY: plan indices are < cols (checked when built), so the strip is inside the tile.
            let xs: &[f32; TILE] = unsafe { &*(xtile.as_ptr().add(c * TILE) as *const [f32; TILE]) };
            for t in 0..TILE {
                acc[t] = w.mul_add(xs[t], acc[t]);
            }
        }
        out[i * TILE..(i + 1) * TILE].copy_from_slice(&acc);
    }
}
