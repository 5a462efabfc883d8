//! Gradient growth without the dense gradient: the `k` inactive positions of a
//! linear layer with the largest `|∂L/∂W|`, computed tile by tile.
//!
//! RigL (Evci et al., "Rigging the Lottery", ICML 2020, eq. 3 and §3) grows the
//! inactive connections with the largest dense gradient magnitude `|∇_W L|` at
//! an update step. For a Burn `Linear` `y = x·W` that gradient is
//! `∇_W L = Xᵀ·dY` (`[d_in, d_out]`, `dY = ∂L/∂y`). Sparse execution never
//! holds it whole: [`grow_top_k`] computes it for `tile` output columns at a
//! time and keeps a running top-`k` of the eligible positions, so memory is
//! `O(threads · (ROW_BLOCK · tile + k))` instead of `O(d_in · d_out)`. The tiles are products
//! `Xᵀ[i-block]·dY[:, tile]` by the `gemm` crate (the matrix kernels Burn's
//! flex backend multiplies with), spread over the cores by rayon.
//!
//! [`random_top_k`] is SET's random growth on the same terms: the `k`
//! eligible positions with the largest counter-based random score, the same
//! scores (and so the same positions) as ranking `Rng::scores(numel)` over
//! the whole layer, computed position by position instead of stored.
//!
//! The ranking is `sparse_core::select`'s total order (higher score first,
//! ties to the lower flat index), so the result equals
//! `sparse_core::select::top_k` over the dense scores whenever the scores
//! agree; they are summed over the batch in ascending order here, which may
//! differ from the dense matmul's order in the last bits (documented
//! float-order ties, `docs/sparse-execution.md`).

use std::sync::atomic::{AtomicU64, Ordering};

use gemm::{Parallelism, gemm};
use rayon::prelude::*;
use sparse_core::select::{pack, unpack_id};
use sparse_core::{LayerKind, Mask, Rng, SparseLayer};

use crate::error::{KernelError, Result};

/// Rows of `Xᵀ` per gemm tile (with `tile` output columns: the tile's scores).
const ROW_BLOCK: usize = 1024;

/// Positions per rayon task of [`random_top_k`].
const RANDOM_CHUNK: usize = 1 << 22;

/// Positions between two looks of [`random_top_k`]'s tasks at the shared floor.
const FLOOR_EVERY: usize = 1 << 18;

/// Keeps the `k` largest keys of `keys` (unordered) and drops the rest.
pub(crate) fn keep_largest(keys: &mut Vec<u64>, k: usize) {
    if keys.len() > k {
        if k == 0 {
            keys.clear();
            return;
        }
        keys.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
        keys.truncate(k);
    }
}

/// A running top-`k` of packed keys: once `k` keys are held, a key at or
/// below the `k`-th best is refused at once (keys are unique: they hold the id).
#[derive(Debug, Default)]
pub(crate) struct TopK {
    keys: Vec<u64>,
    k: usize,
    floor: Option<u64>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        Self {
            keys: Vec::new(),
            k,
            floor: None,
        }
    }

    #[inline]
    pub(crate) fn offer(&mut self, key: u64) {
        if self.k == 0 || self.floor.is_some_and(|f| key <= f) {
            return;
        }
        self.keys.push(key);
        if self.keys.len() >= 2 * self.k + 1024 {
            self.shrink();
        }
    }

    fn shrink(&mut self) {
        keep_largest(&mut self.keys, self.k);
        if self.keys.len() == self.k
            && let Some(&min) = self.keys.iter().min()
        {
            self.raise_floor(min);
        }
    }

    /// Refuses every key at or below `bound` from now on: `bound` must be at
    /// or below the `k`-th best key of all keys offered anywhere (e.g. the
    /// floor of another `TopK` over other keys, [`SharedFloor`]).
    pub(crate) fn raise_floor(&mut self, bound: u64) {
        self.floor = Some(self.floor.map_or(bound, |f| f.max(bound)));
    }

    pub(crate) fn merge(mut self, other: Self) -> Self {
        self.keys.extend(other.keys);
        self.shrink();
        self
    }

    /// The ids held, best first.
    pub(crate) fn into_ids(mut self) -> Vec<u32> {
        keep_largest(&mut self.keys, self.k);
        self.keys.sort_unstable_by(|a, b| b.cmp(a));
        self.keys.into_iter().map(unpack_id).collect()
    }
}

/// The highest floor any of several [`TopK`]s over disjoint keys has
/// reached: each holds `k` keys at or above its floor, so no key below it is
/// among the `k` best of all, and the others may refuse those at once.
#[derive(Debug, Default)]
pub(crate) struct SharedFloor(AtomicU64);

impl SharedFloor {
    /// Publishes `top`'s floor and raises `top`'s to the highest published.
    pub(crate) fn share(&self, top: &mut TopK) {
        if let Some(f) = top.floor {
            self.0.fetch_max(f, Ordering::Relaxed);
        }
        let shared = self.0.load(Ordering::Relaxed);
        if shared > 0 {
            top.raise_floor(shared);
        }
    }
}

/// Output columns per tile of [`grow_top_k`] where the caller has no reason
/// to pick another: a tile of `d_in × 256` scores stays in the caches of one
/// core for the hidden widths of the benchmarks (784 to 65 536 inputs).
pub const GROWTH_TILE: usize = 256;

/// The flat ids (in the layer's Burn layout `[d_in, d_out]`) of the `k`
/// positions outside `exclude` with the largest `|Σ_b x[b, i]·dy[b, o]|`, in
/// rank order. `x` is the layer's input `[batch, d_in]`, `dy` the gradient of
/// its output `[batch, d_out]`, both row-major; `tile` output columns are
/// scored at a time (at least 1).
pub fn grow_top_k(
    layer: &SparseLayer,
    x: &[f32],
    dy: &[f32],
    batch: usize,
    exclude: &Mask,
    k: usize,
    tile: usize,
) -> Result<Vec<u32>> {
    if layer.kind != LayerKind::Linear {
        return Err(KernelError::InvalidConfig(format!(
            "`{}`: gradient growth in sparse execution is implemented for linear layers only; run this layer dense",
            layer.path
        )));
    }
    let (d_in, d_out) = (layer.shape[0], layer.shape[1]);
    if x.len() != batch * d_in || dy.len() != batch * d_out || exclude.len() != layer.numel() {
        return Err(KernelError::shape(
            &layer.path,
            format!(
                "x has {} values, dy {}, the mask {}; expected {batch}×{d_in}, {batch}×{d_out} and {}",
                x.len(),
                dy.len(),
                exclude.len(),
                layer.numel()
            ),
        ));
    }
    check_ids(layer)?;
    if k == 0 {
        return Ok(Vec::new());
    }
    let tile = tile.clamp(1, d_out.max(1));
    let starts: Vec<usize> = (0..d_out).step_by(tile).collect();
    let floor = SharedFloor::default();
    let found = starts
        .into_par_iter()
        .map(|o0| {
            let width = tile.min(d_out - o0);
            let mut top = TopK::new(k);
            let mut scores = vec![0.0f32; ROW_BLOCK.min(d_in) * width];
            for i0 in (0..d_in).step_by(ROW_BLOCK) {
                floor.share(&mut top);
                let rows = ROW_BLOCK.min(d_in - i0);
                product_tile(x, dy, [d_in, d_out, batch], [i0, o0], [rows, width], &mut scores);
                for (r, row) in scores[..rows * width].chunks_exact(width).enumerate() {
                    let base = (i0 + r) * d_out + o0;
                    for (t, s) in row.iter().enumerate() {
                        if !exclude.get(base + t) {
                            top.offer(pack(s.abs(), (base + t) as u32));
                        }
                    }
                }
            }
            top
        })
        .reduce(|| TopK::new(k), TopK::merge);
    Ok(found.into_ids())
}

/// `scores[r·width + t] = Σ_b x[b, i0 + r]·dy[b, o0 + t]` for `rows` rows and
/// `width` columns: `Xᵀ·dY` restricted to the tile, by `gemm`.
fn product_tile(
    x: &[f32],
    dy: &[f32],
    [d_in, d_out, batch]: [usize; 3],
    [i0, o0]: [usize; 2],
    [rows, width]: [usize; 2],
    scores: &mut [f32],
) {
    assert!(scores.len() >= rows * width && i0 + rows <= d_in && o0 + width <= d_out);
    assert!(x.len() >= batch * d_in && dy.len() >= batch * d_out);
    if batch == 0 {
        scores[..rows * width].fill(0.0);
        return;
    }
    // SAFETY: the asserts above keep every element gemm reads
    // (x[b·d_in + i0 + r], dy[b·d_out + o0 + t] for b < batch, r < rows,
    // t < width) and writes (scores[r·width + t]) inside its slice.
    unsafe {
        gemm(
            rows,
            width,
            batch,
            scores.as_mut_ptr(),
            1,
            width as isize,
            false,
            x.as_ptr().add(i0),
            d_in as isize,
            1,
            dy.as_ptr().add(o0),
            1,
            d_out as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// The flat ids of the `k` positions outside `exclude` with the largest
/// random score `scores[f]`, best first, where `scores = start.scores(numel)`
/// (the uniform scores SET's growth and the random initial masks rank): the
/// score of `f` is computed from the counter-based stream (`start` skipped by
/// `f` draws) instead of stored, so a layer of billions of weights needs
/// `O(k)` memory. Equal to `sparse_core::select::top_k` over those scores.
/// `exclude: None` makes every position eligible.
pub fn random_top_k(layer: &SparseLayer, exclude: Option<&Mask>, k: usize, start: &Rng) -> Result<Vec<u32>> {
    let n = layer.numel();
    if let Some(m) = exclude.filter(|m| m.len() != n) {
        return Err(KernelError::shape(
            &layer.path,
            format!("the mask has {} entries, the layer {n}", m.len()),
        ));
    }
    check_ids(layer)?;
    if k == 0 {
        return Ok(Vec::new());
    }
    let starts: Vec<usize> = (0..n).step_by(RANDOM_CHUNK).collect();
    let floor = SharedFloor::default();
    let found = starts
        .into_par_iter()
        .map(|f0| {
            let mut top = TopK::new(k);
            let mut rng = start.clone();
            rng.skip(f0 as u64);
            for f in f0..(f0 + RANDOM_CHUNK).min(n) {
                if f % FLOOR_EVERY == 0 {
                    floor.share(&mut top);
                }
                let score = rng.next_f32();
                if !exclude.is_some_and(|m| m.get(f)) {
                    top.offer(pack(score, f as u32));
                }
            }
            top
        })
        .reduce(|| TopK::new(k), TopK::merge);
    Ok(found.into_ids())
}

/// Flat ids are `u32`: a layer of more than 2³² weights is refused.
fn check_ids(layer: &SparseLayer) -> Result<()> {
    if u32::try_from(layer.numel().saturating_sub(1)).is_err() {
        return Err(KernelError::shape(
            &layer.path,
            "more than 2³² weights: flat ids do not fit u32; split the layer",
        ));
    }
    Ok(())
}
