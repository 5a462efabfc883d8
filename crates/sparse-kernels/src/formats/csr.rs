//! Compressed sparse rows: any mask. Column indices are `u16` when the fan-in
//! is at most 65536, else `u32`.

use sparse_core::{Mask, SparseLayer};

use super::{Built, active_rows};
use crate::indices::Indices;
use crate::plan::{CsrView, OpKind, SparsePlan, Storage};

/// The active weights of `layer` as CSR (values in row order).
pub fn build(layer: &SparseLayer, op: OpKind, mask: &Mask, weights: &[f32]) -> Built {
    let (rows, cols) = (layer.neurons(), layer.fan_in());
    let mut row_ptr = Vec::with_capacity(rows + 1);
    let (mut col, mut values) = (
        Vec::with_capacity(mask.count_ones()),
        Vec::with_capacity(mask.count_ones()),
    );
    row_ptr.push(0u32);
    for row in active_rows(layer, mask, weights) {
        for (c, v) in row {
            col.push(c);
            values.push(v);
        }
        row_ptr.push(col.len() as u32);
    }
    let view = CsrView {
        row_ptr,
        col: Indices::narrowest(col, cols),
        perm: None,
    };
    let plan = SparsePlan::new(rows, cols, values.len(), op, Storage::Csr, Some(view), Vec::new());
    Built { plan, values }
}
