//! What one layer is pruned to, and the selection rule every one-shot method shares:
//! the `k` lowest scores of a comparison group, ties to the lower index (a stable
//! ascending sort, as the Wanda and SparseGPT references use).

use std::cmp::Ordering;

/// The sparsity of one layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// Prune `⌊len · sparsity⌋` weights of every comparison group (layer, row or block).
    Sparsity(f64),
    /// Keep `n` of every `m` consecutive fan-in weights of each neuron (groups start at
    /// fan-in indices that are multiples of `m`, as [`sparse_core::Pattern::NM`]).
    NM {
        /// Kept per group.
        n: usize,
        /// Group size.
        m: usize,
    },
}

impl Target {
    /// Whether nothing is pruned.
    pub fn is_dense(&self) -> bool {
        match *self {
            Self::Sparsity(s) => s <= 0.0,
            Self::NM { n, m } => n >= m,
        }
    }
}

/// `⌊len · sparsity⌋`, robust to rounding (`0.3 · 10` is 3).
pub fn prune_count(len: usize, sparsity: f64) -> usize {
    ((len as f64 * sparsity + 1e-9).floor().max(0.0) as usize).min(len)
}

fn ascending(scores: &[f64]) -> impl Fn(&usize, &usize) -> Ordering + '_ {
    move |a, b| scores[*a].total_cmp(&scores[*b]).then(a.cmp(b))
}

/// Indices of the `k` lowest scores (ties to the lower index), in no particular order.
pub fn lowest(scores: &[f64], k: usize) -> Vec<usize> {
    let k = k.min(scores.len());
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    if k == 0 {
        return Vec::new();
    }
    if k < idx.len() {
        idx.select_nth_unstable_by(k - 1, ascending(scores));
    }
    idx.truncate(k);
    idx
}

/// Keep flags for one row of scores under `target` (`false` = pruned).
pub fn keep_row(scores: &[f64], target: Target) -> Vec<bool> {
    let mut keep = vec![true; scores.len()];
    match target {
        Target::Sparsity(s) => {
            for i in lowest(scores, prune_count(scores.len(), s)) {
                keep[i] = false;
            }
        }
        Target::NM { n, m } => {
            for (g, group) in scores.chunks(m).enumerate() {
                for i in lowest(group, m.saturating_sub(n)) {
                    keep[g * m + i] = false;
                }
            }
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_breaks_ties_to_the_lower_index() {
        let s = [3.0, 1.0, 2.0, 1.0, 5.0];
        let mut got = lowest(&s, 2);
        got.sort_unstable();
        assert_eq!(got, vec![1, 3]);
        let mut got = lowest(&[1.0, 1.0, 1.0], 2);
        got.sort_unstable();
        assert_eq!(got, vec![0, 1]);
    }

    #[test]
    fn rows_and_groups() {
        assert_eq!(prune_count(10, 0.3), 3);
        assert_eq!(prune_count(9, 0.5), 4);
        let keep = keep_row(&[4.0, 1.0, 3.0, 2.0, 0.5, 0.1, 9.0, 8.0], Target::NM { n: 2, m: 4 });
        assert_eq!(keep, vec![true, false, true, false, false, false, true, true]);
        let keep = keep_row(&[4.0, 1.0, 3.0, 2.0], Target::Sparsity(0.5));
        assert_eq!(keep, vec![true, false, true, false]);
    }
}
