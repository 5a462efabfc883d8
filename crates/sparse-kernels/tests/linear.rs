//! `SparseLinear` in every format equals the dense masked layer, on the device
//! named by `SPARSEBURN_DEVICE` (flex kernels, CubeCL kernels or the fallback).

use crate::common;

use common::{cases, device, linear_ref, mask, rand, rel_err, tensor, values};
use proptest::prelude::*;
use sparse_core::{Mask, Pattern, Rng, SparseLayer};
use sparse_kernels::{Activation, FormatKind, SparseLinear};

fn pattern_for(format: FormatKind) -> Pattern {
    match format {
        FormatKind::Condensed => Pattern::ConstantFanIn,
        FormatKind::Nm => Pattern::NM { n: 2, m: 4 },
        FormatKind::Bsr => Pattern::Block { rows: 4, cols: 4 },
        FormatKind::Channel => Pattern::Channel,
        _ => Pattern::Unstructured,
    }
}

fn check(
    d_in: usize,
    d_out: usize,
    batch: usize,
    density: f64,
    format: FormatKind,
    relu: bool,
    seed: u64,
) -> Result<(), TestCaseError> {
    let dev = device();
    let mut rng = Rng::new(seed);
    let layer = SparseLayer::linear("fc.weight", d_in, d_out);
    let Some(mut m) = mask(&layer, &pattern_for(format), density, &mut rng) else {
        return Ok(());
    };
    if format == FormatKind::Condensed && d_out > 1 {
        // ablate neuron 0 (constant fan-in allows empty neurons)
        (0..d_in).for_each(|i| m.set(i * d_out, false));
    }
    let (w, bias, x) = (
        rand(&mut rng, d_in * d_out),
        rand(&mut rng, d_out),
        rand(&mut rng, batch * d_in),
    );
    let act = if relu { Activation::Relu } else { Activation::None };
    let sparse = SparseLinear::from_parts(d_in, d_out, w.clone(), bias.clone(), &m, "fc.weight", format, act, &dev)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let got = values(sparse.forward(tensor(x.clone(), [batch, d_in], &dev)));
    let want = linear_ref(&x, batch, &w, &m, &bias, relu);
    let err = rel_err(&got, &want);
    prop_assert!(
        err <= 1e-5,
        "{format:?} {d_in}x{d_out} batch {batch}: relative error {err}"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(24), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_format_equals_the_masked_dense_layer(
        d_in in 1usize..9, d_out in 1usize..9, batch in prop::sample::select(vec![1usize, 3, 8, 20, 70]),
        density in 0.05f64..0.6, f in 0usize..7, relu in any::<bool>(), seed in 0u64..10_000,
    ) {
        let format = [FormatKind::Csr, FormatKind::Condensed, FormatKind::Nm, FormatKind::Bsr,
                      FormatKind::Channel, FormatKind::Dense, FormatKind::Auto][f];
        check(d_in * 8, d_out * 4, batch, density, format, relu, seed)?;
    }
}

#[test]
fn wide_fan_in_uses_u32_indices_and_stays_exact() {
    check(70_000, 3, 2, 0.01, FormatKind::Csr, false, 7).unwrap();
}

#[test]
fn from_linear_keeps_the_bias_and_refuses_a_mismatched_mask() {
    let dev = device();
    let lin = burn::nn::LinearConfig::new(16, 8).init(&dev);
    let m = Mask::ones(128);
    let s = SparseLinear::from_linear(&lin, &m, "fc.weight", FormatKind::Csr, Activation::None).unwrap();
    let x = tensor(vec![0.5; 32], [2, 16], &dev);
    let err = rel_err(&values(s.forward(x.clone())), &values(lin.forward(x)));
    assert!(err <= 1e-5, "{err}");
    let e =
        SparseLinear::from_linear(&lin, &Mask::ones(127), "fc.weight", FormatKind::Csr, Activation::None).unwrap_err();
    assert!(e.to_string().contains("fc.weight"), "{e}");
}
