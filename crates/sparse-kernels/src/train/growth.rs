//! Gradient growth without the dense gradient: the `k` inactive positions of a
//! linear layer with the largest `|∂L/∂W|`, computed tile by tile.
//!
//! RigL (Evci et al., "Rigging the Lottery", ICML 2020, eq. 3 and §3) grows the
//! inactive connections with the largest dense gradient magnitude `|∇_W L|` at
//! an update step. For a Burn `Linear` `y = x·W` that gradient is
//! `∇_W L = Xᵀ·dY` (`[d_in, d_out]`, `dY = ∂L/∂y`). Sparse execution never
//! holds it whole: [`grow_top_k`] computes it for `tile` output columns at a
//! time and keeps a running top-`k` of the eligible positions, so memory is
//! `O(d_in · tile + k)` instead of `O(d_in · d_out)`.
//!
//! The ranking is `sparse_core::select`'s total order (higher score first,
//! ties to the lower flat index), so the result equals
//! `sparse_core::select::top_k` over the dense scores whenever the scores
//! agree; they are summed over the batch in ascending order here, which may
//! differ from the dense matmul's order in the last bits (documented
//! float-order ties, `docs/sparse-execution.md`).

use sparse_core::select::score_key;
use sparse_core::{LayerKind, Mask, SparseLayer};

use crate::error::{KernelError, Result};

/// A score and a flat id packed so that a larger key ranks higher (the order
/// of `sparse_core::select`: score first, then the lower id).
fn pack(score: f32, id: u32) -> u64 {
    (u64::from(score_key(score)) << 32) | u64::from(u32::MAX - id)
}

/// Keeps the `k` largest keys of `keys` (unordered) and drops the rest.
fn keep_largest(keys: &mut Vec<u64>, k: usize) {
    if keys.len() > k {
        if k == 0 {
            keys.clear();
            return;
        }
        keys.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
        keys.truncate(k);
    }
}

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
    if u32::try_from(layer.numel().saturating_sub(1)).is_err() {
        return Err(KernelError::shape(
            &layer.path,
            "more than 2³² weights: flat ids do not fit u32; split the layer",
        ));
    }
    let tile = tile.clamp(1, d_out.max(1));
    let mut keys: Vec<u64> = Vec::with_capacity(2 * k + d_in * tile);
    let mut acc = vec![0.0f32; tile];
    for o0 in (0..d_out).step_by(tile) {
        let width = tile.min(d_out - o0);
        for i in 0..d_in {
            let acc = &mut acc[..width];
            acc.fill(0.0);
            for b in 0..batch {
                let xv = x[b * d_in + i];
                let row = &dy[b * d_out + o0..b * d_out + o0 + width];
                for (a, g) in acc.iter_mut().zip(row) {
                    *a += xv * g;
                }
            }
            for (t, a) in acc.iter().enumerate() {
                let flat = i * d_out + o0 + t;
                if !exclude.get(flat) {
                    keys.push(pack(a.abs(), flat as u32));
                }
            }
        }
        if keys.len() >= 2 * k.max(1) {
            keep_largest(&mut keys, k);
        }
    }
    keep_largest(&mut keys, k);
    keys.sort_unstable_by(|a, b| b.cmp(a));
    Ok(keys.into_iter().map(|key| u32::MAX - key as u32).collect())
}
