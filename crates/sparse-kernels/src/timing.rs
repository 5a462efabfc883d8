//! Quartiles of repeated timings, as every benchmark here reports them (sparse
//! and dense measured alternately in one run, then summarised the same way).

/// The 25th, 50th and 75th percentiles of `v` (nearest rank on the sorted
/// samples; NaN for an empty `v`).
pub fn quartiles(mut v: Vec<f64>) -> [f64; 3] {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| {
        v.get((v.len().saturating_sub(1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    [q(0.25), q(0.5), q(0.75)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartiles_are_the_nearest_ranks_of_the_sorted_samples() {
        // sorted 1..=9: ranks (9 − 1)·p = 2, 4, 6 → 3, 5, 7
        let v = vec![9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0, 5.0];
        assert_eq!(quartiles(v), [3.0, 5.0, 7.0]);
        assert!(quartiles(Vec::new()).iter().all(|q| q.is_nan()));
    }
}
