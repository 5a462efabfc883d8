//! The CSR structure of a mask, built without dense weights, and the map from
//! the entries of one such structure to those of another.
//!
//! Rows are output neurons, columns the fan-in in the channel-last order of
//! [`SparseLayer::flat`] (a Burn `Linear` weight `[d_in, d_out]` is the
//! transpose of this `[d_out, d_in]` matrix). Entries are sorted by row, then
//! column; the values tensor of a [`SparsePlan`] built here is in that order.
//! Cost: one pass over the mask's words and `O(nnz)` memory, so a mask over
//! billions of weights is planned without touching a dense array.

use sparse_core::{LayerKind, Mask, SparseLayer};

use crate::error::{KernelError, Result};
use crate::formats::check_op;
use crate::indices::Indices;
use crate::plan::{CsrView, OpKind, SparsePlan, Storage};

/// `(output neuron, fan-in index)` of the weight at flat position `flat`
/// (the inverse of [`SparseLayer::flat`]).
pub fn row_col(layer: &SparseLayer, flat: usize) -> (usize, usize) {
    match layer.kind {
        LayerKind::Linear => {
            let d_out = layer.shape[1];
            (flat % d_out, flat / d_out)
        }
        LayerKind::Conv => {
            let (cin, kpos) = (layer.in_channels(), layer.kernel_positions());
            let (o, rest) = (flat / layer.fan_in(), flat % layer.fan_in());
            let (c, p) = (rest / kpos, rest % kpos);
            (o, p * cin + c)
        }
    }
}

/// The CSR plan of the active positions of `mask` over `layer` (no padding,
/// values in row-then-column order).
pub fn csr_plan(layer: &SparseLayer, op: OpKind, mask: &Mask) -> Result<SparsePlan> {
    check_op(layer, op)?;
    if mask.len() != layer.numel() {
        return Err(KernelError::shape(
            &layer.path,
            format!(
                "mask has {} entries, the layer {:?} has {}; pass the mask of this layer",
                mask.len(),
                layer.shape,
                layer.numel()
            ),
        ));
    }
    let (rows, cols) = (layer.neurons(), layer.fan_in());
    // entries are counted in u32 row pointers and re-aligned by i32 gathers
    if i32::try_from(mask.count_ones()).is_err() || u32::try_from(cols).is_err() {
        return Err(KernelError::shape(
            &layer.path,
            format!(
                "{} active weights over a fan-in of {cols}: more than 2³¹ entries or a fan-in beyond u32; split the layer",
                mask.count_ones()
            ),
        ));
    }
    let mut row_ptr = vec![0u32; rows + 1];
    for f in mask.iter_ones() {
        row_ptr[row_col(layer, f).0 + 1] += 1;
    }
    for r in 0..rows {
        row_ptr[r + 1] += row_ptr[r];
    }
    let mut next: Vec<u32> = row_ptr[..rows].to_vec();
    let mut col = vec![0u32; mask.count_ones()];
    for f in mask.iter_ones() {
        let (r, c) = row_col(layer, f);
        col[next[r] as usize] = c as u32;
        next[r] += 1;
    }
    for r in 0..rows {
        col[row_ptr[r] as usize..row_ptr[r + 1] as usize].sort_unstable();
    }
    let view = CsrView {
        row_ptr,
        col: Indices::narrowest(col, cols),
        perm: None,
    };
    Ok(SparsePlan::new(
        rows,
        cols,
        mask.count_ones(),
        op,
        Storage::Csr,
        Some(view),
        Vec::new(),
    ))
}

/// For every entry of `new`, the entry of `old` at the same `(row, column)`,
/// or `None` where `new` has a position `old` does not (a grown weight). Both
/// must be plans of the same geometry with identity value order (as
/// [`csr_plan`] builds them); rows are merged in one pass, `O(nnz)`.
///
/// Panics if the plans differ in rows or columns (a caller's bug).
pub fn entry_map(old: &SparsePlan, new: &SparsePlan) -> Vec<Option<u32>> {
    assert_eq!(
        (old.rows, old.cols),
        (new.rows, new.cols),
        "entry_map needs plans of one geometry"
    );
    let (a, b) = (old.csr(), new.csr());
    let mut map = Vec::with_capacity(b.nnz());
    for r in 0..new.rows {
        let mut i = a.row_ptr[r] as usize;
        let end = a.row_ptr[r + 1] as usize;
        for e in b.row_ptr[r] as usize..b.row_ptr[r + 1] as usize {
            let c = b.col.get(e);
            while i < end && a.col.get(i) < c {
                i += 1;
            }
            map.push((i < end && a.col.get(i) == c).then(|| a.value_of(i) as u32));
        }
    }
    map
}

/// The flat position in `layer`'s Burn layout of every value of `plan` (a
/// CSR plan with identity value order, as [`csr_plan`] builds it). Walks the
/// rows in `usize`, so layers above 2³¹ weights are fine (the plan's `i32`
/// `dense_positions` are not).
pub fn flat_positions(layer: &SparseLayer, plan: &SparsePlan) -> Vec<usize> {
    let csr = plan.csr();
    let mut out = Vec::with_capacity(csr.nnz());
    for r in 0..plan.rows {
        for e in csr.row_ptr[r] as usize..csr.row_ptr[r + 1] as usize {
            out.push(layer.flat(r, csr.col.get(e)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_col_inverts_flat() {
        for layer in [
            SparseLayer::linear("fc.weight", 5, 3),
            SparseLayer::conv("conv.weight", &[4, 3, 2, 2]),
        ] {
            for o in 0..layer.neurons() {
                for j in 0..layer.fan_in() {
                    assert_eq!(row_col(&layer, layer.flat(o, j)), (o, j), "{}", layer.path);
                }
            }
        }
    }
}
