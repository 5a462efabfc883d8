//! A diverged run: a loss that is not finite (NaN or ±∞). Once a loss is NaN
//! the weights are too, and every later step is NaN, so the run stops at the
//! first non-finite loss with [`Diverged`], writes no checkpoint after it (the
//! last good one stays), and never writes state it could not read back (JSON
//! has no NaN: `serde_json` writes `null`, which does not read back as a number).

/// The run stopped at its first non-finite loss.
#[derive(Debug, thiserror::Error)]
#[error("diverged at step {step}: the {what} is {value}; {kept}. Lower --lr, add --warmup-epochs, or check the data")]
pub struct Diverged {
    /// The step (1-based, counted over the round) whose loss is not finite.
    pub step: u64,
    /// Which loss (training, validation, test).
    pub what: &'static str,
    /// The value (NaN, inf or -inf).
    pub value: f64,
    /// What the run folder keeps (filled in by the runner).
    pub kept: String,
}

/// The first of `named` values that is not finite, as `Err(name)`.
pub fn check_finite<'a>(named: impl IntoIterator<Item = (&'a str, f64)>) -> Result<(), (&'a str, f64)> {
    match named.into_iter().find(|(_, v)| !v.is_finite()) {
        Some(bad) => Err(bad),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_non_finite_value_is_named() {
        assert_eq!(check_finite([("a", 1.0), ("b", -2.5)]), Ok(()));
        let got = check_finite([("a", 1.0), ("b", f64::INFINITY), ("c", f64::NAN)]);
        assert_eq!(got, Err(("b", f64::INFINITY)));
        assert!(matches!(check_finite([("c", f64::NAN)]), Err(("c", v)) if v.is_nan()));
    }
}
