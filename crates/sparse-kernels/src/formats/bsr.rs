//! Block sparse rows: blocks of `br` neurons × `bc` fan-in weights that are all
//! active or all inactive (the block pattern). Values are `[block][br][bc]`.

use sparse_core::{Mask, SparseLayer};

use super::Built;
use crate::error::{KernelError, Result};
use crate::plan::{Bsr, OpKind, SparsePlan, Storage};

/// The largest block (from 16×16 down to 1×1) that tiles the layer and that
/// the mask holds whole (every block all active or all inactive).
pub fn detect(layer: &SparseLayer, mask: &Mask) -> [usize; 2] {
    const CANDIDATES: [[usize; 2]; 9] = [[16, 16], [8, 8], [4, 8], [8, 4], [4, 4], [2, 4], [4, 2], [2, 2], [1, 4]];
    let (rows, cols) = (layer.neurons(), layer.fan_in());
    CANDIDATES
        .into_iter()
        .filter(|&[br, bc]| rows.is_multiple_of(br) && cols.is_multiple_of(bc))
        .find(|&[br, bc]| {
            (0..rows / br).all(|i| {
                (0..cols / bc).all(|j| {
                    let on = (0..br)
                        .flat_map(|r| (0..bc).map(move |c| (i * br + r, j * bc + c)))
                        .filter(|&(o, k)| mask.get(layer.flat(o, k)))
                        .count();
                    on == 0 || on == br * bc
                })
            })
        })
        .unwrap_or([1, 1])
}

/// Builds BSR with `[br, bc]` blocks; errors on a partly active block.
pub fn build(layer: &SparseLayer, op: OpKind, mask: &Mask, weights: &[f32], block: [usize; 2]) -> Result<Built> {
    let [br, bc] = block;
    let (rows, cols) = (layer.neurons(), layer.fan_in());
    if br == 0 || bc == 0 || !rows.is_multiple_of(br) || !cols.is_multiple_of(bc) {
        return Err(KernelError::PatternMismatch {
            layer: layer.path.clone(),
            format: "BSR",
            detail: format!("block {br}x{bc} does not tile the {rows}x{cols} (neurons x fan-in) weight"),
            fix: "pick a block that divides both, or export the layer as csr".into(),
        });
    }
    let (mut block_row_ptr, mut block_col, mut values) = (vec![0u32], Vec::new(), Vec::new());
    for brow in 0..rows / br {
        for bcol in 0..cols / bc {
            let cells: Vec<usize> = (0..br)
                .flat_map(|r| (0..bc).map(move |c| (brow * br + r, bcol * bc + c)))
                .map(|(o, j)| layer.flat(o, j))
                .collect();
            let on = cells.iter().filter(|&&f| mask.get(f)).count();
            if on == 0 {
                continue;
            }
            if on != cells.len() {
                return Err(KernelError::PatternMismatch {
                    layer: layer.path.clone(),
                    format: "BSR",
                    detail: format!("block ({brow}, {bcol}) is partly active ({on} of {})", cells.len()),
                    fix: format!("train the layer with the block {br}x{bc} pattern, or export it as csr"),
                });
            }
            block_col.push(bcol as u32);
            values.extend(cells.iter().map(|&f| weights[f]));
        }
        block_row_ptr.push(block_col.len() as u32);
    }
    let storage = Storage::Bsr(Bsr {
        br,
        bc,
        block_row_ptr,
        block_col,
    });
    let plan = SparsePlan::new(rows, cols, values.len(), op, storage, None, Vec::new());
    Ok(Built { plan, values })
}
