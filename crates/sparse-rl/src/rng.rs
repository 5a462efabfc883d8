//! The seeded, saveable random generator of every environment and of the agent.
//!
//! It wraps `rand_chacha`'s ChaCha8 (a well-kept crate whose stream is fixed by
//! the ChaCha specification, so it never changes with an upgrade) and adds the
//! few draws the environments need. Its whole state is the 32-byte seed, the
//! stream number and the position in the stream ([`RngState`]), so a saved run
//! resumes with exactly the numbers it would have drawn.
//!
//! Gymnasium draws with NumPy's PCG64, so trajectories match Gymnasium's in
//! distribution, not number for number.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

/// A ChaCha8 generator with uniform, integer and Bernoulli draws.
#[derive(Clone, Debug)]
pub struct EnvRng {
    inner: ChaCha8Rng,
}

/// Everything needed to rebuild an [`EnvRng`] at the same position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    /// The ChaCha key.
    pub seed: [u8; 32],
    /// The stream number.
    pub stream: u64,
    /// Position in the stream, in 32-bit words (high and low halves of a `u128`).
    pub word_pos: [u64; 2],
}

impl EnvRng {
    /// A generator from a plain seed.
    pub fn new(seed: u64) -> Self {
        Self {
            inner: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[low, high)`.
    pub fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.next_f64()
    }

    /// Uniform integer in `[0, n)` (Lemire's method, unbiased); 0 when `n == 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// True with probability `p` (always draws one number, as MinAtar does).
    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// The state, for saving.
    pub fn state(&self) -> RngState {
        let pos = self.inner.get_word_pos();
        RngState {
            seed: self.inner.get_seed(),
            stream: self.inner.get_stream(),
            word_pos: [(pos >> 64) as u64, pos as u64],
        }
    }

    /// A generator at a saved state.
    pub fn from_state(state: &RngState) -> Self {
        let mut inner = ChaCha8Rng::from_seed(state.seed);
        inner.set_stream(state.stream);
        inner.set_word_pos((u128::from(state.word_pos[0]) << 64) | u128::from(state.word_pos[1]));
        Self { inner }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restored_state_continues_the_same_stream() {
        let mut a = EnvRng::new(42);
        for _ in 0..13 {
            a.next_f64();
        }
        let saved = a.state();
        let expected: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let mut b = EnvRng::from_state(&saved);
        let got: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(expected, got);
    }

    #[test]
    fn uniform_and_below_stay_in_range_and_are_roughly_uniform() {
        let mut r = EnvRng::new(7);
        let mut counts = [0usize; 4];
        for _ in 0..40_000 {
            let u = r.uniform(-0.05, 0.05);
            assert!((-0.05..0.05).contains(&u));
            counts[r.below(4) as usize] += 1;
        }
        for c in counts {
            assert!((9_400..10_600).contains(&c), "{counts:?}");
        }
    }
}
