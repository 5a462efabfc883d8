//! `CaptureInputs` of the reference models: the capturing forward pass returns exactly
//! the model's own output, reports every conv/linear weight (by the path discovery
//! gives it) once, in forward order, and hands over inputs of the right fan-in.

use burn::tensor::{Device, Distribution, Tensor};
use sparse_core::capture::{Capture, CaptureInputs, InputSink, LayerFeatures};
use sparse_core::discovery::all_weights;
use sparse_core::{BackendKind, SparseError, host};
use sparse_models::*;

fn device() -> Device {
    let device = BackendKind::from_env().unwrap().device().unwrap();
    device.seed(5);
    device
}

/// Wants every layer and records its path and feature shape.
#[derive(Default)]
struct Recorder {
    seen: Vec<String>,
    shapes: Vec<[usize; 3]>,
}

impl InputSink for Recorder {
    fn wants(&mut self, path: &str) -> bool {
        self.seen.push(path.to_string());
        true
    }
    fn record(&mut self, _path: &str, features: LayerFeatures) -> Result<(), SparseError> {
        self.shapes.push(features.x.dims());
        Ok(())
    }
}

fn check<M>(model: &M, input: [usize; 4])
where
    M: Classifier + CaptureInputs<Batch = Tensor<4>, Output = Tensor<2>>,
{
    let x = Tensor::<4>::random(input, Distribution::Normal(0.0, 1.0), &device());
    let mut rec = Recorder::default();
    let out = model.forward_capture(x.clone(), &mut Capture::new(&mut rec)).unwrap();
    assert_eq!(host::to_vec(out).unwrap(), host::to_vec(model.forward(x)).unwrap());
    let layers = all_weights(model);
    let mut declared: Vec<&str> = layers.iter().map(|l| l.path.as_str()).collect();
    let mut reported: Vec<&str> = rec.seen.iter().map(String::as_str).collect();
    assert_eq!(reported.first(), declared.first(), "the first layer runs first");
    assert_eq!(reported.last(), declared.last(), "the classifier runs last");
    declared.sort_unstable();
    reported.sort_unstable();
    assert_eq!(reported, declared);
    for (path, shape) in rec.seen.iter().zip(&rec.shapes) {
        let layer = layers.iter().find(|l| &l.path == path).unwrap();
        assert_eq!(shape[2], layer.fan_in(), "{path}");
        assert_eq!(layer.neurons() % shape[0], 0, "{path}");
    }
}

#[test]
fn mlp_and_small_cnn() {
    check(&MlpConfig::new().init(&device()), [3, 1, 28, 28]);
    check(
        &SmallCnnConfig::new().with_input([3, 32, 32]).init(&device()),
        [2, 3, 32, 32],
    );
}

#[test]
fn resnets() {
    for (depth, stem) in [
        (ResNetDepth::R18, Stem::Cifar),
        (ResNetDepth::R18, Stem::ImageNet),
        (ResNetDepth::R34, Stem::ImageNet),
        (ResNetDepth::R50, Stem::ImageNet),
    ] {
        let model = ResNetConfig::new(depth)
            .with_stem(stem)
            .with_classes(10)
            .init(&device());
        check(&model, [2, 3, 32, 32]);
    }
}

#[test]
fn mobilenet_with_depthwise_groups() {
    let model = MobileNetV1Config::new()
        .with_width(0.25)
        .with_small_input(true)
        .with_classes(10)
        .init(&device())
        .unwrap();
    check(&model, [2, 3, 32, 32]);
    // a depthwise conv hands over one group per channel, 9 features each
    let mut rec = Recorder::default();
    let x = Tensor::<4>::random([1, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device());
    model.forward_capture(x, &mut Capture::new(&mut rec)).unwrap();
    let i = rec.seen.iter().position(|p| p == "blocks.0.dw.weight").unwrap();
    assert_eq!(rec.shapes[i], [8, 32 * 32, 9]);
}
