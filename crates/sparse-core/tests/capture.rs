//! Layer-input capture: the fan-in features of a conv, in `SparseLayer::flat` order,
//! reproduce the conv's own output (`y[o, t] = Σ_j W[flat(o, j)] · X[t, j]`) for every
//! padding mode, stride, dilation and group count; a Linear's features are its input.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Distribution, Tensor};
use sparse_core::capture::{Capture, CaptureInputs, CaptureStop, InputSink, LayerFeatures, conv2d_features};
use sparse_core::discovery::all_weights;
use sparse_core::{BackendKind, SparseLayer, host};

fn device() -> Device {
    let device = BackendKind::from_env().unwrap().device().unwrap();
    device.seed(3);
    device
}

/// `Σ_j W[flat(o, j)] · X[g(o), t, j]` for every neuron and token, as `[neurons, tokens]`.
fn rebuild(layer: &SparseLayer, weight: &[f32], features: &LayerFeatures) -> Vec<Vec<f64>> {
    let [groups, tokens, fan_in] = features.x.dims();
    let x = host::to_vec(features.x.clone()).unwrap();
    let per = layer.neurons() / groups;
    (0..layer.neurons())
        .map(|o| {
            let g = o / per;
            (0..tokens)
                .map(|t| {
                    (0..fan_in)
                        .map(|j| f64::from(weight[layer.flat(o, j)]) * f64::from(x[(g * tokens + t) * fan_in + j]))
                        .sum()
                })
                .collect()
        })
        .collect()
}

fn check_conv(conv: Conv2d, input: [usize; 4]) {
    let x = Tensor::<4>::random(input, Distribution::Normal(0.0, 1.0), &device());
    let y = conv.forward(x.clone()); // [B, O, Ho, Wo]
    let [b, o, ho, wo] = y.dims();
    let layer = all_weights(&conv).remove(0);
    let weight = host::to_vec(conv.weight.val()).unwrap();
    let features = conv2d_features(&conv, x);
    assert_eq!(features.tokens(), b * ho * wo);
    assert_eq!(features.fan_in(), layer.fan_in());
    let got = rebuild(&layer, &weight, &features);
    let want = host::to_vec(y).unwrap();
    for n in 0..o {
        for bi in 0..b {
            for p in 0..ho * wo {
                let w = f64::from(want[(bi * o + n) * ho * wo + p]);
                let g = got[n][bi * ho * wo + p];
                assert!(
                    (w - g).abs() < 1e-4 * (1.0 + w.abs()),
                    "neuron {n}, sample {bi}, position {p}: {g} vs {w}"
                );
            }
        }
    }
}

#[test]
fn conv_features_reproduce_the_conv_in_mask_order() {
    let d = device();
    let conv = |c: [usize; 2], k: [usize; 2]| Conv2dConfig::new(c, k).with_bias(false);
    check_conv(
        conv([3, 4], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&d),
        [2, 3, 6, 5],
    );
    check_conv(
        conv([4, 6], [3, 2])
            .with_stride([2, 1])
            .with_dilation([1, 2])
            .with_padding(PaddingConfig2d::Explicit(2, 0, 1, 1))
            .init(&d),
        [2, 4, 7, 6],
    );
    check_conv(
        conv([6, 4], [3, 3])
            .with_groups(2)
            .with_padding(PaddingConfig2d::Same)
            .init(&d),
        [1, 6, 5, 5],
    );
    check_conv(
        conv([5, 5], [3, 3])
            .with_groups(5)
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&d),
        [2, 5, 6, 6],
    );
    check_conv(conv([3, 2], [1, 1]).init(&d), [2, 3, 4, 4]);
}

#[derive(Module, Debug)]
struct Net {
    conv: Conv2d,
    fc: Linear,
    head: Linear,
}

impl CaptureInputs for Net {
    type Batch = Tensor<4>;
    type Output = Tensor<2>;

    fn forward_capture(&self, x: Tensor<4>, cap: &mut Capture<'_>) -> Result<Tensor<2>, CaptureStop> {
        let x = cap.conv2d("conv.weight", &self.conv, x)?;
        let x = cap.linear("fc.weight", &self.fc, x.flatten::<2>(1, 3))?;
        cap.linear("head.weight", &self.head, x)
    }
}

#[derive(Default)]
struct Recorder {
    want: Vec<&'static str>,
    stop_after: Option<&'static str>,
    seen: Vec<String>,
    got: Vec<(String, LayerFeatures)>,
}

impl InputSink for Recorder {
    fn wants(&mut self, path: &str) -> bool {
        self.seen.push(path.to_string());
        self.want.contains(&path)
    }
    fn record(&mut self, path: &str, features: LayerFeatures) -> Result<(), sparse_core::SparseError> {
        self.got.push((path.to_string(), features));
        Ok(())
    }
    fn is_done(&self) -> bool {
        self.stop_after.is_some_and(|p| self.seen.iter().any(|s| s == p))
    }
}

fn net() -> Net {
    let d = device();
    Net {
        conv: Conv2dConfig::new([2, 3], [3, 3]).init(&d),
        fc: LinearConfig::new(3 * 2 * 2, 5).init(&d),
        head: LinearConfig::new(5, 2).init(&d),
    }
}

#[test]
fn linear_features_are_the_input_and_the_output_is_unchanged() {
    let net = net();
    let x = Tensor::<4>::random([3, 2, 4, 4], Distribution::Normal(0.0, 1.0), &device());
    let mut rec = Recorder {
        want: vec!["head.weight"],
        ..Default::default()
    };
    let out = net.forward_capture(x.clone(), &mut Capture::new(&mut rec)).unwrap();
    assert_eq!(rec.seen, vec!["conv.weight", "fc.weight", "head.weight"]);
    let hidden = net.fc.forward(net.conv.forward(x.clone()).flatten::<2>(1, 3));
    let want = host::to_vec(net.head.forward(hidden.clone())).unwrap();
    assert_eq!(host::to_vec(out).unwrap(), want);
    let (path, f) = &rec.got[0];
    assert_eq!(path, "head.weight");
    assert_eq!(f.x.dims(), [1, 3, 5]);
    assert_eq!(host::to_vec(f.x.clone()).unwrap(), host::to_vec(hidden).unwrap());
}

#[test]
fn a_done_sink_stops_the_forward_pass() {
    let net = net();
    let x = Tensor::<4>::random([1, 2, 4, 4], Distribution::Normal(0.0, 1.0), &device());
    let mut rec = Recorder {
        want: vec!["fc.weight"],
        stop_after: Some("fc.weight"),
        ..Default::default()
    };
    let r = net.forward_capture(x, &mut Capture::new(&mut rec));
    assert!(matches!(r, Err(CaptureStop::Done)));
    assert_eq!(rec.seen, vec!["conv.weight", "fc.weight"]);
    assert_eq!(rec.got.len(), 1);
}
