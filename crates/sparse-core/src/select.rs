//! Deterministic top-k on the host.
//!
//! Scores are ranked by a total order: a higher score wins; equal scores are
//! broken by the lower id (a weight's flat index, or a block's index), so the
//! same scores always give the same set on every device. `NaN` ranks below
//! every number and `-0.0` equals `+0.0`.

use crate::mask::Mask;

/// An order-preserving 32-bit key of a score (higher score, higher key).
pub fn score_key(score: f32) -> u32 {
    if score.is_nan() {
        return 0;
    }
    let bits = (score + 0.0).to_bits(); // + 0.0 turns -0.0 into +0.0
    let key = if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    };
    key.max(1) // 0 is reserved for NaN
}

/// Packs a score and an id so that a larger key means "ranks higher" (the
/// order above); for callers that keep their own running top-k of keys.
pub fn pack(score: f32, id: u32) -> u64 {
    (u64::from(score_key(score)) << 32) | u64::from(u32::MAX - id)
}

/// The id of a [`pack`]ed key.
pub fn unpack_id(key: u64) -> u32 {
    u32::MAX - (key as u32)
}

/// The `total` best-ranked weights over several layers at once (one global
/// ranking): masks with the chosen weights active. Ties go to the earlier layer,
/// then to the lower flat index (ids count through the layers in order).
pub fn global_top_k(scores: &[Vec<f32>], total: usize) -> Vec<Mask> {
    let offsets: Vec<usize> = scores
        .iter()
        .scan(0, |acc, s| {
            let o = *acc;
            *acc += s.len();
            Some(o)
        })
        .collect();
    let n: usize = scores.iter().map(Vec::len).sum();
    let locate = |g: usize| {
        let l = offsets.partition_point(|&o| o <= g) - 1;
        (l, g - offsets[l])
    };
    let chosen = top_k(0..n as u32, total, |g| {
        let (l, i) = locate(g as usize);
        scores[l][i]
    });
    let mut masks: Vec<Mask> = scores.iter().map(|s| Mask::zeros(s.len())).collect();
    for g in chosen {
        let (l, i) = locate(g as usize);
        masks[l].set(i, true);
    }
    masks
}

/// Candidates above which a sampled threshold pre-filters the selection.
const PREFILTER: usize = 1 << 20;

/// The ids of the `k` best-ranked candidates, in rank order.
///
/// `score(id)` gives the score of a candidate. Fewer than `k` candidates
/// returns them all. For many candidates and a small `k`, a threshold taken
/// from a deterministic sample skips the keys that cannot be in the top `k`;
/// the result is the same exact top-`k`.
pub fn top_k<I>(candidates: I, k: usize, score: impl Fn(u32) -> f32) -> Vec<u32>
where
    I: IntoIterator<Item = u32>,
    I::IntoIter: Clone,
{
    let iter = candidates.into_iter();
    let mut keys: Vec<u64> = Vec::new();
    match prefilter_threshold(iter.clone(), k, &score) {
        Some(min_key) => keys.extend(iter.filter_map(|id| {
            let key = pack(score(id), id);
            (key >= min_key).then_some(key)
        })),
        None => {
            // one allocation even for a filtered iterator (its lower bound is 0)
            let (low, high) = iter.size_hint();
            keys.reserve_exact(high.unwrap_or(low));
            keys.extend(iter.map(|id| pack(score(id), id)));
        }
    }
    top_keys(&mut keys, k);
    keys.truncate(k);
    keys.into_iter().map(unpack_id).collect()
}

/// A key below which fewer than `k` candidates can be skipped, or `None` when
/// pre-filtering does not pay off or would not keep `k` candidates.
fn prefilter_threshold(iter: impl Iterator<Item = u32> + Clone, k: usize, score: &impl Fn(u32) -> f32) -> Option<u64> {
    if k == 0 || iter.size_hint().1.is_some_and(|upper| upper < PREFILTER) {
        return None; // too few candidates to pay for the extra passes
    }
    let n = iter.clone().count();
    if n < PREFILTER || k > n / 4 {
        return None;
    }
    let stride = n / 4096;
    let mut sample: Vec<u64> = iter.clone().step_by(stride).map(|id| pack(score(id), id)).collect();
    // keep ~2x the needed fraction of the sample, so the threshold almost never falls short
    let want = ((2 * k * sample.len()) / n + 8).min(sample.len() - 1);
    sample.select_nth_unstable_by(want, |a, b| b.cmp(a));
    let threshold = sample[want] & !u64::from(u32::MAX); // compare scores only
    let passing = iter.filter(|&id| pack(score(id), id) >= threshold).count();
    (passing >= k).then_some(threshold)
}

/// Moves the `k` largest keys to the front, sorted descending.
fn top_keys(keys: &mut [u64], k: usize) {
    if k == 0 || keys.is_empty() {
        return;
    }
    let k = k.min(keys.len());
    if k < keys.len() {
        keys.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
    }
    keys[..k].sort_unstable_by(|a, b| b.cmp(a));
}

/// The `k` best ids among `0..scores.len()` by `scores` (a dense score array).
pub fn top_k_dense(scores: &[f32], k: usize) -> Vec<u32> {
    top_k(0..scores.len() as u32, k, |i| scores[i as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_matches_float_order() {
        let xs = [f32::NEG_INFINITY, -3.5, -1e-30, 0.0, 1e-30, 2.0, f32::INFINITY];
        for w in xs.windows(2) {
            assert!(score_key(w[0]) < score_key(w[1]), "{w:?}");
        }
        assert_eq!(score_key(-0.0), score_key(0.0));
        assert!(score_key(f32::NAN) < score_key(f32::NEG_INFINITY));
    }

    #[test]
    fn ties_go_to_the_lower_index() {
        let scores = [1.0, 5.0, 5.0, 3.0, 5.0];
        assert_eq!(top_k_dense(&scores, 2), vec![1, 2]);
        assert_eq!(top_k_dense(&scores, 3), vec![1, 2, 4]);
    }

    #[test]
    fn prefiltered_selection_equals_the_full_one() {
        let mut rng = crate::rng::Rng::new(8);
        let n = PREFILTER + 1000;
        let scores: Vec<f32> = (0..n).map(|_| (rng.below(1000) as f32) / 7.0).collect();
        for k in [1, 10, 5000, n / 5] {
            let fast = top_k(0..n as u32, k, |i| scores[i as usize]);
            let mut keys: Vec<u64> = (0..n as u32).map(|i| pack(scores[i as usize], i)).collect();
            keys.sort_unstable_by(|a, b| b.cmp(a));
            let slow: Vec<u32> = keys[..k].iter().map(|k| unpack_id(*k)).collect();
            assert_eq!(fast, slow, "k={k}");
        }
    }

    #[test]
    fn matches_a_full_sort() {
        let mut rng = crate::rng::Rng::new(5);
        let scores: Vec<f32> = (0..1000).map(|_| (rng.below(20) as f32) - 10.0).collect();
        let mut order: Vec<u32> = (0..1000).collect();
        order.sort_by(|&a, &b| {
            scores[b as usize]
                .partial_cmp(&scores[a as usize])
                .unwrap()
                .then(a.cmp(&b))
        });
        for k in [0, 1, 17, 500, 999, 1000, 2000] {
            let got = top_k_dense(&scores, k);
            assert_eq!(got, order[..k.min(1000)].to_vec(), "k={k}");
        }
    }
}
