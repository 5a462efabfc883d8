//! Output sizes of convolutions and pools, for FLOP accounting, and the
//! largest input whose counts sparseburn can take.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;

use crate::error::ModelError;

/// Most values per input image (`C·H·W`): 2^32, e.g. 3×37 837×37 837.
pub const MAX_INPUT_VALUES: u64 = 1 << 32;

/// Most classes: 2^24.
pub const MAX_CLASSES: usize = 1 << 24;

/// Checks an input `[C, H, W]` and a class count before a model is built for
/// them: every side and the class count at least 1, `C·H·W` (computed without
/// overflow) at most [`MAX_INPUT_VALUES`], classes at most [`MAX_CLASSES`].
///
/// Within these limits every parameter count of the reference models fits in
/// 64 bits (the largest is the MLP's `300·C·H·W + 100·classes` < 2^41); the
/// multiply–add counts are checked layer by layer by
/// [`sparse_core::stats::forward_macs`].
pub fn check_input(input: [usize; 3], classes: usize) -> Result<(), ModelError> {
    let [c, h, w] = input;
    let shown = format!("{c}x{h}x{w}");
    let err = |detail: String| ModelError::Input {
        input: shown.clone(),
        detail,
    };
    if input.contains(&0) {
        return Err(err("every side must be at least 1".into()));
    }
    let values = input.iter().try_fold(1u128, |acc, &x| acc.checked_mul(x as u128));
    if values.is_none_or(|v| v > u128::from(MAX_INPUT_VALUES)) {
        let shown = values.map_or("more than 2^128".to_string(), |v| v.to_string());
        return Err(err(format!(
            "{shown} values per image (C·H·W) is more than the limit of {MAX_INPUT_VALUES} (2^32) whose layer sizes are counted; use a smaller input"
        )));
    }
    if classes == 0 || classes > MAX_CLASSES {
        return Err(err(format!(
            "{classes} classes is outside the supported 1 to {MAX_CLASSES} (2^24); pass a class count in that range"
        )));
    }
    Ok(())
}

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

/// One output side, `(x + p − d·(k − 1) − 1) / s + 1`, in checked arithmetic:
/// 0 when the window does not fit in the padded input (or a size overflows).
fn side_out(x: usize, p: usize, k: usize, s: usize, d: usize) -> usize {
    let span = k
        .checked_sub(1)
        .and_then(|k1| d.checked_mul(k1))
        .and_then(|x| x.checked_add(1));
    x.checked_add(p)
        .zip(span)
        .and_then(|(padded, span)| padded.checked_sub(span))
        .and_then(|room| room.checked_div(s))
        .map_or(0, |q| q + 1)
}

/// Output `[H, W]` of a 2-D window op (conv or pool); a side is 0 when the
/// window does not fit in the padded input.
pub fn window_out(
    input: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    padding: &PaddingConfig2d,
) -> [usize; 2] {
    match pads(padding, kernel) {
        Some([t, l, b, r]) => [
            side_out(input[0], t.saturating_add(b), kernel[0], stride[0], dilation[0]),
            side_out(input[1], l.saturating_add(r), kernel[1], stride[1], dilation[1]),
        ],
        None => [0, 1].map(|i| {
            if stride[i] == 0 {
                0
            } else {
                input[i].div_ceil(stride[i])
            }
        }),
    }
}

/// Output `[H, W]` of `conv`.
pub fn conv_out(conv: &Conv2d, input: [usize; 2]) -> [usize; 2] {
    window_out(input, conv.kernel_size, conv.stride, conv.dilation, &conv.padding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_sides_follow_the_convolution_formula() {
        // 28 + 2 − 2 − 1 = 27, /1 + 1 = 28 (3×3, padding 1)
        let same = PaddingConfig2d::Explicit(1, 1, 1, 1);
        assert_eq!(window_out([28, 28], [3, 3], [1, 1], [1, 1], &same), [28, 28]);
        // (224 + 6 − 6 − 1) / 2 + 1 = 112 (ResNet stem)
        let stem = PaddingConfig2d::Explicit(3, 3, 3, 3);
        assert_eq!(window_out([224, 224], [7, 7], [2, 2], [1, 1], &stem), [112, 112]);
        // a 2×2 window does not fit in 1 pixel: no output rather than an underflow
        assert_eq!(
            window_out([1, 8], [2, 2], [2, 2], [1, 1], &PaddingConfig2d::Valid),
            [0, 4]
        );
        assert_eq!(window_out([usize::MAX, 4], [3, 3], [1, 1], [1, 1], &same), [0, 4]);
    }

    #[test]
    fn inputs_whose_counts_would_overflow_are_refused() {
        assert!(check_input([3, 224, 224], 1000).is_ok());
        assert!(check_input([1, 1 << 16, 1 << 16], 10).is_ok());
        let err = check_input([usize::MAX, 2, 2], 10).unwrap_err().to_string();
        // (2^64 − 1)·4 = 73786976294838206460
        assert!(
            err.contains("18446744073709551615x2x2") && err.contains("73786976294838206460") && err.contains("2^32"),
            "{err}"
        );
        assert!(check_input([1, 1 << 16, (1 << 16) + 1], 10).is_err());
        let err = check_input([usize::MAX; 3], 10).unwrap_err().to_string();
        assert!(err.contains("more than 2^128"), "{err}");
        assert!(
            check_input([0, 28, 28], 10)
                .unwrap_err()
                .to_string()
                .contains("at least 1")
        );
        let err = check_input([1, 28, 28], usize::MAX).unwrap_err().to_string();
        assert!(err.contains("2^24"), "{err}");
        assert!(check_input([1, 28, 28], 0).is_err());
    }
}
