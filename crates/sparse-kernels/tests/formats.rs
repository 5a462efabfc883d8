//! Every format round-trips to the masked dense weights, and rejects masks it cannot hold.

use crate::common;

use common::{mask, rand};
use proptest::prelude::*;
use sparse_core::{Mask, Pattern, Rng, SparseLayer};
use sparse_kernels::formats::{self, FormatKind, channel};
use sparse_kernels::{KernelError, OpKind};

fn masked(w: &[f32], m: &Mask) -> Vec<f32> {
    let mut v = w.to_vec();
    m.apply(&mut v);
    v
}

fn round_trip(layer: &SparseLayer, op: OpKind, pattern: Pattern, kind: FormatKind, density: f64, seed: u64) {
    let mut rng = Rng::new(seed);
    let Some(m) = mask(layer, &pattern, density, &mut rng) else {
        return;
    };
    let w = rand(&mut rng, layer.numel());
    let built = formats::build(layer, op, &m, &w, kind, Some([2, 4])).expect("the mask fits its own format");
    assert_eq!(formats::to_dense(layer, &built), masked(&w, &m), "{kind:?} {pattern:?}");
    assert_eq!(built.values.len(), built.plan.n_values);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn linear_formats_round_trip(d_in in 1usize..6, d_out in 1usize..5, density in 0.05f64..0.9, seed in 0u64..1000) {
        let layer = SparseLayer::linear("fc.weight", d_in * 8, d_out * 4);
        let op = OpKind::Linear;
        round_trip(&layer, op, Pattern::Unstructured, FormatKind::Csr, density, seed);
        round_trip(&layer, op, Pattern::ConstantFanIn, FormatKind::Condensed, density, seed);
        round_trip(&layer, op, Pattern::NM { n: 2, m: 4 }, FormatKind::Nm, density, seed);
        round_trip(&layer, op, Pattern::NM { n: 1, m: 8 }, FormatKind::Nm, density, seed);
        round_trip(&layer, op, Pattern::Block { rows: 2, cols: 4 }, FormatKind::Bsr, density, seed);
    }

    #[test]
    fn conv_formats_round_trip(c_out in 1usize..5, cin in 1usize..4, k in 1usize..4, density in 0.05f64..0.9, seed in 0u64..1000) {
        let (c_out, cin) = (c_out * 2, cin * 4);
        let layer = SparseLayer::conv("conv.weight", &[c_out, cin, k, k]);
        let op = OpKind::Conv { cin_g: cin, kernel: [k, k], groups: 1 };
        round_trip(&layer, op, Pattern::Unstructured, FormatKind::Csr, density, seed);
        round_trip(&layer, op, Pattern::ConstantFanIn, FormatKind::Condensed, density, seed);
        round_trip(&layer, op, Pattern::NM { n: 2, m: 4 }, FormatKind::Nm, density, seed);
    }
}

#[test]
fn u16_indices_up_to_65536_columns_then_u32() {
    let small = SparseLayer::linear("a", 65536, 1);
    let m = Mask::from_indices(65536, [0, 65535]);
    let b = formats::build(&small, OpKind::Linear, &m, &vec![1.0; 65536], FormatKind::Csr, None).unwrap();
    assert_eq!(b.plan.csr().col.width(), 2);
    let big = SparseLayer::linear("b", 65537, 1);
    let m = Mask::from_indices(65537, [65536]);
    let b = formats::build(&big, OpKind::Linear, &m, &vec![1.0; 65537], FormatKind::Csr, None).unwrap();
    assert_eq!((b.plan.csr().col.width(), b.plan.csr().col.get(0)), (4, 65536));
}

#[test]
fn condensed_drops_ablated_neurons_and_stores_k_per_neuron() {
    // linear [in = 4, out = 3]: neurons 0 and 2 keep inputs 1 and 3, neuron 1 is ablated
    let layer = SparseLayer::linear("fc.weight", 4, 3);
    let m = Mask::from_indices(12, [3, 9, 5, 11]);
    let w: Vec<f32> = (0..12).map(|v| v as f32).collect();
    let b = formats::build(&layer, OpKind::Linear, &m, &w, FormatKind::Condensed, None).unwrap();
    let sparse_kernels::plan::Storage::Sell(s) = &b.plan.storage else {
        panic!("SELL storage")
    };
    assert_eq!((s.k, s.kept.clone()), (2, vec![0, 2]));
    assert_eq!(formats::to_dense(&layer, &b), masked(&w, &m));
}

fn mismatch(result: Result<formats::Built, KernelError>, needle: &str) {
    match result {
        Err(e @ KernelError::PatternMismatch { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("fc.weight") && msg.contains(needle) && msg.contains("csr"),
                "{msg}"
            );
        }
        other => panic!("expected a pattern mismatch, got {other:?}"),
    }
}

#[test]
fn unstructured_masks_are_refused_by_structured_formats_with_the_fix() {
    let layer = SparseLayer::linear("fc.weight", 8, 4);
    let w = vec![1.0; 32];
    // neuron 0 has inputs 0,1,2 (3 in the first group of 4), neuron 1 one input
    let m = Mask::from_indices(32, [0, 4, 8, 1]);
    mismatch(
        formats::build(&layer, OpKind::Linear, &m, &w, FormatKind::Nm, None),
        "N:M",
    );
    mismatch(
        formats::build(&layer, OpKind::Linear, &m, &w, FormatKind::Condensed, None),
        "constant fan-in",
    );
    mismatch(
        formats::build(&layer, OpKind::Linear, &m, &w, FormatKind::Bsr, Some([2, 4])),
        "BSR",
    );
    let err = channel::build(&layer, &m, &w).unwrap_err().to_string();
    assert!(err.contains("fc.weight") && err.contains("channel"), "{err}");
}

#[test]
fn bsr_detects_the_largest_whole_block() {
    let layer = SparseLayer::linear("fc.weight", 16, 8);
    let mut rng = Rng::new(4);
    let m = mask(&layer, &Pattern::Block { rows: 4, cols: 8 }, 0.3, &mut rng).unwrap();
    assert_eq!(formats::bsr::detect(&layer, &m), [4, 8]);
    assert_eq!(formats::bsr::detect(&layer, &Mask::from_indices(128, [0])), [1, 1]);
}

#[test]
fn channel_pruning_keeps_whole_neurons() {
    let layer = SparseLayer::linear("fc.weight", 3, 4);
    let m = Mask::from_indices(12, (0..3).flat_map(|i| [i * 4 + 1, i * 4 + 3]));
    let w: Vec<f32> = (0..12).map(|v| v as f32).collect();
    let p = channel::build(&layer, &m, &w).unwrap();
    assert_eq!((p.kept.clone(), p.shape.clone()), (vec![1, 3], vec![3, 2]));
    assert_eq!(p.weights, vec![1.0, 3.0, 5.0, 7.0, 9.0, 11.0]);
}

#[test]
fn wrong_mask_length_is_a_shape_error() {
    let layer = SparseLayer::linear("fc.weight", 4, 4);
    let err = formats::build(
        &layer,
        OpKind::Linear,
        &Mask::ones(15),
        &[0.0; 16],
        FormatKind::Csr,
        None,
    )
    .unwrap_err();
    assert!(matches!(err, KernelError::Shape { .. }), "{err}");
}
