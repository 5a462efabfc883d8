//! `SparseConv2d` equals the dense masked convolution over random shapes,
//! strides, paddings, dilations and groups; BatchNorm folding equals conv + BN.

use crate::common;

use burn::nn::conv::Conv2dConfig;
use burn::nn::{BatchNormConfig, PaddingConfig2d};
use common::{ConvCase, cases, conv_ref, device, mask, rand, rel_err, tensor, values};
use proptest::prelude::*;
use sparse_core::{Pattern, Rng, SparseLayer};
use sparse_kernels::modules::conv::ConvConfig;
use sparse_kernels::{Activation, FormatKind, SparseConv2d};

fn check(
    c: ConvCase,
    density: f64,
    format: FormatKind,
    pattern: Pattern,
    relu: bool,
    seed: u64,
) -> Result<(), TestCaseError> {
    let dev = device();
    let mut rng = Rng::new(seed);
    let shape = [c.c_out, c.c_in / c.groups, c.kernel[0], c.kernel[1]];
    let layer = SparseLayer::conv("conv.weight", &shape);
    let Some(m) = mask(&layer, &pattern, density, &mut rng) else {
        return Ok(());
    };
    let w = rand(&mut rng, layer.numel());
    let bias = rand(&mut rng, c.c_out);
    let x = rand(&mut rng, c.n * c.c_in * c.hw[0] * c.hw[1]);
    let config = ConvConfig {
        shape,
        stride: c.stride,
        dilation: c.dilation,
        groups: c.groups,
        padding: PaddingConfig2d::Explicit(c.padding[0], c.padding[1], c.padding[0], c.padding[1]),
    };
    let act = if relu { Activation::Relu } else { Activation::None };
    let conv = SparseConv2d::from_parts(config, w.clone(), bias.clone(), &m, "conv.weight", format, act, &dev)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let got = values(conv.forward(tensor(x.clone(), [c.n, c.c_in, c.hw[0], c.hw[1]], &dev)));
    let want = conv_ref(&x, &c, &w, &m, &bias, relu);
    let err = rel_err(&got, &want);
    prop_assert!(err <= 1e-5, "{format:?} {c:?}: relative error {err}");
    Ok(())
}

fn case_strategy() -> impl Strategy<Value = ConvCase> {
    (
        1usize..7,
        1usize..4,
        1usize..4,
        prop::sample::select(vec![1usize, 2]),
        prop::sample::select(vec![[1usize, 1], [3, 3], [1, 3], [2, 2]]),
        1usize..3,
        0usize..3,
        1usize..3,
        5usize..12,
    )
        .prop_map(|(n, cin, cout, groups, kernel, stride, pad, dil, hw)| ConvCase {
            n,
            c_in: cin * groups * 2,
            c_out: cout * groups * 2,
            groups,
            kernel,
            stride: [stride, 1 + (stride + pad) % 2],
            padding: [pad, (pad + 1) % 3],
            dilation: [dil, 1],
            hw: [hw, hw + 2],
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(24), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn sparse_conv_equals_the_masked_dense_conv(c in case_strategy(), density in 0.05f64..0.7, f in 0usize..4, relu in any::<bool>(), seed in 0u64..10_000) {
        let (format, pattern) = [
            (FormatKind::Csr, Pattern::Unstructured),
            (FormatKind::Condensed, Pattern::ConstantFanIn),
            (FormatKind::Auto, Pattern::Unstructured),
            (FormatKind::Dense, Pattern::Unstructured),
        ][f].clone();
        check(c, density, format, pattern, relu, seed)?;
    }
}

/// A 3×3 convolution of `n` images, `[in, out]` channels, stride 1, padding 1.
fn conv3x3(n: usize, [c_in, c_out]: [usize; 2], hw: [usize; 2]) -> ConvCase {
    ConvCase {
        n,
        c_in,
        c_out,
        groups: 1,
        kernel: [3, 3],
        stride: [1, 1],
        padding: [1, 1],
        dilation: [1, 1],
        hw,
    }
}

/// A batch of at least two images per thread runs whole images per task,
/// each with its own padded buffer (`cpu::conv::forward`); a ResNet-like
/// layer at batch 8 on two threads takes that path on any machine.
#[test]
fn a_batch_split_by_image_equals_the_masked_conv() {
    common::on_two_threads(|| {
        for (padding, stride, seed) in [([1, 1], [1, 1], 1), ([0, 0], [1, 1], 2), ([1, 1], [2, 2], 3)] {
            let c = ConvCase {
                stride,
                padding,
                ..conv3x3(8, [16, 24], [9, 12])
            };
            check(c, 0.3, FormatKind::Csr, Pattern::Unstructured, seed == 1, seed).unwrap();
        }
    });
}

#[test]
fn channel_pruned_conv_equals_the_masked_conv() {
    let c = conv3x3(2, [4, 6], [6, 5]);
    check(c, 0.5, FormatKind::Channel, Pattern::Channel, true, 3).unwrap();
}

/// `auto` runs depthwise convolutions (1×1 ones too) and RGB stems on the
/// direct kernel (all weights active), k×k convolutions with more input
/// channels densely at full density, and ungrouped 1×1 convolutions densely
/// whatever their channels.
#[test]
fn few_channel_convs_take_the_direct_kernel_under_auto() {
    let dev = device();
    let format = |channels: [usize; 2], kernel: usize, groups: usize| {
        let conv = Conv2dConfig::new(channels, [kernel, kernel])
            .with_groups(groups)
            .init(&dev);
        let m = sparse_core::Mask::ones(conv.weight.shape().num_elements());
        let s = SparseConv2d::from_conv(&conv, None, &m, "c.weight", FormatKind::Auto, Activation::None).unwrap();
        s.format()
    };
    assert_eq!(format([8, 8], 3, 8), "csr", "depthwise");
    assert_eq!(format([3, 16], 7, 1), "csr", "RGB stem");
    assert_eq!(format([16, 16], 3, 1), "dense", "16 input channels at full density");
    assert_eq!(format([16, 16], 3, 2), "dense", "groups of 8 channels at full density");
    assert_eq!(format([3, 16], 1, 1), "dense", "1×1");
    assert_eq!(format([8, 8], 1, 8), "csr", "1×1 depthwise");
}

#[test]
fn folded_batch_norm_equals_conv_then_batch_norm() {
    let dev = device();
    let conv = Conv2dConfig::new([4, 6], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(&dev);
    let mut bn = BatchNormConfig::new(6).init(&dev);
    let mut rng = Rng::new(11);
    bn.gamma = bn.gamma.map(|g| tensor(rand(&mut rng, 6), [6], &g.device()));
    bn.beta = bn.beta.map(|b| tensor(rand(&mut rng, 6), [6], &b.device()));
    bn.running_mean = burn::module::RunningState::new(tensor(rand(&mut rng, 6), [6], &dev));
    bn.running_var = burn::module::RunningState::new(tensor(
        rand(&mut rng, 6).iter().map(|v| v.abs() + 0.5).collect(),
        [6],
        &dev,
    ));
    let layer = SparseLayer::conv("conv.weight", &[6, 4, 3, 3]);
    let m = mask(&layer, &Pattern::Unstructured, 0.3, &mut rng).unwrap();
    let mask_t = tensor(
        m.to_bools().iter().map(|&b| b as u8 as f32).collect(),
        [6, 4, 3, 3],
        &dev,
    );
    let mut masked = conv.clone();
    masked.weight = masked.weight.map(|w| w * mask_t);
    let x = tensor(rand(&mut rng, 2 * 4 * 7 * 7), [2, 4, 7, 7], &dev);
    let want = values(burn::tensor::activation::relu(bn.forward(masked.forward(x.clone()))));
    let s = SparseConv2d::from_conv(&conv, Some(&bn), &m, "conv.weight", FormatKind::Csr, Activation::Relu).unwrap();
    let err = rel_err(&values(s.forward(x)), &want);
    assert!(err <= 1e-5, "{err}");
}
