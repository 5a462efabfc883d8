//! The host side of a sparse operator: its geometry and index structures.
//!
//! A sparse weight is a `rows × cols` matrix `W` (rows = output neurons, cols =
//! fan-in in the channel-last order of [`sparse_core::SparseLayer::flat`]). Its
//! nonzero *values* live in a device tensor (so they can train); everything
//! else (indices, the layout the values are stored in, lazily built views for
//! other kernels) lives here, shared behind an [`Arc`] and passed to the
//! backend-extension ops as an ordinary argument. The flex kernels read these
//! host arrays directly (flex runs on the host); the CubeCL kernels upload a
//! generic row list once per device and cache it; the primitive fallback
//! scatters the values into a dense matrix through [`PlanData::dense_positions`].

use std::sync::{Arc, OnceLock};

use crate::indices::Indices;

/// The storage layout of the values tensor, and the index structure that goes with it.
#[derive(Clone, Debug, PartialEq)]
pub enum Storage {
    /// Values in row order; the index is [`PlanData::csr`].
    Csr,
    /// SELL-16: 16 rows interleaved, every row with the same `k` entries.
    Sell(Sell),
    /// Block sparse rows.
    Bsr(Bsr),
}

/// SELL-16 storage of a constant fan-in (or N:M) matrix: kept rows are taken
/// 16 at a time; values are `[group][j][16]` so one vector holds entry `j` of
/// 16 rows and constant fan-in needs no padding inside a group.
#[derive(Clone, Debug, PartialEq)]
pub struct Sell {
    /// The kept rows (neurons), ascending; dropped rows output only their bias.
    pub kept: Vec<u32>,
    /// Entries per row.
    pub k: usize,
    /// Column of each entry, laid out like the values.
    pub idx: SellIndex,
}

/// Column indices of SELL storage.
#[derive(Clone, Debug, PartialEq)]
pub enum SellIndex {
    /// Absolute fan-in positions.
    Abs(Indices),
    /// N:M: entry `j` lies in group `j / n`; the byte is its offset inside that group of `m`.
    Nm {
        /// Kept per group.
        n: usize,
        /// Group size.
        m: usize,
        /// In-group offsets.
        idx: Vec<u8>,
    },
}

impl Sell {
    /// Rows per interleaved group.
    pub const LANES: usize = 16;

    /// Number of 16-row groups.
    pub fn groups(&self) -> usize {
        self.kept.len().div_ceil(Self::LANES)
    }

    /// Column of the entry stored at flat position `p`.
    pub fn col(&self, p: usize) -> usize {
        match &self.idx {
            SellIndex::Abs(ix) => ix.get(p),
            SellIndex::Nm { n, m, idx } => {
                let j = (p / Self::LANES) % self.k;
                (j / n) * m + idx[p] as usize
            }
        }
    }
}

/// Block sparse rows: `rows/br` block rows, each a list of `br × bc` blocks.
#[derive(Clone, Debug, PartialEq)]
pub struct Bsr {
    /// Block height (rows).
    pub br: usize,
    /// Block width (columns).
    pub bc: usize,
    /// `block_row_ptr[i]..block_row_ptr[i+1]` are block row `i`'s blocks.
    pub block_row_ptr: Vec<u32>,
    /// Block column of each block.
    pub block_col: Vec<u32>,
}

/// Compressed rows over the values tensor: entry `e` of row `r` is at
/// `row_ptr[r] + e`, its column `col[..]`, its value `values[perm[..]]`
/// (identity when `perm` is `None`).
#[derive(Clone, Debug, PartialEq)]
pub struct CsrView {
    /// Row starts, `rows + 1` entries.
    pub row_ptr: Vec<u32>,
    /// Column of each entry.
    pub col: Indices,
    /// Position in the values tensor of each entry (`None`: the identity).
    pub perm: Option<Vec<u32>>,
}

impl CsrView {
    /// Value position of entry `e`.
    #[inline]
    pub fn value_of(&self, e: usize) -> usize {
        self.perm.as_ref().map_or(e, |p| p[e] as usize)
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.col.len()
    }
}

/// Columns of the matrix in compressed form (for `dX = dY·W` in gather form).
#[derive(Clone, Debug, PartialEq)]
pub struct CscView {
    /// Column starts, `cols + 1` entries.
    pub col_ptr: Vec<u32>,
    /// Row of each entry.
    pub row: Vec<u32>,
    /// Position in the values tensor of each entry.
    pub value: Vec<u32>,
}

/// What the matrix multiplies: a linear layer's input or a convolution's patches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OpKind {
    /// `y = W·x`, fan-in = input features.
    Linear,
    /// Convolution, fan-in `j = position · cin_g + channel` (channel-last).
    Conv {
        /// Input channels per group.
        cin_g: usize,
        /// Kernel height and width.
        kernel: [usize; 2],
        /// Groups.
        groups: usize,
    },
}

/// Per-entry convolution indices (in CSR entry order): absolute input
/// channel (group offset folded in) and kernel position `ky·kw + kx`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvIndex {
    /// Absolute input channel of each entry.
    pub chan: Vec<u32>,
    /// Kernel position of each entry.
    pub kpos: Vec<u16>,
}

/// The host side of one sparse operator.
#[derive(Debug)]
pub struct PlanData {
    /// Output neurons.
    pub rows: usize,
    /// Fan-in.
    pub cols: usize,
    /// Length of the values tensor (nonzeros plus any padding).
    pub n_values: usize,
    /// Linear or conv.
    pub op: OpKind,
    /// Layout of the values.
    pub storage: Storage,
    /// Value positions that hold padding (always zero, never trained).
    pub pad: Vec<u32>,
    csr: OnceLock<CsrView>,
    csc: OnceLock<CscView>,
    conv: OnceLock<ConvIndex>,
    dense_pos: OnceLock<Vec<i32>>,
    nm4: OnceLock<Vec<u32>>,
    /// The plan of the transposed convolution (the input gradient of a
    /// one-group convolution as a forward convolution), built on first use.
    pub(crate) conv_t: OnceLock<SparsePlan>,
    /// The convolution kernel's offsets and chunks for the last input shape seen.
    pub(crate) conv_prep: std::sync::Mutex<Option<Arc<crate::cpu::conv::ConvPrep>>>,
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    pub(crate) cube_cache: std::sync::Mutex<crate::backends::cube::CubeCache>,
}

/// A shared, cheaply cloned [`PlanData`].
#[derive(Clone)]
pub struct SparsePlan(pub Arc<PlanData>);

impl std::fmt::Debug for SparsePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SparsePlan({}x{}, {} values, {:?})",
            self.rows,
            self.cols,
            self.n_values,
            self.storage_name()
        )
    }
}

impl std::ops::Deref for SparsePlan {
    type Target = PlanData;
    fn deref(&self) -> &PlanData {
        &self.0
    }
}

impl SparsePlan {
    /// A plan over `storage`; `csr` must be given for [`Storage::Csr`].
    ///
    /// Crate-private: the fast kernels index the input by the stored column
    /// indices without bounds checks, so plans come only from the format
    /// builders ([`crate::formats`]) and the checked store loader.
    pub(crate) fn new(
        rows: usize,
        cols: usize,
        n_values: usize,
        op: OpKind,
        storage: Storage,
        csr: Option<CsrView>,
        pad: Vec<u32>,
    ) -> Self {
        let cell = OnceLock::new();
        if let Some(c) = csr {
            let _ = cell.set(c);
        }
        Self(Arc::new(PlanData {
            rows,
            cols,
            n_values,
            op,
            storage,
            pad,
            csr: cell,
            csc: OnceLock::new(),
            conv_t: OnceLock::new(),
            conv: OnceLock::new(),
            dense_pos: OnceLock::new(),
            nm4: OnceLock::new(),
            conv_prep: std::sync::Mutex::new(None),
            #[cfg(any(feature = "wgpu", feature = "cuda"))]
            cube_cache: std::sync::Mutex::new(Default::default()),
        }))
    }
}

impl PlanData {
    /// Name of the storage layout.
    pub fn storage_name(&self) -> &'static str {
        match self.storage {
            Storage::Csr => "csr",
            Storage::Sell(Sell {
                idx: SellIndex::Nm { .. },
                ..
            }) => "nm",
            Storage::Sell(_) => "condensed",
            Storage::Bsr(_) => "bsr",
        }
    }

    /// The compressed-row view (built once on first use for SELL and BSR storage).
    pub fn csr(&self) -> &CsrView {
        self.csr.get_or_init(|| self.build_csr())
    }

    fn build_csr(&self) -> CsrView {
        let pad: std::collections::HashSet<u32> = self.pad.iter().copied().collect();
        let mut per_row: Vec<Vec<(u32, u32)>> = vec![Vec::new(); self.rows];
        match &self.storage {
            Storage::Csr => unreachable!("CSR storage carries its view"),
            Storage::Sell(s) => {
                for (i, &row) in s.kept.iter().enumerate() {
                    let (g, l) = (i / Sell::LANES, i % Sell::LANES);
                    for j in 0..s.k {
                        let p = (g * s.k + j) * Sell::LANES + l;
                        if !pad.contains(&(p as u32)) {
                            per_row[row as usize].push((s.col(p) as u32, p as u32));
                        }
                    }
                }
            }
            Storage::Bsr(b) => {
                for brow in 0..b.block_row_ptr.len() - 1 {
                    for blk in b.block_row_ptr[brow] as usize..b.block_row_ptr[brow + 1] as usize {
                        for r in 0..b.br {
                            for c in 0..b.bc {
                                let col = b.block_col[blk] as usize * b.bc + c;
                                let p = (blk * b.br + r) * b.bc + c;
                                per_row[brow * b.br + r].push((col as u32, p as u32));
                            }
                        }
                    }
                }
            }
        }
        let mut row_ptr = vec![0u32];
        let (mut col, mut perm) = (Vec::new(), Vec::new());
        for mut entries in per_row {
            entries.sort_unstable();
            for (c, p) in entries {
                col.push(c);
                perm.push(p);
            }
            row_ptr.push(col.len() as u32);
        }
        CsrView {
            row_ptr,
            col: Indices::narrowest(col, self.cols),
            perm: Some(perm),
        }
    }

    /// The compressed-column view (for the transposed product).
    pub fn csc(&self) -> &CscView {
        self.csc.get_or_init(|| {
            let csr = self.csr();
            let mut counts = vec![0u32; self.cols + 1];
            for e in 0..csr.nnz() {
                counts[csr.col.get(e) + 1] += 1;
            }
            for c in 0..self.cols {
                counts[c + 1] += counts[c];
            }
            let mut next = counts.clone();
            let (mut row, mut value) = (vec![0u32; csr.nnz()], vec![0u32; csr.nnz()]);
            for r in 0..self.rows {
                for e in csr.row_ptr[r] as usize..csr.row_ptr[r + 1] as usize {
                    let c = csr.col.get(e);
                    let slot = next[c] as usize;
                    next[c] += 1;
                    row[slot] = r as u32;
                    value[slot] = csr.value_of(e) as u32;
                }
            }
            CscView {
                col_ptr: counts,
                row,
                value,
            }
        })
    }

    /// N:4 SELL storage only: the in-group offsets packed two bits per lane,
    /// one word per 16-lane entry (the x86 kernel's view, built on first use).
    #[cfg(target_arch = "x86_64")]
    pub fn nm4_packed(&self) -> Option<&[u32]> {
        match &self.storage {
            Storage::Sell(Sell {
                idx: SellIndex::Nm { m: 4, idx, .. },
                ..
            }) => Some(self.nm4.get_or_init(|| crate::cpu::avx2::pack_n4(idx))),
            _ => None,
        }
    }

    /// Per-entry channel and kernel position (conv plans only).
    pub fn conv_index(&self) -> Option<&ConvIndex> {
        let OpKind::Conv { cin_g, groups, .. } = self.op else {
            return None;
        };
        Some(self.conv.get_or_init(|| {
            let csr = self.csr();
            let per_group = (self.rows / groups).max(1);
            let (mut chan, mut kpos) = (Vec::with_capacity(csr.nnz()), Vec::with_capacity(csr.nnz()));
            for r in 0..self.rows {
                let g = r / per_group;
                for e in csr.row_ptr[r] as usize..csr.row_ptr[r + 1] as usize {
                    let j = csr.col.get(e);
                    chan.push((g * cin_g + j % cin_g) as u32);
                    kpos.push((j / cin_g) as u16);
                }
            }
            ConvIndex { chan, kpos }
        }))
    }

    /// For every value, its position `row · cols + col` in the dense matrix;
    /// padding maps to `rows · cols` (one slot past the end).
    ///
    /// # Panics
    /// For a matrix of 2³¹ or more entries, whose positions (and the padding's
    /// one past the end) an `i32` cannot hold (only the densifying fallback and the Cube SDDMM use them; flex's
    /// kernels never do), rather than wrapping them into wrong positions.
    pub fn dense_positions(&self) -> &[i32] {
        self.dense_pos.get_or_init(|| {
            let slots = self.rows * self.cols;
            assert!(
                i32::try_from(slots).is_ok(),
                "a {}x{} sparse layer has {slots} dense positions, more than an i32 index holds: \
                 the densifying fallback and the Cube SDDMM cannot address it; train it on flex, \
                 whose sparse kernels never index the dense matrix",
                self.rows,
                self.cols
            );
            let csr = self.csr();
            let mut pos = vec![(self.rows * self.cols) as i32; self.n_values];
            for r in 0..self.rows {
                for e in csr.row_ptr[r] as usize..csr.row_ptr[r + 1] as usize {
                    pos[csr.value_of(e)] = (r * self.cols + csr.col.get(e)) as i32;
                }
            }
            pos
        })
    }

    /// The dense `[rows, cols]` matrix of `values` (host; for tests and export).
    pub fn to_dense_rows(&self, values: &[f32]) -> Vec<f32> {
        let mut dense = vec![0.0f32; self.rows * self.cols + 1];
        for (v, &p) in values.iter().zip(self.dense_positions()) {
            dense[p as usize] += *v;
        }
        dense.truncate(self.rows * self.cols);
        dense
    }

    /// Bytes of the index structures the fast kernels read (for reports).
    pub fn index_bytes(&self) -> usize {
        match &self.storage {
            Storage::Csr => {
                let c = self.csr();
                c.row_ptr.len() * 4 + c.col.len() * c.col.width()
            }
            Storage::Sell(s) => {
                s.kept.len() * 4
                    + match &s.idx {
                        SellIndex::Abs(i) => i.len() * i.width(),
                        SellIndex::Nm { idx, .. } => idx.len(),
                    }
            }
            Storage::Bsr(b) => (b.block_row_ptr.len() + b.block_col.len()) * 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indices::Indices;

    /// A CSR plan of `rows × cols` with one value, at the last column of the last row.
    fn one_value(rows: usize, cols: usize) -> SparsePlan {
        let mut row_ptr = vec![0u32; rows + 1];
        row_ptr[rows] = 1;
        let csr = CsrView {
            row_ptr,
            col: Indices::narrowest(vec![(cols - 1) as u32], cols),
            perm: None,
        };
        SparsePlan::new(rows, cols, 1, OpKind::Linear, Storage::Csr, Some(csr), Vec::new())
    }

    #[test]
    fn dense_positions_reach_the_last_i32_and_refuse_beyond_it() {
        // 46 340² < 2³¹ − 1: the last entry's position is exact
        let fits = one_value(46_340, 46_340);
        assert_eq!(fits.dense_positions(), [46_340 * 46_340 - 1]);
        // 65 536 × 32 768 = 2³¹ entries: refused by name, never wrapped
        let huge = one_value(65_536, 32_768);
        let call = std::panic::AssertUnwindSafe(|| huge.dense_positions().to_vec());
        let panic = std::panic::catch_unwind(call).unwrap_err();
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("65536x32768") && message.contains("flex"), "{message}");
    }
}
