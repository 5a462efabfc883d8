//! The `auto` format choice: from the mask's pattern and the density
//! crossovers measured by `benches/kernels.rs` (see `docs/sparse-execution.md`).

use sparse_core::{Mask, SparseLayer};

use crate::formats::{FormatKind, condensed, nm};
use crate::plan::OpKind;

/// Linear layers at or above this density stay dense: the batch-1 crossover
/// measured on 1024×1024 (CSR tied dense at 80% sparsity; at batch 64 it
/// still won at 70% and lost at 60%).
pub const LINEAR_DENSE_FROM: f64 = 0.2;
/// Linear layers of at most this many weights stay dense at any density
/// (unless whole neurons are pruned: those still become a smaller dense
/// layer): a sparse call's fixed cost outweighs what it saves. Measured
/// (`cargo bench -p sparse-kernels --bench kernels -- --quick small-`, 90%
/// sparsity, 2026-12-01): 128×128 ran 0.40x and 256×256 0.84x of dense at
/// batch 64 (both ahead at batch 1 by a few microseconds), 512×512 won at both
/// (2.1x, 1.6x). The char transformer's 128-wide projections fall below it.
pub const LINEAR_DENSE_UP_TO: usize = 65_536;
/// k×k convolutions at or above this density stay dense. 3×3, 128
/// channels, 28×28 (`kernels -- --quick crossover-conv`): sparse 1.8x at
/// density 0.2 and tied at 0.3 on the AMD VM before the caller-first loop
/// (`cpu/pool.rs`); on the Intel VM after it, 2.0x at 0.5 and 1.7x at 0.6,
/// where flex's dense convolution waits for its sleeping workers.
pub const CONV_DENSE_FROM: f64 = 0.5;
/// 1×1 convolutions at or above this density stay dense. Measured at
/// ResNet-50's 1×1 shapes (256→64 at 56², 1024→256 at 14², 512→2048 at 7²;
/// `kernels -- --quick crossover-conv-1x1`): on the AMD VM before the
/// caller-first loop, sparse 1.5–2.5x faster at density 0.2, 1.0–2.2x at
/// 0.3, 0.94–1.5x at 0.4; on the Intel VM after it, 1.7–1.9x at 0.5 and
/// 1.4–1.5x at 0.6. (It was 0.1 while the 1×1 kernel only tied flex's GEMM
/// at 90% sparsity, then 0.3.)
pub const POINTWISE_DENSE_FROM: f64 = 0.5;
/// k×k convolutions (and grouped 1×1 ones) with at most this many input
/// channels per group (depthwise ones, and stems reading an RGB image) run the direct sparse
/// kernel over their active weights at any density, all of them included:
/// with so few channels per output, flex's im2col and GEMM (or its
/// per-plane loop) cost more than the direct kernel's contiguous strips.
/// Measured on MobileNetV1 and ResNet-50 at batch 1 (`sparse_e2e`, see
/// `docs/sparse-execution.md`).
pub const DIRECT_UP_TO_CHANNELS: usize = 4;

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
/// k×k convolutions with few input channels per group (depthwise, RGB
/// stems) run the direct kernel at any density ([`DIRECT_UP_TO_CHANNELS`]);
/// other layers at or above the crossover density stay
/// dense (2:4 at 50% therefore stays dense: it measured slower than dense);
/// whole-neuron masks become smaller dense layers (not in grouped
/// convolutions, which the channel format does not support); constant fan-in becomes
/// condensed, sparser N:M masks N:M; everything else CSR.
pub fn choose(layer: &SparseLayer, op: OpKind, mask: &Mask) -> Choice {
    let density = mask.density();
    let pick = |format, reason: String| Choice { format, reason };
    if let OpKind::Conv { cin_g, kernel, groups } = op
        && cin_g <= DIRECT_UP_TO_CHANNELS
        && (kernel != [1, 1] || groups > 1)
    {
        return pick(
            FormatKind::Csr,
            format!(
                "{groups} groups of {cin_g} input channels: the direct kernel over the active weights (density {density:.3})"
            ),
        );
    }
    let crossover = match op {
        OpKind::Linear => LINEAR_DENSE_FROM,
        OpKind::Conv { kernel: [1, 1], .. } => POINTWISE_DENSE_FROM,
        OpKind::Conv { .. } => CONV_DENSE_FROM,
    };
    let neurons_whole = (0..layer.neurons()).all(|o| {
        let on = layer.neuron_indices(o).filter(|&f| mask.get(f)).count();
        on == 0 || on == layer.fan_in()
    });
    let grouped = matches!(op, OpKind::Conv { groups, .. } if groups > 1);
    if neurons_whole && density < 1.0 && !grouped {
        return pick(
            FormatKind::Channel,
            format!("whole neurons pruned (density {density:.3})"),
        );
    }
    if op == OpKind::Linear && layer.numel() <= LINEAR_DENSE_UP_TO {
        return pick(
            FormatKind::Dense,
            format!("{} weights <= {LINEAR_DENSE_UP_TO}: too small to gain", layer.numel()),
        );
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
    if let Ok((n, m)) = nm::detect(layer, mask)
        && (n as f64 / m as f64 - density).abs() < 1e-9
        && op == OpKind::Linear
    {
        return pick(FormatKind::Nm, format!("{n}:{m} pattern"));
    }
    pick(FormatKind::Csr, format!("unstructured at density {density:.3}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_tenth(n: usize) -> Mask {
        Mask::from_bools(&(0..n).map(|i| i % 10 == 0).collect::<Vec<_>>())
    }

    /// 1×1 convolutions run sparse below the pointwise crossover and dense from it.
    #[test]
    fn pointwise_convs_switch_at_their_crossover() {
        let layer = SparseLayer::conv("c.weight", &[64, 256, 1, 1]);
        let op = OpKind::Conv {
            cin_g: 256,
            kernel: [1, 1],
            groups: 1,
        };
        let n = layer.numel();
        let at = |density: f64| {
            // a varying count per neuron: not constant fan-in, not whole neurons
            let mask = Mask::from_bools(
                &(0..n)
                    .map(|i| (i * 7919 % 1000) < (density * 1000.0) as usize)
                    .collect::<Vec<_>>(),
            );
            choose(&layer, op, &mask).format
        };
        assert_eq!(at(0.2), FormatKind::Csr);
        assert_eq!(at(POINTWISE_DENSE_FROM + 0.05), FormatKind::Dense);
    }

    /// Small linear layers stay dense whatever their density; from just above
    /// the size limit the density decides.
    #[test]
    fn small_linear_layers_stay_dense() {
        for (d, want) in [
            (128, FormatKind::Dense),
            (256, FormatKind::Dense),
            (512, FormatKind::Csr),
        ] {
            let layer = SparseLayer::linear("fc.weight", d, d);
            let got = choose(&layer, OpKind::Linear, &every_tenth(d * d)).format;
            assert_eq!(got, want, "{d}x{d}");
        }
        let layer = SparseLayer::linear("fc.weight", 257, 256);
        assert_eq!(
            choose(&layer, OpKind::Linear, &every_tenth(257 * 256)).format,
            FormatKind::Csr
        );
    }

    /// A grouped convolution with whole output channels pruned is never sent
    /// to the channel format, which needs `groups = 1` (found by the conv
    /// property test: `auto` picked channel and the build failed).
    #[test]
    fn grouped_conv_with_whole_channels_pruned_is_not_channel() {
        let layer = SparseLayer::conv("c.weight", &[4, 2, 1, 1]);
        let mask = Mask::from_bools(&[true, true, false, false, false, false, false, false]);
        let grouped = OpKind::Conv {
            cin_g: 2,
            kernel: [1, 1],
            groups: 2,
        };
        assert_ne!(choose(&layer, grouped, &mask).format, FormatKind::Channel);
        let plain = OpKind::Conv {
            cin_g: 2,
            kernel: [1, 1],
            groups: 1,
        };
        assert_eq!(choose(&layer, plain, &mask).format, FormatKind::Channel);
    }
}
