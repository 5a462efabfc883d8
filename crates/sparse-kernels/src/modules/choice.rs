//! The `auto` format choice: from the mask's pattern and the density
//! crossovers measured by `benches/kernels.rs` (see `docs/sparse-execution.md`).

use sparse_core::{Mask, SparseLayer};

use crate::formats::{FormatKind, condensed, nm};
use crate::plan::OpKind;

/// Linear layers above this density stay dense (measured crossover).
pub const LINEAR_DENSE_FROM: f64 = 0.35;
/// Convolutions above this density stay dense (measured crossover).
pub const CONV_DENSE_FROM: f64 = 0.3;
/// N:M linear layers up to this density run sparse (2:4 measured faster than dense).
pub const NM_SPARSE_UP_TO: f64 = 0.5;

/// The format `auto` resolves to, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    /// The format.
    pub format: FormatKind,
    /// A short reason for logs.
    pub reason: String,
}

/// Picks a format for `layer` under `mask`.
///
/// Depthwise convolutions and layers denser than the crossover stay dense;
/// whole-neuron masks become smaller dense layers; constant fan-in becomes
/// condensed, N:M masks N:M; everything else CSR.
pub fn choose(layer: &SparseLayer, op: OpKind, mask: &Mask) -> Choice {
    let density = mask.density();
    let pick = |format, reason: String| Choice { format, reason };
    if let OpKind::Conv { cin_g: 1, groups, .. } = op
        && groups > 1
    {
        return pick(FormatKind::Dense, "depthwise convolutions stay dense".into());
    }
    let crossover = match op {
        OpKind::Linear => LINEAR_DENSE_FROM,
        OpKind::Conv { .. } => CONV_DENSE_FROM,
    };
    let neurons_whole = (0..layer.neurons()).all(|o| {
        let on = layer.neuron_indices(o).filter(|&f| mask.get(f)).count();
        on == 0 || on == layer.fan_in()
    });
    if neurons_whole && density < 1.0 {
        return pick(
            FormatKind::Channel,
            format!("whole neurons pruned (density {density:.3})"),
        );
    }
    if let Ok((n, m)) = nm::detect(layer, mask)
        && (n as f64 / m as f64 - density).abs() < 1e-9
        && density <= NM_SPARSE_UP_TO
        && op == OpKind::Linear
    {
        return pick(FormatKind::Nm, format!("{n}:{m} pattern"));
    }
    if density >= crossover {
        return pick(
            FormatKind::Dense,
            format!("density {density:.3} >= crossover {crossover}"),
        );
    }
    let empty = vec![0.0f32; layer.numel()];
    if condensed::rows_with_constant_fan_in(layer, mask, &empty).is_ok() {
        return pick(
            FormatKind::Condensed,
            format!("constant fan-in at density {density:.3}"),
        );
    }
    pick(FormatKind::Csr, format!("unstructured at density {density:.3}"))
}
