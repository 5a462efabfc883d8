//! Sparse storage formats a mask converts to, for real sparse execution:
//! CSR over (neuron, fan-in) rows and the condensed constant fan-in layout of
//! SRigL (`[neurons, k]` values plus input indices).
//!
//! Rows are output neurons, columns the fan-in in the channel-last order of
//! [`SparseLayer::flat`]; a dense kernel computes `y_i = Σ_j w_ij · x_j` with the
//! input unrolled in that order (im2col with channels innermost).

use crate::error::{Result, SparseError};
use crate::layer::SparseLayer;
use crate::mask::Mask;

/// Compressed sparse rows of one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Csr {
    /// Rows (output neurons).
    pub rows: usize,
    /// Columns (fan-in).
    pub cols: usize,
    /// `row_ptr[i]..row_ptr[i + 1]` indexes row `i`'s entries.
    pub row_ptr: Vec<u32>,
    /// Column (fan-in position) of each entry.
    pub col_idx: Vec<u32>,
    /// Value of each entry.
    pub values: Vec<f32>,
}

/// The active weights of `layer` as CSR.
pub fn to_csr(layer: &SparseLayer, mask: &Mask, weights: &[f32]) -> Csr {
    let (rows, cols) = (layer.neurons(), layer.fan_in());
    let mut row_ptr = Vec::with_capacity(rows + 1);
    let (mut col_idx, mut values) = (
        Vec::with_capacity(mask.count_ones()),
        Vec::with_capacity(mask.count_ones()),
    );
    row_ptr.push(0);
    for o in 0..rows {
        for j in 0..cols {
            let f = layer.flat(o, j);
            if mask.get(f) {
                col_idx.push(j as u32);
                values.push(weights[f]);
            }
        }
        row_ptr.push(col_idx.len() as u32);
    }
    Csr {
        rows,
        cols,
        row_ptr,
        col_idx,
        values,
    }
}

/// SRigL's condensed layout: every kept neuron has exactly `k` inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Condensed {
    /// Inputs per neuron.
    pub k: usize,
    /// The kept (non-ablated) neurons.
    pub neurons: Vec<u32>,
    /// `[neurons.len(), k]` fan-in positions, ascending per row.
    pub indices: Vec<u32>,
    /// `[neurons.len(), k]` values.
    pub values: Vec<f32>,
}

/// The active weights of a constant fan-in layer, condensed; neurons with no
/// active weight (ablated) are dropped. Errors if the fan-in is not constant.
pub fn to_condensed(layer: &SparseLayer, mask: &Mask, weights: &[f32]) -> Result<Condensed> {
    let csr = to_csr(layer, mask, weights);
    let counts: Vec<u32> = csr.row_ptr.windows(2).map(|w| w[1] - w[0]).collect();
    let k = counts.iter().copied().find(|&c| c > 0).unwrap_or(0) as usize;
    if let Some(o) = counts.iter().position(|&c| c != 0 && c as usize != k) {
        return Err(SparseError::InvalidConfig(format!(
            "`{}` is not constant fan-in: neuron {o} has {} inputs, others {k}; train it with the constant fan-in pattern",
            layer.path, counts[o]
        )));
    }
    let neurons: Vec<u32> = (0..layer.neurons() as u32)
        .filter(|&o| counts[o as usize] > 0)
        .collect();
    Ok(Condensed {
        k,
        neurons,
        indices: csr.col_idx,
        values: csr.values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linear(i: usize, o: usize) -> SparseLayer {
        SparseLayer::linear("fc.weight", i, o)
    }

    #[test]
    fn csr_of_a_linear_layer_reproduces_the_product() {
        // W[in=3][out=2] row-major; neuron o's fan-in is column o
        let layer = linear(3, 2);
        let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mask = Mask::from_indices(6, [0, 3, 4]);
        let csr = to_csr(&layer, &mask, &w);
        assert_eq!(csr.row_ptr, vec![0, 2, 3]);
        assert_eq!(csr.col_idx, vec![0, 2, 1]);
        assert_eq!(csr.values, vec![1.0, 5.0, 4.0]);
        // y = x·(W⊙M) computed both ways
        let x = [0.5f32, -1.0, 2.0];
        for o in 0..2 {
            let dense: f32 = (0..3)
                .map(|i| if mask.get(i * 2 + o) { x[i] * w[i * 2 + o] } else { 0.0 })
                .sum();
            let (a, b) = (csr.row_ptr[o] as usize, csr.row_ptr[o + 1] as usize);
            let sparse: f32 = (a..b).map(|e| x[csr.col_idx[e] as usize] * csr.values[e]).sum();
            assert_eq!(dense, sparse);
        }
    }

    #[test]
    fn condensed_needs_a_constant_fan_in() {
        let layer = linear(4, 3);
        let mut mask = Mask::zeros(12);
        for o in [0usize, 2] {
            for i in [1usize, 3] {
                mask.set(i * 3 + o, true);
            }
        }
        let w: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let c = to_condensed(&layer, &mask, &w).unwrap();
        assert_eq!((c.k, c.neurons.clone()), (2, vec![0, 2]));
        assert_eq!(c.indices, vec![1, 3, 1, 3]);
        assert_eq!(c.values, vec![3.0, 9.0, 5.0, 11.0]);
        mask.set(0, true);
        assert!(to_condensed(&layer, &mask, &w).is_err());
    }
}
