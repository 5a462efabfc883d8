//! Host sparse formats built from a [`SparseLayer`], its [`Mask`] and dense
//! weights: CSR ([`csr`]), condensed constant fan-in in SELL-16 layout
//! ([`condensed`]), N:M compressed ([`nm`]), block sparse rows ([`bsr`]) and
//! whole-neuron pruning as a smaller dense layer ([`channel`]). Each builder
//! checks that the mask has the structure its format needs and returns a typed
//! error naming the layer and the fix otherwise. [`to_dense`] is the way back.
//!
//! Convolutions run one direct-convolution kernel over compressed rows, so a
//! conv layer in the condensed, N:M or BSR format is checked against that
//! pattern and then stored as CSR (see `docs/sparse-execution.md`).

pub mod bsr;
pub mod channel;
pub mod condensed;
pub mod csr;
pub mod nm;

use sparse_core::{LayerKind, Mask, SparseLayer};

use crate::error::{KernelError, Result};
use crate::plan::{OpKind, SparsePlan};

/// A sparse format of one layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FormatKind {
    /// Pick from the pattern and the measured density crossovers.
    Auto,
    /// Compressed sparse rows (any mask).
    Csr,
    /// Constant fan-in, condensed (SRigL), SELL-16 interleaved.
    Condensed,
    /// N:M compressed.
    Nm,
    /// Block sparse rows.
    Bsr,
    /// Whole neurons removed: a smaller dense layer.
    Channel,
    /// Keep the layer dense (masked weights).
    Dense,
}

impl FormatKind {
    /// Name as written in configs and metadata.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Csr => "csr",
            Self::Condensed => "condensed",
            Self::Nm => "nm",
            Self::Bsr => "bsr",
            Self::Channel => "channel",
            Self::Dense => "dense",
        }
    }
}

impl std::str::FromStr for FormatKind {
    type Err = KernelError;
    fn from_str(s: &str) -> Result<Self> {
        [
            Self::Auto,
            Self::Csr,
            Self::Condensed,
            Self::Nm,
            Self::Bsr,
            Self::Channel,
            Self::Dense,
        ]
        .into_iter()
        .find(|f| f.name().eq_ignore_ascii_case(s.trim()))
        .ok_or_else(|| KernelError::UnknownFormat(s.to_string()))
    }
}

/// A built sparse operator: its host plan and its values (in the plan's storage order).
#[derive(Clone, Debug)]
pub struct Built {
    /// Indices and geometry.
    pub plan: SparsePlan,
    /// Values, `plan.n_values` of them.
    pub values: Vec<f32>,
}

/// Checks that `mask` and `weights` fit `layer` and that `op` agrees with it.
pub(crate) fn check_inputs(layer: &SparseLayer, op: OpKind, mask: &Mask, weights: &[f32]) -> Result<()> {
    if mask.len() != layer.numel() || weights.len() != layer.numel() {
        return Err(KernelError::shape(
            &layer.path,
            format!(
                "mask has {} entries and weights {}, the layer {:?} has {}; pass the mask saved for this layer",
                mask.len(),
                weights.len(),
                layer.shape,
                layer.numel()
            ),
        ));
    }
    check_op(layer, op)
}

/// Checks that the operator `op` agrees with `layer`'s kind and shape.
pub(crate) fn check_op(layer: &SparseLayer, op: OpKind) -> Result<()> {
    let fits = match (layer.kind, op) {
        (LayerKind::Linear, OpKind::Linear) => true,
        (LayerKind::Conv, OpKind::Conv { cin_g, kernel, groups }) => {
            layer.shape.len() == 4
                && layer.shape[1] == cin_g
                && layer.shape[2..] == kernel
                && groups > 0
                && layer.shape[0].is_multiple_of(groups)
        }
        _ => false,
    };
    if !fits {
        return Err(KernelError::shape(
            &layer.path,
            format!("the weight shape {:?} does not match the operator {op:?}", layer.shape),
        ));
    }
    Ok(())
}

/// Per row, the active `(column, value)` pairs.
pub(crate) type ActiveRows = Vec<Vec<(u32, f32)>>;

/// The active `(column, value)` pairs of every row, columns ascending.
pub(crate) fn active_rows(layer: &SparseLayer, mask: &Mask, weights: &[f32]) -> ActiveRows {
    (0..layer.neurons())
        .map(|o| {
            (0..layer.fan_in())
                .filter_map(|j| {
                    let f = layer.flat(o, j);
                    mask.get(f).then(|| (j as u32, weights[f]))
                })
                .collect()
        })
        .collect()
}

/// The masked dense weights of `built`, in the layer's Burn layout.
pub fn to_dense(layer: &SparseLayer, built: &Built) -> Vec<f32> {
    let rows = built.plan.to_dense_rows(&built.values);
    let cols = layer.fan_in();
    let mut out = vec![0.0f32; layer.numel()];
    for o in 0..layer.neurons() {
        for j in 0..cols {
            out[layer.flat(o, j)] = rows[o * cols + j];
        }
    }
    out
}

/// Builds `kind` (not `Auto`, `Channel` or `Dense`) for `layer`; `block` is the
/// BSR block (`None`: the largest that the mask holds whole, see [`bsr::detect`]).
pub fn build(
    layer: &SparseLayer,
    op: OpKind,
    mask: &Mask,
    weights: &[f32],
    kind: FormatKind,
    block: Option<[usize; 2]>,
) -> Result<Built> {
    check_inputs(layer, op, mask, weights)?;
    let conv = matches!(op, OpKind::Conv { .. });
    match kind {
        FormatKind::Csr => Ok(csr::build(layer, op, mask, weights)),
        FormatKind::Condensed => {
            let sell = condensed::build(layer, op, mask, weights)?;
            Ok(if conv {
                csr::build(layer, op, mask, weights)
            } else {
                sell
            })
        }
        FormatKind::Nm => {
            let (n, m) = nm::detect(layer, mask)?;
            let built = nm::build(layer, op, mask, weights, n, m)?;
            Ok(if conv {
                csr::build(layer, op, mask, weights)
            } else {
                built
            })
        }
        FormatKind::Bsr => {
            let block = block.unwrap_or_else(|| bsr::detect(layer, mask));
            let built = bsr::build(layer, op, mask, weights, block)?;
            Ok(if conv {
                csr::build(layer, op, mask, weights)
            } else {
                built
            })
        }
        other => Err(KernelError::InvalidConfig(format!(
            "`{}`: format `{}` has no sparse operator; use csr, condensed, nm or bsr",
            layer.path,
            other.name()
        ))),
    }
}
