//! Gradients through the sparse ops on an autodiff device equal the dense
//! masked gradients: dX, the stored values' dW (SDDMM) and db for the linear
//! op and the convolution (handwritten backward passes).

use crate::common;

use burn::tensor::Tensor;
use common::{device, mask, rand, rel_err, tensor, values};
use proptest::prelude::*;
use sparse_core::{Pattern, Rng, SparseLayer};
use sparse_kernels::modules::conv::ConvConfig;
use sparse_kernels::modules::linear::LinearWeight;
use sparse_kernels::{Activation, FormatKind, SparseConv2d, SparseLinear};

fn linear_grads(
    d_in: usize,
    d_out: usize,
    batch: usize,
    format: FormatKind,
    pattern: Pattern,
    seed: u64,
) -> Result<(), TestCaseError> {
    let dev = device().autodiff();
    let mut rng = Rng::new(seed);
    let layer = SparseLayer::linear("fc.weight", d_in, d_out);
    let Some(m) = mask(&layer, &pattern, 0.3, &mut rng) else {
        return Ok(());
    };
    let (w, bias) = (rand(&mut rng, d_in * d_out), rand(&mut rng, d_out));
    let (x, r) = (rand(&mut rng, batch * d_in), rand(&mut rng, batch * d_out));
    let s = SparseLinear::from_parts(
        d_in,
        d_out,
        w.clone(),
        bias,
        &m,
        "fc.weight",
        format,
        Activation::None,
        &dev,
    )
    .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let LinearWeight::Sparse(sw) = &s.weight else {
        return Err(TestCaseError::fail("sparse weight expected"));
    };
    let xt = tensor(x.clone(), [batch, d_in], &dev).require_grad();
    let (vals, b) = (sw.values.val(), s.bias.val());
    let y = sparse_kernels::ops::sparse_linear(xt.clone(), vals.clone(), b.clone(), &sw.plan, Activation::None);
    let grads = (y * tensor(r.clone(), [batch, d_out], &dev)).sum().backward();
    let (gx, gv, gb) = (
        values(xt.grad(&grads).unwrap()),
        values(vals.grad(&grads).unwrap()),
        values(b.grad(&grads).unwrap()),
    );
    // independent host gradients of sum(r ⊙ (x·(W⊙M) + b))
    let mut want_gx = vec![0.0f32; batch * d_in];
    let mut dense_gw = vec![0.0f32; d_out * d_in]; // [rows = out, cols = in]
    for bi in 0..batch {
        for i in 0..d_in {
            for o in 0..d_out {
                if m.get(i * d_out + o) {
                    want_gx[bi * d_in + i] += r[bi * d_out + o] * w[i * d_out + o];
                }
                dense_gw[o * d_in + i] += r[bi * d_out + o] * x[bi * d_in + i];
            }
        }
    }
    let pos = sw.plan.dense_positions();
    let want_gv: Vec<f32> = pos
        .iter()
        .map(|&p| dense_gw.get(p as usize).copied().unwrap_or(0.0))
        .collect();
    let want_gb: Vec<f32> = (0..d_out)
        .map(|o| (0..batch).map(|bi| r[bi * d_out + o]).sum())
        .collect();
    for (name, got, want) in [("dX", &gx, &want_gx), ("dW", &gv, &want_gv), ("db", &gb, &want_gb)] {
        let err = rel_err(got, want);
        prop_assert!(err <= 1e-5, "{format:?} {name}: relative error {err}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(12), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn linear_backward_equals_dense_masked_gradients(d_in in 1usize..6, d_out in 1usize..6, batch in 1usize..12, f in 0usize..3, seed in 0u64..10_000) {
        let (format, pattern) = [
            (FormatKind::Csr, Pattern::Unstructured),
            (FormatKind::Condensed, Pattern::ConstantFanIn),
            (FormatKind::Nm, Pattern::NM { n: 2, m: 4 }),
        ][f].clone();
        linear_grads(d_in * 8, d_out * 4, batch, format, pattern, seed)?;
    }
}

/// Stride, padding `[top, left, bottom, right]`, dilation and groups.
#[derive(Clone)]
struct Geometry {
    stride: [usize; 2],
    pad: [usize; 4],
    dilation: [usize; 2],
    groups: usize,
}

/// Gradients of `sum(r ⊙ act(conv(x, W⊙M) + b))` through the sparse
/// convolution equal Burn's dense convolution on the masked weight (its own
/// autodiff): dX, the stored values' dW (sampled from the dense dW) and db.
/// `shape` is `[c_out, c_in / groups, kh, kw]`.
fn conv_grads(
    shape: [usize; 4],
    hw: [usize; 2],
    g: Geometry,
    batch: usize,
    density: f64,
    act: Activation,
    seed: u64,
) -> Result<(), TestCaseError> {
    let Geometry {
        stride,
        pad,
        dilation,
        groups,
    } = g;
    let dev = device().autodiff();
    let mut rng = Rng::new(seed);
    let layer = SparseLayer::conv("conv.weight", &shape);
    let Some(m) = mask(&layer, &Pattern::Unstructured, density, &mut rng) else {
        return Ok(());
    };
    let (w, bias) = (rand(&mut rng, layer.numel()), rand(&mut rng, shape[0]));
    let config = ConvConfig {
        shape,
        stride,
        dilation,
        groups,
        padding: burn::nn::PaddingConfig2d::Explicit(pad[0], pad[1], pad[2], pad[3]),
    };
    let s = SparseConv2d::from_parts(
        config,
        w.clone(),
        bias.clone(),
        &m,
        "conv.weight",
        FormatKind::Csr,
        act,
        &dev,
    )
    .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let sparse_kernels::modules::conv::ConvWeight::Sparse(sw) = &s.weight else {
        return Err(TestCaseError::fail("sparse weight expected"));
    };
    let dims = [batch, shape[1] * groups, hw[0], hw[1]];
    let x = rand(&mut rng, dims.iter().product());
    let xs = tensor(x.clone(), dims, &dev).require_grad();
    let (vals, b) = (sw.values.val(), s.bias.val());
    let ys = s.forward(xs.clone());
    let r: Tensor<4> = tensor(rand(&mut rng, ys.dims().iter().product()), ys.dims(), &dev);
    let gs = (ys * r.clone()).sum().backward();
    let mut mw = w;
    m.apply(&mut mw);
    let xd = tensor(x, dims, &dev).require_grad();
    let wd = tensor(mw, shape, &dev).require_grad();
    let bd = tensor(bias, [shape[0]], &dev).require_grad();
    let pairs = [(pad[0], pad[2]), (pad[1], pad[3])];
    let opts = burn::tensor::ops::ConvOptions::new_with_padding(stride, pairs, dilation, groups);
    let yd = burn::tensor::module::conv2d(xd.clone(), wd.clone(), Some(bd.clone()), opts);
    let yd = if act == Activation::Relu {
        burn::tensor::activation::relu(yd)
    } else {
        yd
    };
    let gd = (yd * r).sum().backward();
    // the dense dW at each stored value's position ([rows, fan-in] channel-last)
    let dense_gw = values(wd.grad(&gd).unwrap());
    let want_gv: Vec<f32> = sw
        .plan
        .dense_positions()
        .iter()
        .map(|&p| {
            let (o, j) = (p as usize / layer.fan_in(), p as usize % layer.fan_in());
            if o < shape[0] { dense_gw[layer.flat(o, j)] } else { 0.0 }
        })
        .collect();
    let case = format!("{shape:?} on {dims:?} stride {stride:?} pad {pad:?} dilation {dilation:?} {act:?}");
    for (name, got, want) in [
        ("dX", values(xs.grad(&gs).unwrap()), values(xd.grad(&gd).unwrap())),
        ("dW", values(vals.grad(&gs).unwrap()), want_gv),
        ("db", values(b.grad(&gs).unwrap()), values(bd.grad(&gd).unwrap())),
    ] {
        let err = rel_err(&got, &want);
        prop_assert!(err <= 1e-5, "{case} {name}: relative error {err}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(16), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn conv_backward_equals_dense_masked_gradients(
        cout in 1usize..7, cin in 1usize..6, k in prop::sample::select(vec![1usize, 3, 5]),
        hw in (3usize..11, 3usize..11), stride in (1usize..3, 1usize..3), pad in (0usize..3, 0usize..3),
        dilation in (1usize..3, 1usize..3), batch in 1usize..7, density in 0.05f64..0.9,
        relu in any::<bool>(), seed in 0u64..10_000,
    ) {
        // the dilated kernel must fit the padded input
        let span = (k - 1) * dilation.0.max(dilation.1) + 1;
        prop_assume!(hw.0 + 2 * pad.0 >= span && hw.1 + 2 * pad.1 >= span);
        let act = if relu { Activation::Relu } else { Activation::None };
        let g = Geometry {
            stride: [stride.0, stride.1],
            pad: [pad.0, pad.1, pad.0, pad.1],
            dilation: [dilation.0, dilation.1],
            groups: 1,
        };
        conv_grads([cout, cin, k, k], [hw.0, hw.1], g, batch, density, act, seed)?;
    }
}

/// Grouped convolutions (the scatter path of the input gradient) and
/// asymmetric padding (the transposed path pads `dY` unevenly), which the
/// property test above does not draw.
#[test]
fn grouped_and_unevenly_padded_conv_gradients_equal_dense_masked_ones() {
    let cases = [
        // groups 2, stride 1: input gradient by scatter
        ([4, 3, 3, 3], [7, 6], [1, 1], [1, 1, 1, 1], [1, 1], 2),
        // groups 3, stride 2, dilation 2
        ([6, 2, 3, 3], [9, 8], [2, 1], [2, 1, 2, 1], [2, 2], 3),
        // one group, stride 1, padding (top 0, left 1, bottom 2, right 0): the transposed path
        ([5, 4, 3, 3], [6, 7], [1, 1], [0, 1, 2, 0], [1, 1], 1),
        // an even kernel, padded as `Same` pads it (1 before, 2 after)
        ([3, 2, 4, 4], [6, 6], [1, 1], [1, 1, 2, 2], [1, 1], 1),
    ];
    for (i, (shape, hw, stride, pad, dilation, groups)) in cases.into_iter().enumerate() {
        let g = Geometry {
            stride,
            pad,
            dilation,
            groups,
        };
        for act in [Activation::None, Activation::Relu] {
            conv_grads(shape, hw, g.clone(), 2, 0.5, act, 40 + i as u64).unwrap();
        }
    }
}

/// A ResNet-like layer at batch 8 on two threads: the forward and the
/// transposed forward of `dX` run whole images per task.
#[test]
fn a_batch_split_by_image_has_dense_masked_gradients() {
    let g = Geometry {
        stride: [1, 1],
        pad: [1, 1, 1, 1],
        dilation: [1, 1],
        groups: 1,
    };
    common::on_two_threads(|| conv_grads([24, 16, 3, 3], [9, 12], g, 8, 0.3, Activation::Relu, 9).unwrap());
}
