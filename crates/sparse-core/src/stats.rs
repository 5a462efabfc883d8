//! Statistics: per-layer and global sparsity, forward multiply–adds, the ITOP
//! rate and mask overlap.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{Result, SparseError};
use crate::layer::{LayerKind, SparseLayer};
use crate::mask::Mask;

/// Sparsity of one layer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerStats {
    /// Weight path.
    pub path: String,
    /// Weight shape.
    pub shape: Vec<usize>,
    /// Weights.
    pub numel: usize,
    /// Active weights.
    pub nonzeros: usize,
}

impl LayerStats {
    /// Active fraction.
    pub fn density(&self) -> f64 {
        self.nonzeros as f64 / self.numel.max(1) as f64
    }
}

/// Sparsity of every sparse layer and in total.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SparsityReport {
    /// Per layer, in model order.
    pub layers: Vec<LayerStats>,
}

impl SparsityReport {
    /// From layers and their masks.
    pub fn new(layers: &[SparseLayer], masks: &[Mask]) -> Self {
        Self {
            layers: layers
                .iter()
                .zip(masks)
                .map(|(l, m)| LayerStats {
                    path: l.path.clone(),
                    shape: l.shape.clone(),
                    numel: l.numel(),
                    nonzeros: m.count_ones(),
                })
                .collect(),
        }
    }

    /// Weights over all sparse layers.
    pub fn numel(&self) -> usize {
        self.layers.iter().map(|l| l.numel).sum()
    }

    /// Active weights over all sparse layers.
    pub fn nonzeros(&self) -> usize {
        self.layers.iter().map(|l| l.nonzeros).sum()
    }

    /// Global density of the sparse layers.
    pub fn density(&self) -> f64 {
        self.nonzeros() as f64 / self.numel().max(1) as f64
    }

    /// Global sparsity of the sparse layers.
    pub fn sparsity(&self) -> f64 {
        1.0 - self.density()
    }
}

/// Multiply–adds of one layer for one sample.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerMacs {
    /// Weight path.
    pub path: String,
    /// With every weight.
    pub dense: u64,
    /// With only active weights.
    pub sparse: u64,
}

/// Forward multiply–accumulate operations (MACs) per sample of conv and linear layers.
///
/// A layer costs `weights × output positions` MACs dense and `active weights ×
/// output positions` sparse (RigL's FLOP accounting; the "FLOPs" of the
/// ResNet/MobileNet papers are these MACs). `active[path]` is a layer's nonzero
/// count (absent: dense); `positions[path]` its output positions (`H_out·W_out`
/// for a 2-D conv; absent for a linear layer: 1). A conv without an entry, a
/// conv with no output positions (an input smaller than its window), and counts
/// whose products or whose sum over the layers overflow 64 bits are errors, so
/// the totals of the returned layers always fit in a `u64`.
pub fn forward_macs(
    layers: &[SparseLayer],
    active: &BTreeMap<String, usize>,
    positions: &BTreeMap<String, usize>,
) -> Result<Vec<LayerMacs>> {
    let mut total = 0u64;
    let mut out = Vec::with_capacity(layers.len());
    for l in layers {
        let pos = match (positions.get(&l.path), l.kind) {
            (Some(0), LayerKind::Conv) => {
                return Err(SparseError::InvalidConfig(format!(
                    "conv `{}` has no output for this input: the input is smaller than its window; use a larger input",
                    l.path
                )));
            }
            (Some(p), _) => *p,
            (None, LayerKind::Linear) => 1,
            (None, LayerKind::Conv) => {
                return Err(SparseError::InvalidConfig(format!(
                    "no output size known for conv `{}`; pass its H_out*W_out in `positions`",
                    l.path
                )));
            }
        } as u64;
        let nnz = active.get(&l.path).copied().unwrap_or(l.numel()) as u64;
        let overflow = || {
            SparseError::InvalidConfig(format!(
                "layer `{}`: {} weights x {pos} output positions overflow the 64-bit count of multiply-adds; use a smaller input",
                l.path,
                l.numel()
            ))
        };
        let dense = (l.numel() as u64).checked_mul(pos).ok_or_else(overflow)?;
        let sparse = nnz.checked_mul(pos).ok_or_else(overflow)?;
        total = total.checked_add(dense.max(sparse)).ok_or_else(overflow)?;
        out.push(LayerMacs {
            path: l.path.clone(),
            dense,
            sparse,
        });
    }
    Ok(out)
}

/// In-time over-parameterisation rate `R_s = |∪_τ M_τ| / N` (Liu et al. 2021):
/// the fraction of sparse weights that have ever been active.
pub fn itop_rate(explored: &[Mask]) -> f64 {
    let (ever, total) = explored
        .iter()
        .fold((0, 0), |(e, t), m| (e + m.count_ones(), t + m.len()));
    ever as f64 / total.max(1) as f64
}

/// How much two masks agree.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Overlap {
    /// Active in both.
    pub intersection: usize,
    /// Active in either.
    pub union: usize,
}

impl Overlap {
    /// Intersection over union (1.0 for two empty masks).
    pub fn iou(&self) -> f64 {
        if self.union == 0 {
            1.0
        } else {
            self.intersection as f64 / self.union as f64
        }
    }
}

/// Overlap of two mask sets of the same layers.
pub fn mask_overlap(a: &[Mask], b: &[Mask]) -> Overlap {
    a.iter().zip(b).fold(
        Overlap {
            intersection: 0,
            union: 0,
        },
        |acc, (x, y)| Overlap {
            intersection: acc.intersection + x.and(y).count_ones(),
            union: acc.union + x.or(y).count_ones(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_weights_times_positions_and_overflow_is_an_error() {
        let conv = SparseLayer::conv("c.weight", &[8, 4, 3, 3]);
        let fc = SparseLayer::linear("fc.weight", 10, 5);
        let positions = BTreeMap::from([("c.weight".to_string(), 16)]);
        let active = BTreeMap::from([("c.weight".to_string(), 30)]);
        let macs = forward_macs(&[conv.clone(), fc.clone()], &active, &positions).unwrap();
        assert_eq!((macs[0].dense, macs[0].sparse), (8 * 4 * 9 * 16, 30 * 16));
        assert_eq!((macs[1].dense, macs[1].sparse), (50, 50));

        let zero = BTreeMap::from([("c.weight".to_string(), 0)]);
        let err = forward_macs(std::slice::from_ref(&conv), &active, &zero).unwrap_err();
        assert!(err.to_string().contains("smaller than its window"), "{err}");

        // 288 weights x 2^60 positions > 2^64
        let huge = BTreeMap::from([("c.weight".to_string(), 1usize << 60)]);
        let err = forward_macs(std::slice::from_ref(&conv), &BTreeMap::new(), &huge).unwrap_err();
        assert!(err.to_string().contains("overflow"), "{err}");
        // 288·2^55 = 9·2^60 fits in 64 bits, twice that does not
        let half = BTreeMap::from([("c.weight".to_string(), 1usize << 55)]);
        let one = forward_macs(std::slice::from_ref(&conv), &BTreeMap::new(), &half).unwrap();
        assert_eq!(one[0].dense, 9u64 << 60);
        assert!(forward_macs(&[conv.clone(), conv], &BTreeMap::new(), &half).is_err());
    }
}
