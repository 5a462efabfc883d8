//! A binary mask over one weight tensor, stored as a bitset (1 bit per weight).
//!
//! The host bitset is the source of truth: topology decisions are taken on it
//! (deterministically, identically on every backend), it is what is saved, and
//! it converts to the formats real sparse kernels need (CSR rows, condensed
//! constant fan-in indices, see [`crate::formats`]). The step hook keeps a device
//! copy next to each weight as an f32 `0/1` tensor: multiplying by it is the
//! fastest masking op on every backend (flex's in-place `mask_fill` is several
//! times slower), at 4 bytes per weight on the device.

use burn::tensor::{Device, Tensor, TensorData};

/// A bit per weight: `true` means the weight is active (may be nonzero).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Mask {
    words: Vec<u64>,
    len: usize,
    ones: usize,
}

impl std::fmt::Debug for Mask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mask({} of {} active)", self.ones, self.len)
    }
}

impl Mask {
    /// All weights inactive.
    pub fn zeros(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(64)],
            len,
            ones: 0,
        }
    }

    /// All weights active.
    pub fn ones(len: usize) -> Self {
        let mut mask = Self {
            words: vec![u64::MAX; len.div_ceil(64)],
            len,
            ones: len,
        };
        mask.clear_tail();
        mask
    }

    /// Active exactly at `indices` (duplicates are counted once).
    pub fn from_indices(len: usize, indices: impl IntoIterator<Item = usize>) -> Self {
        let mut mask = Self::zeros(len);
        for i in indices {
            mask.set(i, true);
        }
        mask
    }

    /// From one bool per weight.
    pub fn from_bools(bools: &[bool]) -> Self {
        Self::from_indices(
            bools.len(),
            bools.iter().enumerate().filter(|(_, b)| **b).map(|(i, _)| i),
        )
    }

    /// Active where `values[i] != 0`.
    pub fn from_nonzeros(values: &[f32]) -> Self {
        Self::from_indices(
            values.len(),
            values.iter().enumerate().filter(|(_, v)| **v != 0.0).map(|(i, _)| i),
        )
    }

    fn clear_tail(&mut self) {
        let rem = self.len % 64;
        if rem != 0
            && let Some(last) = self.words.last_mut()
        {
            *last &= (1u64 << rem) - 1;
        }
    }

    /// Number of weights covered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the mask covers no weight.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of active weights.
    pub fn count_ones(&self) -> usize {
        self.ones
    }

    /// Active fraction (`1.0` for an empty mask).
    pub fn density(&self) -> f64 {
        if self.len == 0 {
            1.0
        } else {
            self.ones as f64 / self.len as f64
        }
    }

    /// Whether weight `i` is active. Panics if `i >= len` (a programming error).
    pub fn get(&self, i: usize) -> bool {
        assert!(i < self.len, "mask index {i} out of range {}", self.len);
        self.words[i / 64] >> (i % 64) & 1 == 1
    }

    /// Sets weight `i` active or inactive.
    pub fn set(&mut self, i: usize, active: bool) {
        assert!(i < self.len, "mask index {i} out of range {}", self.len);
        let (w, b) = (i / 64, 1u64 << (i % 64));
        let was = self.words[w] & b != 0;
        if active && !was {
            self.words[w] |= b;
            self.ones += 1;
        } else if !active && was {
            self.words[w] &= !b;
            self.ones -= 1;
        }
    }

    /// Indices of the active weights, ascending.
    pub fn iter_ones(&self) -> impl Iterator<Item = usize> + Clone + '_ {
        self.words.iter().enumerate().flat_map(|(w, &word)| {
            let mut bits = word;
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let tz = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                Some(w * 64 + tz)
            })
        })
    }

    /// One bool per weight.
    pub fn to_bools(&self) -> Vec<bool> {
        (0..self.len).map(|i| self.get(i)).collect()
    }

    fn zip_with(&self, other: &Self, f: impl Fn(u64, u64) -> u64) -> Self {
        assert_eq!(self.len, other.len, "masks of different lengths");
        let words: Vec<u64> = self.words.iter().zip(&other.words).map(|(a, b)| f(*a, *b)).collect();
        let ones = words.iter().map(|w| w.count_ones() as usize).sum();
        Self {
            words,
            len: self.len,
            ones,
        }
    }

    /// Active in both.
    pub fn and(&self, other: &Self) -> Self {
        self.zip_with(other, |a, b| a & b)
    }

    /// Active in either.
    pub fn or(&self, other: &Self) -> Self {
        self.zip_with(other, |a, b| a | b)
    }

    /// Active in `self` but not in `other`.
    pub fn and_not(&self, other: &Self) -> Self {
        self.zip_with(other, |a, b| a & !b)
    }

    /// Multiplies every value at an inactive position by 0, exactly as the device
    /// multiply by the 0/1 mask does (the sign of the zero follows the value).
    pub fn apply(&self, values: &mut [f32]) {
        assert_eq!(values.len(), self.len, "mask and values differ in length");
        for (i, v) in values.iter_mut().enumerate() {
            if !self.get(i) {
                *v *= 0.0;
            }
        }
    }

    /// Little-endian packed bits, `ceil(len / 8)` bytes (for saving).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes: Vec<u8> = self.words.iter().flat_map(|w| w.to_le_bytes()).collect();
        bytes.truncate(self.len.div_ceil(8));
        bytes
    }

    /// Inverse of [`Mask::to_bytes`]; `None` if the byte count does not fit `len`.
    pub fn from_bytes(len: usize, bytes: &[u8]) -> Option<Self> {
        if bytes.len() != len.div_ceil(8) {
            return None;
        }
        let mut words = vec![0u64; len.div_ceil(64)];
        for (i, b) in bytes.iter().enumerate() {
            words[i / 8] |= u64::from(*b) << (8 * (i % 8));
        }
        let mut mask = Self { words, len, ones: 0 };
        mask.clear_tail();
        mask.ones = mask.words.iter().map(|w| w.count_ones() as usize).sum();
        Some(mask)
    }

    /// The mask as a flat `0.0/1.0` float tensor on `device`.
    pub fn float_tensor(&self, device: &Device) -> Tensor<1> {
        let mut values = vec![0.0f32; self.len];
        for i in self.iter_ones() {
            values[i] = 1.0;
        }
        Tensor::from_data(TensorData::new(values, [self.len]), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_sets() {
        let mut m = Mask::zeros(130);
        m.set(0, true);
        m.set(129, true);
        m.set(129, true);
        m.set(64, true);
        assert_eq!(m.count_ones(), 3);
        m.set(64, false);
        assert_eq!(m.count_ones(), 2);
        assert_eq!(m.iter_ones().collect::<Vec<_>>(), vec![0, 129]);
        assert_eq!(Mask::ones(130).count_ones(), 130);
        assert_eq!(Mask::ones(130).iter_ones().count(), 130);
    }

    #[test]
    fn bytes_round_trip() {
        let m = Mask::from_indices(77, [1, 5, 63, 64, 76]);
        let back = Mask::from_bytes(77, &m.to_bytes()).unwrap();
        assert_eq!(m, back);
        assert!(Mask::from_bytes(77, &[0; 3]).is_none());
    }

    #[test]
    fn set_operations() {
        let a = Mask::from_indices(10, [1, 2, 3]);
        let b = Mask::from_indices(10, [3, 4]);
        assert_eq!(a.and(&b).iter_ones().collect::<Vec<_>>(), vec![3]);
        assert_eq!(a.or(&b).count_ones(), 4);
        assert_eq!(a.and_not(&b).iter_ones().collect::<Vec<_>>(), vec![1, 2]);
    }
}
