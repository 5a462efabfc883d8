//! Gradients through the sparse ops on an autodiff device equal the dense
//! masked gradients: dX, the stored values' dW (SDDMM) and db for the linear
//! op (handwritten backward), dX and db for the convolution.

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

#[test]
fn conv_backward_equals_dense_masked_gradients() {
    let dev = device().autodiff();
    let mut rng = Rng::new(5);
    let shape = [6, 4, 3, 3];
    let layer = SparseLayer::conv("conv.weight", &shape);
    let m = mask(&layer, &Pattern::Unstructured, 0.3, &mut rng).unwrap();
    let (w, bias) = (rand(&mut rng, layer.numel()), rand(&mut rng, 6));
    let padding = burn::nn::PaddingConfig2d::Explicit(1, 1, 1, 1);
    let config = ConvConfig {
        shape,
        stride: [2, 1],
        dilation: [1, 1],
        groups: 1,
        padding: padding.clone(),
    };
    let s = SparseConv2d::from_parts(
        config,
        w.clone(),
        bias.clone(),
        &m,
        "conv.weight",
        FormatKind::Csr,
        Activation::None,
        &dev,
    )
    .unwrap();
    let x = rand(&mut rng, 2 * 4 * 6 * 6);
    let xs = tensor(x.clone(), [2, 4, 6, 6], &dev).require_grad();
    let ys = s.forward(xs.clone());
    let r: Tensor<4> = tensor(rand(&mut rng, ys.dims().iter().product()), ys.dims(), &dev);
    let gs = (ys * r.clone()).sum().backward();
    // the same with Burn's dense conv on masked weights
    let mut mw = w.clone();
    m.apply(&mut mw);
    let xd = tensor(x, [2, 4, 6, 6], &dev).require_grad();
    let wd = tensor(mw, shape, &dev);
    let bd = tensor(bias, [6], &dev).require_grad();
    let opts = burn::tensor::ops::ConvOptions::new([2, 1], [1, 1], [1, 1], 1);
    let yd = burn::tensor::module::conv2d(xd.clone(), wd, Some(bd.clone()), opts);
    let gd = (yd * r).sum().backward();
    let err = rel_err(&values(xs.grad(&gs).unwrap()), &values(xd.grad(&gd).unwrap()));
    assert!(err <= 1e-5, "dX {err}");
    let err = rel_err(&values(s.bias.val().grad(&gs).unwrap()), &values(bd.grad(&gd).unwrap()));
    assert!(err <= 1e-5, "db {err}");
}
