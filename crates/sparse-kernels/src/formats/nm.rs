//! N:M compressed: at most `n` active in every group of `m` consecutive fan-in
//! weights (channel-last order). Stored SELL-16 like the condensed layout, with
//! a one-byte offset inside the group per entry instead of a column index; a
//! group with fewer than `n` active weights is padded with zeros.

use sparse_core::{Mask, SparseLayer};

use super::{Built, active_rows};
use crate::error::{KernelError, Result};
use crate::plan::{OpKind, Sell, SellIndex, SparsePlan, Storage};

/// Finds the smallest common `n:m` with `m ∈ {4, 8, 16, 2}` that the mask obeys.
pub fn detect(layer: &SparseLayer, mask: &Mask) -> Result<(usize, usize)> {
    let density = mask.density();
    for m in [4usize, 8, 16, 2] {
        if !layer.fan_in().is_multiple_of(m) {
            continue;
        }
        let n = ((density * m as f64).round() as usize).clamp(1, m);
        if max_per_group(layer, mask, m) <= n {
            return Ok((n, m));
        }
    }
    Err(KernelError::PatternMismatch {
        layer: layer.path.clone(),
        format: "N:M",
        detail: format!("no N:M with M in 4, 8, 16, 2 holds at density {density:.3} (the mask looks unstructured)"),
        fix: "train the layer with an N:M pattern (e.g. 2:4), or export it as csr".into(),
    })
}

fn max_per_group(layer: &SparseLayer, mask: &Mask, m: usize) -> usize {
    let mut most = 0;
    for o in 0..layer.neurons() {
        for j0 in (0..layer.fan_in()).step_by(m) {
            most = most.max((j0..j0 + m).filter(|&j| mask.get(layer.flat(o, j))).count());
        }
    }
    most
}

/// Builds the N:M layout for a given `n:m`; errors if a group has more than `n` active.
pub fn build(layer: &SparseLayer, op: OpKind, mask: &Mask, weights: &[f32], n: usize, m: usize) -> Result<Built> {
    if m == 0 || n == 0 || n > m || m > 256 || !layer.fan_in().is_multiple_of(m) {
        return Err(KernelError::PatternMismatch {
            layer: layer.path.clone(),
            format: "N:M",
            detail: format!("{n}:{m} does not fit fan-in {}", layer.fan_in()),
            fix: "use 1 <= N <= M <= 256 with M dividing the fan-in".into(),
        });
    }
    let rows = active_rows(layer, mask, weights);
    let k = layer.fan_in() / m * n;
    let groups = rows.len().div_ceil(Sell::LANES);
    let n_values = groups * k * Sell::LANES;
    let (mut values, mut idx, mut pad) = (vec![0.0f32; n_values], vec![0u8; n_values], Vec::new());
    for (o, row) in rows.iter().enumerate() {
        let (g, l) = (o / Sell::LANES, o % Sell::LANES);
        for grp in 0..layer.fan_in() / m {
            let lo = (grp * m) as u32;
            let active: Vec<(u32, f32)> = row
                .iter()
                .copied()
                .filter(|&(c, _)| c >= lo && c < lo + m as u32)
                .collect();
            if active.len() > n {
                return Err(KernelError::PatternMismatch {
                    layer: layer.path.clone(),
                    format: "N:M",
                    detail: format!(
                        "neuron {o}, group {grp}: {} active, at most {n} allowed for {n}:{m}",
                        active.len()
                    ),
                    fix: format!("train the layer with the {n}:{m} pattern, or export it as csr"),
                });
            }
            let mut free = (0..m as u32).filter(|d| !active.iter().any(|&(c, _)| c - lo == *d));
            for s in 0..n {
                let p = (g * k + grp * n + s) * Sell::LANES + l;
                match active.get(s) {
                    Some(&(c, v)) => (idx[p], values[p]) = ((c - lo) as u8, v),
                    None => {
                        idx[p] = free.next().unwrap_or(0) as u8;
                        pad.push(p as u32);
                    }
                }
            }
        }
    }
    for o in rows.len()..groups * Sell::LANES {
        let (g, l) = (o / Sell::LANES, o % Sell::LANES);
        pad.extend((0..k).map(|j| ((g * k + j) * Sell::LANES + l) as u32));
    }
    pad.sort_unstable();
    let sell = Sell {
        kept: (0..rows.len() as u32).collect(),
        k,
        idx: SellIndex::Nm { n, m, idx },
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
