//! Output sizes of convolutions and pools, for FLOP accounting.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;

fn pads(padding: &PaddingConfig2d, kernel: [usize; 2]) -> Option<[usize; 4]> {
    match padding {
        PaddingConfig2d::Valid => Some([0; 4]),
        PaddingConfig2d::Explicit(t, l, b, r) => Some([*t, *l, *b, *r]),
        PaddingConfig2d::Same => {
            let _ = kernel;
            None
        }
    }
}

/// Output `[H, W]` of a 2-D window op (conv or pool); 0 along a side the window
/// does not fit in (the input is too small for the op).
pub fn window_out(
    input: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    padding: &PaddingConfig2d,
) -> [usize; 2] {
    match pads(padding, kernel) {
        Some([t, l, b, r]) => {
            let dim = |x: usize, p: usize, k: usize, s: usize, d: usize| {
                let span = d.saturating_mul(k.saturating_sub(1)).saturating_add(1);
                match x.saturating_add(p).checked_sub(span) {
                    Some(rest) => rest / s.max(1) + 1,
                    None => 0,
                }
            };
            [
                dim(input[0], t + b, kernel[0], stride[0], dilation[0]),
                dim(input[1], l + r, kernel[1], stride[1], dilation[1]),
            ]
        }
        None => [input[0].div_ceil(stride[0]), input[1].div_ceil(stride[1])],
    }
}

/// Output `[H, W]` of `conv`.
pub fn conv_out(conv: &Conv2d, input: [usize; 2]) -> [usize; 2] {
    window_out(input, conv.kernel_size, conv.stride, conv.dilation, &conv.padding)
}
