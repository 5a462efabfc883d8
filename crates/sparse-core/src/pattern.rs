//! Sparsity patterns: the shapes a mask may take, a top-k under each pattern,
//! and the drop/grow exchange that dynamic methods perform *inside* the pattern.
//!
//! A pattern splits a layer into **units** (single weights, blocks or whole
//! neurons) and, for N:M and constant fan-in, into **buckets** of units with a
//! fixed quota (N per group of M along the fan-in; k per neuron). Every
//! operation keeps those quotas exactly.
//!
//! Ranking is deterministic: higher score first, ties to the lower id (a
//! weight's flat index; for blocks and channels the unit index), see
//! [`crate::select`].

use crate::error::{Result, SparseError};
use crate::layer::SparseLayer;
use crate::mask::Mask;
use crate::select::{score_key, top_k};

/// The shape a layer's mask may take. Written as text (`unstructured`, `2:4`,
/// `constant-fan-in`, `block:4x4`, `channel`) on the command line and in config files.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Pattern {
    /// Any subset of weights.
    #[default]
    Unstructured,
    /// Exactly `n` active in every group of `m` consecutive fan-in weights
    /// (channel-last order, see [`SparseLayer::flat`]); density is `n/m`.
    NM {
        /// Active weights per group.
        n: usize,
        /// Group size; must divide every layer's fan-in.
        m: usize,
    },
    /// Every neuron has the same number `k` of active fan-in weights
    /// (SRigL's condensed layout): `k = ⌊count / neurons⌋`.
    ConstantFanIn,
    /// Blocks of `rows` neurons × `cols` fan-in weights are all on or all off.
    Block {
        /// Neurons per block.
        rows: usize,
        /// Fan-in weights per block.
        cols: usize,
    },
    /// Whole neurons (output channels) are on or off.
    Channel,
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unstructured => f.write_str("unstructured"),
            Self::NM { n, m } => write!(f, "{n}:{m}"),
            Self::ConstantFanIn => f.write_str("constant-fan-in"),
            Self::Block { rows, cols } => write!(f, "block:{rows}x{cols}"),
            Self::Channel => f.write_str("channel"),
        }
    }
}

impl std::str::FromStr for Pattern {
    type Err = SparseError;

    /// Parses `unstructured`, `N:M` (e.g. `2:4`), `constant-fan-in`, `block:RxC` or `channel`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            SparseError::InvalidConfig(format!(
                "unknown pattern `{s}`; use unstructured, N:M (e.g. 2:4), constant-fan-in, block:RxC (e.g. block:4x4) or channel"
            ))
        };
        let number = |t: &str| t.trim().parse::<usize>().map_err(|_| bad());
        Ok(match s.trim() {
            "unstructured" => Self::Unstructured,
            "constant-fan-in" => Self::ConstantFanIn,
            "channel" => Self::Channel,
            t => match t.strip_prefix("block:") {
                Some(dims) => {
                    let (r, c) = dims.split_once('x').ok_or_else(bad)?;
                    Self::Block {
                        rows: number(r)?,
                        cols: number(c)?,
                    }
                }
                None => {
                    let (n, m) = t.split_once(':').ok_or_else(bad)?;
                    Self::NM {
                        n: number(n)?,
                        m: number(m)?,
                    }
                }
            },
        })
    }
}

crate::config_text::text_config!(Pattern);

/// Which units form a layer and how they are grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Units {
    /// Single weights, one bucket with a free count.
    Weights,
    /// Single weights in buckets of `len` consecutive fan-in weights, `quota` each.
    Buckets { len: usize, quota: usize },
    /// Blocks of `rows × cols` over the (neuron, fan-in) grid.
    Blocks { rows: usize, cols: usize },
}

impl Pattern {
    /// Short name for messages.
    pub fn name(&self) -> String {
        match self {
            Self::Unstructured => "unstructured".into(),
            Self::NM { n, m } => format!("{n}:{m}"),
            Self::ConstantFanIn => "constant fan-in".into(),
            Self::Block { rows, cols } => format!("block {rows}x{cols}"),
            Self::Channel => "channel".into(),
        }
    }

    /// The density the pattern imposes (N:M), if any.
    pub fn fixed_density(&self) -> Option<f64> {
        match self {
            Self::NM { n, m } => Some(*n as f64 / *m as f64),
            _ => None,
        }
    }

    /// Whether the pattern fixes a per-bucket quota (N:M, constant fan-in).
    pub fn has_quota(&self) -> bool {
        matches!(self, Self::NM { .. } | Self::ConstantFanIn)
    }

    /// Checks the pattern fits `layer`.
    pub fn check(&self, layer: &SparseLayer) -> Result<()> {
        match *self {
            Self::NM { n, m } => {
                if m == 0 || n == 0 || n > m {
                    return Err(SparseError::InvalidConfig(format!(
                        "N:M pattern {n}:{m} needs 1 <= N <= M (e.g. 2:4)"
                    )));
                }
                if !layer.fan_in().is_multiple_of(m) {
                    return Err(SparseError::NmDoesNotDivide {
                        layer: layer.path.clone(),
                        n,
                        m,
                        fan_in: layer.fan_in(),
                    });
                }
            }
            Self::Block { rows, cols }
                if rows == 0
                    || cols == 0
                    || !layer.neurons().is_multiple_of(rows)
                    || !layer.fan_in().is_multiple_of(cols) =>
            {
                return Err(SparseError::BlockDoesNotDivide {
                    layer: layer.path.clone(),
                    rows,
                    cols,
                    neurons: layer.neurons(),
                    fan_in: layer.fan_in(),
                });
            }
            _ => {}
        }
        Ok(())
    }

    /// The largest nonzero count on the pattern's grid that is `<= desired`
    /// (N:M: always `n/m` of the layer). Errors when it would be zero.
    pub fn feasible_count(&self, layer: &SparseLayer, desired: usize) -> Result<usize> {
        self.check(layer)?;
        let desired = desired.min(layer.numel());
        let zero = |unit: &str| SparseError::RoundsToZero {
            layer: layer.path.clone(),
            pattern: self.name(),
            unit: unit.into(),
            density: desired as f64 / layer.numel() as f64,
            neurons: layer.neurons(),
            fan_in: layer.fan_in(),
        };
        let count = match *self {
            Self::Unstructured => desired,
            Self::NM { n, m } => layer.numel() / m * n,
            Self::ConstantFanIn => {
                let k = desired / layer.neurons();
                if k == 0 {
                    return Err(zero("weights per neuron"));
                }
                k * layer.neurons()
            }
            Self::Block { rows, cols } => {
                let blocks = desired / (rows * cols);
                if blocks == 0 {
                    return Err(zero("blocks"));
                }
                blocks * rows * cols
            }
            Self::Channel => {
                let channels = desired / layer.fan_in();
                if channels == 0 {
                    return Err(zero("channels"));
                }
                channels * layer.fan_in()
            }
        };
        Ok(count)
    }

    fn units(&self, layer: &SparseLayer, count: usize) -> Units {
        match *self {
            Self::Unstructured => Units::Weights,
            Self::NM { n, m } => Units::Buckets { len: m, quota: n },
            Self::ConstantFanIn => Units::Buckets {
                len: layer.fan_in(),
                quota: count / layer.neurons().max(1),
            },
            Self::Block { rows, cols } => Units::Blocks { rows, cols },
            Self::Channel => Units::Blocks {
                rows: 1,
                cols: layer.fan_in(),
            },
        }
    }

    /// The best `count` weights by `scores` under the pattern.
    ///
    /// `count` must come from [`Pattern::feasible_count`]. Used for random
    /// initialisation (random scores), magnitude pruning and any top-k.
    pub fn select(&self, layer: &SparseLayer, scores: &[f32], count: usize) -> Mask {
        assert_eq!(scores.len(), layer.numel(), "scores for `{}`", layer.path);
        let n = layer.numel();
        match self.units(layer, count) {
            Units::Weights => Mask::from_indices(
                n,
                top_k(0..n as u32, count, |i| scores[i as usize])
                    .into_iter()
                    .map(|i| i as usize),
            ),
            Units::Buckets { len, quota } => {
                let mut mask = Mask::zeros(n);
                for_each_bucket(layer, len, |bucket| {
                    for f in top_in(bucket, quota, |f| scores[f]) {
                        mask.set(f, true);
                    }
                });
                mask
            }
            Units::Blocks { rows, cols } => {
                let grid = BlockGrid::new(layer, rows, cols);
                let unit_scores = grid.unit_sums(scores);
                let chosen = top_k(0..grid.len() as u32, count / (rows * cols), |u| unit_scores[u as usize]);
                grid.mask(chosen.into_iter().map(|u| u as usize))
            }
        }
    }

    /// Active units of `mask` (weights, or whole blocks/channels).
    pub fn active_units(&self, layer: &SparseLayer, mask: &Mask) -> usize {
        match self.units(layer, mask.count_ones()) {
            Units::Weights | Units::Buckets { .. } => mask.count_ones(),
            Units::Blocks { rows, cols } => mask.count_ones() / (rows * cols),
        }
    }

    /// Drop `n_drop` active units with the lowest `drop_scores` and grow as many
    /// with the highest `grow_scores`, keeping the pattern's quotas:
    ///
    /// * unstructured, block, channel: keep the top `active − n_drop` active units by
    ///   drop score; grow the top `n_drop` of the rest by grow score (a unit dropped now
    ///   may be grown back, as in RigL);
    /// * N:M and constant fan-in: drop the `n_drop` lowest active weights of the layer,
    ///   then each group / neuron regrows exactly as many as it lost, from its own
    ///   inactive weights, by grow score.
    ///
    /// Scores are per weight; block/channel units sum them. The count of active
    /// weights is unchanged.
    pub fn exchange(
        &self,
        layer: &SparseLayer,
        mask: &Mask,
        drop_scores: &[f32],
        grow_scores: &[f32],
        n_drop: usize,
    ) -> Mask {
        let n = layer.numel();
        assert_eq!(mask.len(), n);
        assert_eq!(drop_scores.len(), n);
        assert_eq!(grow_scores.len(), n);
        match self.units(layer, mask.count_ones()) {
            Units::Weights => {
                let n_keep = mask.count_ones().saturating_sub(n_drop);
                let kept = Mask::from_indices(
                    n,
                    top_k(mask.iter_ones().map(|i| i as u32), n_keep, |i| drop_scores[i as usize])
                        .into_iter()
                        .map(|i| i as usize),
                );
                let grow_n = mask.count_ones() - kept.count_ones();
                let grow = top_k((0..n as u32).filter(|&i| !kept.get(i as usize)), grow_n, |i| {
                    grow_scores[i as usize]
                });
                let mut out = kept;
                for i in grow {
                    out.set(i as usize, true);
                }
                out
            }
            Units::Buckets { len, .. } => {
                let n_keep = mask.count_ones().saturating_sub(n_drop);
                let kept = Mask::from_indices(
                    n,
                    top_k(mask.iter_ones().map(|i| i as u32), n_keep, |i| drop_scores[i as usize])
                        .into_iter()
                        .map(|i| i as usize),
                );
                let mut out = kept.clone();
                for_each_bucket(layer, len, |bucket| {
                    let lost = bucket.iter().filter(|&&f| mask.get(f) && !kept.get(f)).count();
                    if lost == 0 {
                        return;
                    }
                    let free: Vec<usize> = bucket.iter().copied().filter(|&f| !kept.get(f)).collect();
                    for f in top_in(&free, lost, |f| grow_scores[f]) {
                        out.set(f, true);
                    }
                });
                out
            }
            Units::Blocks { rows, cols } => {
                let grid = BlockGrid::new(layer, rows, cols);
                let (ds, gs) = (grid.unit_sums(drop_scores), grid.unit_sums(grow_scores));
                let active: Vec<u32> = (0..grid.len())
                    .filter(|&u| grid.is_active(mask, u))
                    .map(|u| u as u32)
                    .collect();
                let n_keep = active.len().saturating_sub(n_drop);
                let kept = top_k(active.iter().copied(), n_keep, |u| ds[u as usize]);
                let mut is_kept = vec![false; grid.len()];
                for &u in &kept {
                    is_kept[u as usize] = true;
                }
                let grow = top_k(
                    (0..grid.len() as u32).filter(|&u| !is_kept[u as usize]),
                    active.len() - kept.len(),
                    |u| gs[u as usize],
                );
                grid.mask(kept.into_iter().chain(grow).map(|u| u as usize))
            }
        }
    }

    /// Checks that `mask` obeys the pattern; the message names the first violation.
    ///
    /// For constant fan-in every neuron must have 0 or the same `k` active weights
    /// (0 = an ablated neuron).
    pub fn verify(&self, layer: &SparseLayer, mask: &Mask) -> std::result::Result<(), String> {
        match *self {
            Self::Unstructured => Ok(()),
            Self::NM { n, m } => {
                let mut err = None;
                for_each_bucket(layer, m, |bucket| {
                    let c = bucket.iter().filter(|&&f| mask.get(f)).count();
                    if c != n && err.is_none() {
                        err = Some(format!("`{}`: a group of {m} has {c} active, expected {n}", layer.path));
                    }
                });
                err.map_or(Ok(()), Err)
            }
            Self::ConstantFanIn => {
                let counts: Vec<usize> = (0..layer.neurons())
                    .map(|o| layer.neuron_indices(o).filter(|&f| mask.get(f)).count())
                    .collect();
                let k = counts.iter().copied().find(|&c| c > 0).unwrap_or(0);
                match counts.iter().position(|&c| c != 0 && c != k) {
                    Some(o) => Err(format!(
                        "`{}`: neuron {o} has fan-in {}, others {k}",
                        layer.path, counts[o]
                    )),
                    None => Ok(()),
                }
            }
            Self::Block { rows, cols } => BlockGrid::new(layer, rows, cols).verify(mask),
            Self::Channel => BlockGrid::new(layer, 1, layer.fan_in()).verify(mask),
        }
    }
}

/// Calls `f` with the flat indices of every bucket of `len` consecutive fan-in
/// weights, neuron by neuron.
fn for_each_bucket(layer: &SparseLayer, len: usize, mut f: impl FnMut(&[usize])) {
    let mut buf = Vec::with_capacity(len);
    for o in 0..layer.neurons() {
        for j0 in (0..layer.fan_in()).step_by(len) {
            buf.clear();
            buf.extend((j0..j0 + len).map(|j| layer.flat(o, j)));
            f(&buf);
        }
    }
}

/// The `k` best flat indices of a small candidate list.
fn top_in(candidates: &[usize], k: usize, score: impl Fn(usize) -> f32) -> Vec<usize> {
    let mut keys: Vec<(u32, std::cmp::Reverse<usize>)> = candidates
        .iter()
        .map(|&f| (score_key(score(f)), std::cmp::Reverse(f)))
        .collect();
    keys.sort_unstable_by(|a, b| b.cmp(a));
    keys.into_iter().take(k).map(|(_, std::cmp::Reverse(f))| f).collect()
}

/// Blocks of `rows` neurons × `cols` fan-in weights, numbered row-major.
struct BlockGrid<'a> {
    layer: &'a SparseLayer,
    rows: usize,
    cols: usize,
    per_row: usize,
}

impl<'a> BlockGrid<'a> {
    fn new(layer: &'a SparseLayer, rows: usize, cols: usize) -> Self {
        Self {
            layer,
            rows,
            cols,
            per_row: layer.fan_in() / cols,
        }
    }

    fn len(&self) -> usize {
        self.layer.neurons() / self.rows * self.per_row
    }

    fn elems(&self, u: usize) -> impl Iterator<Item = usize> + '_ {
        let (bo, bj) = (u / self.per_row, u % self.per_row);
        (0..self.rows)
            .flat_map(move |dr| (0..self.cols).map(move |dc| self.layer.flat(bo * self.rows + dr, bj * self.cols + dc)))
    }

    fn unit_sums(&self, scores: &[f32]) -> Vec<f32> {
        (0..self.len())
            .map(|u| self.elems(u).map(|f| scores[f]).sum())
            .collect()
    }

    fn is_active(&self, mask: &Mask, u: usize) -> bool {
        self.elems(u).all(|f| mask.get(f))
    }

    fn mask(&self, units: impl IntoIterator<Item = usize>) -> Mask {
        let mut mask = Mask::zeros(self.layer.numel());
        for u in units {
            for f in self.elems(u) {
                mask.set(f, true);
            }
        }
        mask
    }

    fn verify(&self, mask: &Mask) -> std::result::Result<(), String> {
        for u in 0..self.len() {
            let c = self.elems(u).filter(|&f| mask.get(f)).count();
            if c != 0 && c != self.rows * self.cols {
                return Err(format!(
                    "`{}`: block {u} is partly active ({c} of {})",
                    self.layer.path,
                    self.rows * self.cols
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linear(i: usize, o: usize) -> SparseLayer {
        SparseLayer::linear("fc.weight", i, o)
    }

    #[test]
    fn nm_selects_top_n_per_group_along_fan_in() {
        // Linear [in=4, out=2]: neuron 0 owns flat 0,2,4,6; neuron 1 owns 1,3,5,7.
        let l = linear(4, 2);
        let scores = [1.0, 8.0, 4.0, 7.0, 3.0, 6.0, 2.0, 5.0];
        let p = Pattern::NM { n: 1, m: 2 };
        let count = p.feasible_count(&l, 0).unwrap();
        assert_eq!(count, 4);
        let m = p.select(&l, &scores, count);
        // neuron 0 groups {0,2}->2, {4,6}->4 ; neuron 1 groups {1,3}->1, {5,7}->5
        assert_eq!(m.iter_ones().collect::<Vec<_>>(), vec![1, 2, 4, 5]);
        assert!(p.verify(&l, &m).is_ok());
    }

    #[test]
    fn nm_that_does_not_divide_is_an_error_naming_the_layer() {
        let err = Pattern::NM { n: 2, m: 4 }.feasible_count(&linear(6, 2), 6).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("fc.weight") && msg.contains("2:4") && msg.contains('6'),
            "{msg}"
        );
    }

    #[test]
    fn constant_fan_in_rounding_to_zero_is_an_error() {
        let err = Pattern::ConstantFanIn.feasible_count(&linear(10, 20), 19).unwrap_err();
        assert!(matches!(err, SparseError::RoundsToZero { .. }), "{err}");
    }

    #[test]
    fn exchange_unstructured_drops_smallest_and_grows_largest() {
        let l = linear(3, 2);
        let mask = Mask::from_indices(6, [0, 1, 2]);
        let w = [0.5, 0.1, 0.9, 0.0, 0.0, 0.0];
        let g = [0.0, 0.0, 0.0, 0.3, 0.8, 0.2];
        let out = Pattern::Unstructured.exchange(&l, &mask, &w, &g, 1);
        assert_eq!(out.iter_ones().collect::<Vec<_>>(), vec![0, 2, 4]);
    }

    #[test]
    fn block_select_and_verify() {
        let l = linear(4, 4); // 4 neurons x fan-in 4
        let p = Pattern::Block { rows: 2, cols: 2 };
        let mut scores = vec![0.0f32; 16];
        for o in 0..2 {
            for j in 2..4 {
                scores[l.flat(o, j)] = 1.0;
            }
        }
        let m = p.select(&l, &scores, p.feasible_count(&l, 4).unwrap());
        assert_eq!(m.count_ones(), 4);
        assert!(p.verify(&l, &m).is_ok());
        assert!((0..2).all(|o| (2..4).all(|j| m.get(l.flat(o, j)))));
    }
}
