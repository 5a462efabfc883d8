//! AutoSparse with one learnable threshold per output channel, as PQuantML's
//! `channelwise` default (issue 13): `Ŵ = sign(W)·h(|W| − σ(s_o))` with `s_o` the
//! logit of the weight's neuron, broadcast over the neuron's fan-in.

use crate::common;

use burn::module::Param;
use burn::tensor::{Tensor, TensorData};
use common::{device, host};
use sparse_core::SparseLayer;
use sparse_methods::AutoSparseConfig;
use sparse_methods::autosparse::{ThresholdGranularity, threshold_forward};

fn close(a: &[f32], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (*x as f64 - y).abs() < 1e-5)
}

#[test]
fn each_neuron_has_its_own_threshold_and_gradient() {
    let device = device();
    // Burn Linear [d_in = 3, d_out = 2]: flat index = i·2 + o
    let layer = SparseLayer::linear("w", 3, 2);
    let w = vec![0.5f32, 0.1, -0.02, -0.3, 0.2, 0.04];
    let taus = [0.1f64, 0.05];
    let logits: Vec<f32> = taus.iter().map(|t| (t / (1.0 - t)).ln() as f32).collect();
    let alpha = 0.5f32;
    let weight = Param::from_tensor(Tensor::<1>::from_data(TensorData::new(w.clone(), [6]), &device));
    let s = Param::from_tensor(Tensor::<1>::from_data(TensorData::new(logits.clone(), [2]), &device));
    let out = threshold_forward(&layer, weight.val(), s.val(), alpha);
    let fwd = host(out.clone());
    let grads = out.sum().backward();
    let gw = host(weight.val().grad(&grads).unwrap());
    let gs = host(s.val().grad(&grads).unwrap());
    // by the formula, neuron o = i mod 2, x = |w| − τ_o
    let mut want_fwd = vec![0.0; 6];
    let mut want_gw = vec![0.0; 6];
    let mut want_gs = [0.0f64; 2];
    for i in 0..6 {
        let o = i % 2;
        let x = (w[i] as f64).abs() - taus[o];
        let h_prime = if x > 0.0 { 1.0 } else { alpha as f64 };
        want_fwd[i] = if x > 0.0 { (w[i] as f64).signum() * x } else { 0.0 };
        want_gw[i] = h_prime; // ∂Ŵ/∂W = sign(W)·h'·sign(W)
        // ∂Ŵ/∂s = −sign(W)·h'·σ'(s), σ' = τ(1 − τ)
        want_gs[o] -= (w[i] as f64).signum() * h_prime * taus[o] * (1.0 - taus[o]);
    }
    assert!(close(&fwd, &want_fwd), "{fwd:?} vs {want_fwd:?}");
    assert!(close(&fwd, &[0.4, 0.05, 0.0, -0.25, 0.1, 0.0]), "{fwd:?}");
    assert!(close(&gw, &want_gw), "{gw:?} vs {want_gw:?}");
    assert!(close(&gs, &want_gs), "{gs:?} vs {want_gs:?}");
    assert!(close(&gs, &[-0.135, -0.02375]), "{gs:?}");
}

#[test]
fn thresholds_start_at_the_init_once_per_channel_by_default() {
    let config = AutoSparseConfig::new();
    assert_eq!(config.threshold_granularity, ThresholdGranularity::Channel);
    let conv = SparseLayer::conv("c", &[5, 3, 3, 3]);
    let init = config.threshold_granularity.initial(&conv, -5.0);
    assert_eq!(init, vec![-5.0; conv.neurons()]);
    assert_eq!(ThresholdGranularity::Layer.initial(&conv, -5.0).len(), 1);
    assert_eq!(ThresholdGranularity::Weight.initial(&conv, -5.0).len(), conv.numel());
}

#[test]
fn a_conv_broadcasts_its_thresholds_over_each_output_channel() {
    let device = device();
    // [c_out = 2, c_in = 1, 1, 2]: flat index = o·2 + j
    let layer = SparseLayer::conv("c", &[2, 1, 1, 2]);
    let w = vec![0.3f32, 0.08, 0.3, 0.08];
    let logits: Vec<f32> = [0.1f64, 0.2].iter().map(|t| (t / (1.0 - t)).ln() as f32).collect();
    let out = threshold_forward(
        &layer,
        Tensor::<1>::from_data(TensorData::new(w, [4]), &device),
        Tensor::<1>::from_data(TensorData::new(logits, [2]), &device),
        0.0,
    );
    assert!(close(&host(out), &[0.2, 0.0, 0.1, 0.0]));
}
