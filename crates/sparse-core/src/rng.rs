//! Counter-based randomness: every random choice is a pure function of
//! `(seed, weight path, step, purpose)`, so it is identical on every device,
//! on every replica and after a resume.

/// A small, fast generator (SplitMix64) seeded from `(seed, path, step, purpose)`.
///
/// SplitMix64 (Steele, Lea & Flood 2014) passes BigCrush and is plenty for
/// choosing mask positions; it is used instead of an external RNG so that the
/// stream never changes with a dependency upgrade.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

/// FNV-1a hash of a string, stable across platforms and versions.
pub fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator from a plain seed.
    pub fn new(seed: u64) -> Self {
        Self { state: mix(seed) }
    }

    /// The generator of a named stream at a counter, for a purpose: a pure
    /// function of its four keys (e.g. `("data", epoch, "shuffle")` for the order
    /// of an epoch's batches).
    pub fn for_stream(seed: u64, stream: &str, counter: u64, purpose: &str) -> Self {
        let key = mix(seed) ^ mix(hash_str(stream).wrapping_add(1)) ^ mix(counter.wrapping_add(2));
        Self::new(key ^ hash_str(purpose))
    }

    /// The generator for one weight (by path), step and purpose (e.g. `"grow"`).
    pub fn for_layer(seed: u64, path: &str, step: u64, purpose: &str) -> Self {
        Self::for_stream(seed, path, step, purpose)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.state)
    }

    /// Uniform in `[0, 1)` with 24 random bits.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `[0, n)` (Lemire's method, unbiased). `n` must be > 0.
    pub fn below(&mut self, n: u64) -> u64 {
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// Skips the next `n` 64-bit draws (the stream is a counter, so this is
    /// one addition): the generator then gives what it would after `n` calls
    /// of [`Rng::next_u64`].
    pub fn skip(&mut self, n: u64) {
        self.state = self.state.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }

    /// Standard normal sample (Box–Muller; two 64-bit draws).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64();
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// `n` uniform scores in `[0, 1)`: ranking them gives a uniform random subset.
    pub fn scores(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next_f32()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_lands_where_the_draws_would() {
        let mut a = Rng::for_layer(3, "fc.weight", 7, "noise");
        let mut b = a.clone();
        for _ in 0..13 {
            a.next_u64();
        }
        b.skip(13);
        assert_eq!(a.next_u64(), b.next_u64());
        let (mut c, mut d) = (Rng::new(5), Rng::new(5));
        for _ in 0..4 {
            c.normal();
        }
        d.skip(8);
        assert_eq!(c.normal().to_bits(), d.normal().to_bits());
    }

    #[test]
    fn same_key_same_stream_and_different_keys_differ() {
        let a: Vec<u64> = {
            let mut r = Rng::for_layer(7, "fc1.weight", 100, "grow");
            (0..4).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::for_layer(7, "fc1.weight", 100, "grow");
            (0..4).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        for other in [
            Rng::for_layer(8, "fc1.weight", 100, "grow"),
            Rng::for_layer(7, "fc2.weight", 100, "grow"),
            Rng::for_layer(7, "fc1.weight", 101, "grow"),
            Rng::for_layer(7, "fc1.weight", 100, "init"),
        ] {
            let mut o = other;
            assert_ne!(a[0], o.next_u64());
        }
    }

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut r = Rng::new(3);
        let mut counts = [0usize; 5];
        for _ in 0..50_000 {
            counts[r.below(5) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn floats_in_unit_interval_and_normal_has_unit_variance() {
        let mut r = Rng::new(11);
        let n = 100_000;
        let mut sum = 0.0;
        let mut sq = 0.0;
        for _ in 0..n {
            let f = r.next_f32();
            assert!((0.0..1.0).contains(&f));
            let z = r.normal();
            sum += z;
            sq += z * z;
        }
        let mean = sum / n as f64;
        let var = sq / n as f64 - mean * mean;
        assert!(mean.abs() < 0.02, "{mean}");
        assert!((var - 1.0).abs() < 0.03, "{var}");
    }
}
