//! SRigL's condensed constant fan-in layout (Lasby et al., ICLR 2024): every
//! kept neuron has exactly `k` inputs, ablated neurons (no input) are dropped.
//! Rows are interleaved 16 at a time (SELL-16): `values[g][j][l]` is entry `j`
//! of kept row `16g + l`, so one vector FMA serves 16 rows and constant fan-in
//! needs no padding (only the last group's missing lanes are padding).

use sparse_core::{Mask, SparseLayer};

use super::{ActiveRows, Built, active_rows};
use crate::error::{KernelError, Result};
use crate::indices::Indices;
use crate::plan::{OpKind, Sell, SellIndex, SparsePlan, Storage};

/// Checks constant fan-in and returns every row's active entries and `k`.
pub(crate) fn rows_with_constant_fan_in(
    layer: &SparseLayer,
    mask: &Mask,
    weights: &[f32],
) -> Result<(ActiveRows, usize)> {
    let rows = active_rows(layer, mask, weights);
    let k = rows.iter().map(Vec::len).find(|&c| c > 0).unwrap_or(0);
    if let Some(o) = rows.iter().position(|r| !r.is_empty() && r.len() != k) {
        return Err(KernelError::PatternMismatch {
            layer: layer.path.clone(),
            format: "condensed (constant fan-in)",
            detail: format!("neuron {o} has {} inputs, other neurons {k}", rows[o].len()),
            fix: "train the layer with the constant fan-in pattern (SRigL), or export it as csr".into(),
        });
    }
    Ok((rows, k))
}

/// Builds the SELL-16 condensed layout; errors if the fan-in is not constant.
pub fn build(layer: &SparseLayer, op: OpKind, mask: &Mask, weights: &[f32]) -> Result<Built> {
    let (rows, k) = rows_with_constant_fan_in(layer, mask, weights)?;
    let kept: Vec<u32> = (0..rows.len() as u32)
        .filter(|&o| !rows[o as usize].is_empty())
        .collect();
    let groups = kept.len().div_ceil(Sell::LANES);
    let n_values = groups * k * Sell::LANES;
    let (mut values, mut idx, mut pad) = (vec![0.0f32; n_values], vec![0u32; n_values], Vec::new());
    for g in 0..groups {
        for l in 0..Sell::LANES {
            let row = kept.get(g * Sell::LANES + l).map(|&o| &rows[o as usize]);
            for j in 0..k {
                let p = (g * k + j) * Sell::LANES + l;
                match row {
                    Some(r) => (idx[p], values[p]) = r[j],
                    None => pad.push(p as u32),
                }
            }
        }
    }
    let sell = Sell {
        kept,
        k,
        idx: SellIndex::Abs(Indices::narrowest(idx, layer.fan_in())),
    };
    let plan = SparsePlan::new(
        layer.neurons(),
        layer.fan_in(),
        n_values,
        op,
        Storage::Sell(sell),
        None,
        pad,
    );
    Ok(Built { plan, values })
}
