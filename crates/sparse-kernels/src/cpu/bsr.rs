//! BSR sparse × dense for small batches: per block row, `br` accumulators;
//! each block is a small dense `br × bc` product on a contiguous strip of `x`.

// `S` picks the instruction set a `with_simd` body is compiled for; the
// fixed-width index loops are what LLVM vectorises.
#![allow(clippy::extra_unused_type_parameters, clippy::needless_range_loop)]

use macerator::Simd;

use super::{SharedOut, balanced_ranges, for_ranges, tasks_for};
use crate::activation::Activation;
use crate::plan::Bsr;

/// `out[b, r] = act(bias[r] + Σ W[r, c]·x[b, c])` for `x: [batch, cols]`.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    s: &Bsr,
    values: &[f32],
    x: &[f32],
    cols: usize,
    batch: usize,
    bias: &[f32],
    act: Activation,
    out: &mut [f32],
) {
    let rows = bias.len();
    let ranges = balanced_ranges(&s.block_row_ptr, tasks_for(values.len() * batch));
    for b in 0..batch {
        let xb = &x[b * cols..(b + 1) * cols];
        let ob = SharedOut(out[b * rows..(b + 1) * rows].as_mut_ptr());
        for_ranges(&ranges, |range| block_rows(s, values, xb, bias, act, range, ob));
    }
}

#[macerator::with_simd]
fn block_rows<S: Simd>(
    s: &Bsr,
    values: &[f32],
    x: &[f32],
    bias: &[f32],
    act: Activation,
    brows: std::ops::Range<usize>,
    out: SharedOut,
) {
    let (br, bc) = (s.br, s.bc);
    let mut acc = vec![0.0f32; br];
    for brow in brows {
        acc.iter_mut().for_each(|a| *a = 0.0);
        for blk in s.block_row_ptr[brow] as usize..s.block_row_ptr[brow + 1] as usize {
            let c0 = s.block_col[blk] as usize * bc;
            let xs = &x[c0..c0 + bc];
            let vb = &values[blk * br * bc..(blk + 1) * br * bc];
            for (r, a) in acc.iter_mut().enumerate() {
                let vr = &vb[r * bc..(r + 1) * bc];
                let mut sum = 0.0f32;
                for c in 0..bc {
                    sum = vr[c].mul_add(xs[c], sum);
                }
                *a += sum;
            }
        }
        for (r, a) in acc.iter().enumerate() {
            let row = brow * br + r;
            // SAFETY: each task owns its block rows.
            unsafe { out.write(row, act.apply(a + bias[row])) };
        }
    }
}
