//! Column indices stored in the narrowest width that holds them: `u16` when
//! every index is below 65536 (6 bytes per nonzero with an f32 value instead
//! of 8: the batch-1 byte limit at 90% sparsity rises from 5x to 6.67x).

/// Index widths a kernel is generic over.
pub trait Index: Copy + Send + Sync + 'static {
    /// The index as `usize`.
    fn at(self) -> usize;
}

impl Index for u16 {
    #[inline(always)]
    fn at(self) -> usize {
        self as usize
    }
}

impl Index for u32 {
    #[inline(always)]
    fn at(self) -> usize {
        self as usize
    }
}

/// A list of indices, `u16` or `u32`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Indices {
    /// Every index < 65536.
    U16(Vec<u16>),
    /// Wider indices.
    U32(Vec<u32>),
}

impl Indices {
    /// Stores `values` as `u16` when `bound <= 65536`, else as `u32`.
    pub fn narrowest(values: Vec<u32>, bound: usize) -> Self {
        if bound <= 1 << 16 {
            Self::U16(values.into_iter().map(|v| v as u16).collect())
        } else {
            Self::U32(values)
        }
    }

    /// Number of indices.
    pub fn len(&self) -> usize {
        match self {
            Self::U16(v) => v.len(),
            Self::U32(v) => v.len(),
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Index `i`.
    pub fn get(&self, i: usize) -> usize {
        match self {
            Self::U16(v) => v[i] as usize,
            Self::U32(v) => v[i] as usize,
        }
    }

    /// Bytes per index.
    pub fn width(&self) -> usize {
        match self {
            Self::U16(_) => 2,
            Self::U32(_) => 4,
        }
    }

    /// All indices widened to `u32`.
    pub fn to_u32(&self) -> Vec<u32> {
        match self {
            Self::U16(v) => v.iter().map(|&x| x as u32).collect(),
            Self::U32(v) => v.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrowest_width_follows_the_bound() {
        let small = Indices::narrowest(vec![0, 65535], 65536);
        assert_eq!((small.width(), small.get(1)), (2, 65535));
        let wide = Indices::narrowest(vec![0, 65536], 65537);
        assert_eq!((wide.width(), wide.get(1)), (4, 65536));
    }
}
