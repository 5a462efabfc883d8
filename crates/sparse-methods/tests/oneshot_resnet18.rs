//! Issue 14: on a torchvision-format ResNet-18 with random weights, the layer-wise
//! reconstruction error of SparseGPT ≤ Wanda ≤ magnitude at 50% unstructured sparsity.
//!
//! The weights are written as a torchvision state dict (key names and shapes from the
//! shared list in `sparse-models/tests/common/torchvision.rs`) and loaded through
//! `sparse_models::import::load_torchvision`, the path `sparseburn prune --init-weights`
//! takes. They are random with a fixed seed: convs from torchvision's init
//! (Kaiming normal, fan-out, ReLU gain), the classifier from `nn.Linear`'s (uniform
//! `±1/√fan-in`), and BatchNorm with random affine and running statistics (torchvision's
//! init, `γ = 1, β = 0, μ = 0, σ² = 1`, would make every BN the identity).
//!
//! Each method runs through `oneshot::prune` in one-pass mode, so every method prunes
//! each layer from the same dense weights and the same inputs (those of the dense
//! model): the per-layer errors compare the methods and nothing else. (In the default
//! sequential mode each method's layer `l` sees the output of its own pruned layers
//! `< l`, so the methods' errors at a layer are measured on different inputs.) The
//! errors `‖(W − Ŵ)X‖²_F / ‖WX‖²_F` are computed here from the captured inputs `X`
//! themselves, not from the pruner's report (which for SparseGPT is checked against
//! them); magnitude and Wanda run without error reports, so they need no `fan-in²`
//! Gram matrices.
//!
//! The calibration images are synthetic but image-like: smooth, spatially and
//! across-channel correlated, with per-channel offsets. With i.i.d. `N(0, 1)` pixels
//! instead, conv1's fan-in features are (but for the zero padding) uncorrelated with
//! equal norms, so Wanda's score is `|W|` ranked per row, and magnitude's per-layer
//! choice of the same count is the better one: at these seeds conv1's relative error
//! is 7.296e-2 for Wanda against 7.287e-2 for magnitude (every later layer keeps
//! Wanda far below magnitude).

use std::collections::BTreeMap;

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use sparse_core::capture::{Capture, CaptureInputs, InputSink, LayerFeatures};
use sparse_core::walk::{self, ParamPath, PathVisitor};
use sparse_core::{BackendKind, LayerFilter, Rng, SparseError, SparseLayer, discover, host};
use sparse_methods::oneshot::{CaptureMode, LayerReport, Matrix, OneShotConfig, OneShotMethod, prune};
use sparse_models::import::load_torchvision;
use sparse_models::{ResNet, ResNetConfig, ResNetDepth};

use crate::torchvision;
use torchvision::{torchvision_resnet18, write_state};

const CLASSES: usize = 10;
/// Image side: layer4 still sees a 2×2 map (the ImageNet stem divides by 32).
const SIDE: usize = 64;
const BATCHES: usize = 2;
const PER_BATCH: usize = 4;

fn device() -> Device {
    BackendKind::from_env().unwrap().device().unwrap()
}

/// Seeded random values for one tensor of a torchvision ResNet-18.
fn random_tensor(key: &str, shape: &[usize], rng: &mut Rng) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let uniform = |rng: &mut Rng, lo: f64, hi: f64| (lo + (hi - lo) * rng.next_f64()) as f32;
    let bound = 1.0 / 512f64.sqrt();
    (0..n)
        .map(|_| match key.rsplit('.').next().unwrap() {
            // conv: kaiming_normal_(mode="fan_out", nonlinearity="relu")
            "weight" if shape.len() == 4 => {
                let fan_out = (shape[0] * shape[2] * shape[3]) as f64;
                ((2.0 / fan_out).sqrt() * rng.normal()) as f32
            }
            // fc: nn.Linear's uniform(±1/√fan-in) for weight and bias
            "weight" | "bias" if key.starts_with("fc.") => uniform(rng, -bound, bound),
            // BN affine and running statistics
            "weight" => uniform(rng, 0.5, 1.5),
            "bias" | "running_mean" => (0.2 * rng.normal()) as f32,
            "running_var" => uniform(rng, 0.5, 2.0),
            other => panic!("unexpected tensor {key} ({other})"),
        })
        .collect()
}

/// A torchvision-format ResNet-18 with seeded random weights, imported from safetensors.
fn random_resnet18(seed: u64) -> ResNet {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resnet18.safetensors");
    let mut rng = Rng::new(seed);
    write_state(&path, &torchvision_resnet18(CLASSES), |k, s| {
        random_tensor(k, s, &mut rng)
    });
    let model = ResNetConfig::new(ResNetDepth::R18)
        .with_classes(CLASSES)
        .init(&device());
    load_torchvision(model, &path).unwrap()
}

/// A sum of a few low-frequency 2-D cosines with random amplitudes and phases.
fn smooth_field(rng: &mut Rng) -> Vec<f64> {
    let waves: Vec<[f64; 4]> = (0..4)
        .map(|_| {
            let (fx, fy) = (rng.below(4) as f64, rng.below(4) as f64);
            [
                fx,
                fy,
                rng.normal() / (1.0 + fx + fy),
                std::f64::consts::TAU * rng.next_f64(),
            ]
        })
        .collect();
    let side = SIDE as f64;
    (0..SIDE * SIDE)
        .map(|p| {
            let (y, x) = ((p / SIDE) as f64, (p % SIDE) as f64);
            waves
                .iter()
                .map(|[fx, fy, a, phase]| a * (std::f64::consts::TAU * (fx * x + fy * y) / side + phase).cos())
                .sum()
        })
        .collect()
}

/// Calibration batches `[PER_BATCH, 3, SIDE, SIDE]`: per image a shared luminance field
/// plus a weaker field and an offset per channel, plus a little pixel noise.
fn calibration(seed: u64) -> Vec<Tensor<4>> {
    let mut rng = Rng::new(seed);
    (0..BATCHES)
        .map(|_| {
            let mut pixels = Vec::with_capacity(PER_BATCH * 3 * SIDE * SIDE);
            for _ in 0..PER_BATCH {
                let luminance = smooth_field(&mut rng);
                for _ in 0..3 {
                    let offset = 0.5 * rng.normal();
                    let colour = smooth_field(&mut rng);
                    for (l, c) in luminance.iter().zip(&colour) {
                        pixels.push((offset + l + 0.4 * c + 0.05 * rng.normal()) as f32);
                    }
                }
            }
            Tensor::from_data(TensorData::new(pixels, [PER_BATCH, 3, SIDE, SIDE]), &device())
        })
        .collect()
}

/// Every layer's inputs in the dense (inference-mode) model, as host `tokens × fan-in`
/// matrices in the masks' fan-in order.
#[derive(Default)]
struct Inputs {
    x: BTreeMap<String, Vec<Tensor<2>>>,
}

impl InputSink for Inputs {
    fn wants(&mut self, _path: &str) -> bool {
        true
    }
    fn record(&mut self, path: &str, features: LayerFeatures) -> Result<(), SparseError> {
        let [groups, tokens, fan_in] = features.x.dims();
        assert_eq!(groups, 1, "{path}: ResNet-18 has no grouped convs");
        self.x
            .entry(path.to_string())
            .or_default()
            .push(features.x.reshape([tokens, fan_in]));
        Ok(())
    }
}

fn dense_inputs(model: &ResNet, images: &[Tensor<4>]) -> BTreeMap<String, Matrix> {
    let mut inputs = Inputs::default();
    let model = model.valid();
    for batch in images {
        model
            .forward_capture(batch.clone(), &mut Capture::new(&mut inputs))
            .unwrap();
    }
    inputs
        .x
        .into_iter()
        .map(|(path, parts)| {
            let x = Tensor::cat(parts, 0);
            let [tokens, fan_in] = x.dims();
            let values = host::to_vec(x).unwrap().into_iter().map(f64::from).collect();
            (path, Matrix::from_vec(tokens, fan_in, values).unwrap())
        })
        .collect()
}

/// Every float parameter's values by path.
#[derive(Default)]
struct Weights(BTreeMap<String, Vec<f32>>);

impl PathVisitor for Weights {
    fn visit<const D: usize>(&mut self, path: &ParamPath, param: &Param<Tensor<D>>) {
        self.0.insert(path.dotted(), host::to_vec(param.val()).unwrap());
    }
}

/// `‖W·Xᵀ‖²_F` for `w` (row-major, Burn layout) as `neurons × fan-in` rows.
fn output_energy(layer: &SparseLayer, w: &[f32], x: &Matrix) -> f64 {
    let rows = Matrix::from_fn(layer.neurons(), layer.fan_in(), |o, j| f64::from(w[layer.flat(o, j)]));
    rows.matmul(&x.transpose()).data().iter().map(|v| v * v).sum()
}

fn run(model: &ResNet, images: &[Tensor<4>], method: OneShotMethod) -> Vec<LayerReport> {
    let config = OneShotConfig::new(method)
        .with_sparsity(0.5)
        .with_mode(CaptureMode::OnePass)
        .with_report_error(method == OneShotMethod::SparseGpt);
    prune(model, images, &config).unwrap().layers
}

#[test]
fn resnet18_sparsegpt_le_wanda_le_magnitude_per_layer() {
    let model = random_resnet18(14);
    let images = calibration(15);
    let layers = discover(&model, &LayerFilter::new()).unwrap();
    assert_eq!(layers.len(), 21, "20 convs and the classifier");
    let inputs = dense_inputs(&model, &images);
    let mut dense = Weights::default();
    walk::visit(&model, &mut dense);
    let reports = [OneShotMethod::Magnitude, OneShotMethod::Wanda, OneShotMethod::SparseGpt]
        .map(|method| run(&model, &images, method));
    println!("layer: relative error of magnitude, Wanda, SparseGPT");
    let mut failures = Vec::new();
    assert!(reports.iter().all(|r| r.len() == layers.len()));
    for layer in &layers {
        let (w0, x) = (&dense.0[&layer.path], &inputs[&layer.path]);
        let energy = output_energy(layer, w0, x);
        let [m, w, s] = [0, 1, 2].map(|k| reports[k].iter().find(|l| l.path == layer.path).unwrap());
        let mut errors = [0.0; 3];
        for (e, l) in errors.iter_mut().zip([m, w, s]) {
            let diff: Vec<f32> = w0.iter().zip(&l.weights).map(|(a, b)| a - b).collect();
            *e = output_energy(layer, &diff, x) / energy;
        }
        // 50% of every layer; Wanda prunes ⌊fan-in/2⌋ per row, which falls short of it
        // only for an odd fan-in (conv1: 3·7·7 = 147)
        let pruned = |l: &LayerReport| l.mask.len() - l.mask.count_ones();
        let (neurons, fan_in) = (layer.neurons(), layer.fan_in());
        assert_eq!(pruned(m), neurons * fan_in / 2, "{} magnitude", layer.path);
        assert_eq!(pruned(w), neurons * (fan_in / 2), "{} Wanda", layer.path);
        assert_eq!(pruned(s), neurons * fan_in / 2, "{} SparseGPT", layer.path);
        for l in [m, w] {
            let (masked, kept) = (&l.weights, &l.mask);
            assert!((0..masked.len()).all(|k| masked[k] == if kept.get(k) { w0[k] } else { 0.0 }));
        }
        let reported = s.relative_error().unwrap();
        println!(
            "{:<28} {:.4e} {:.4e} {:.4e} (reported {reported:.4e})",
            layer.path, errors[0], errors[1], errors[2]
        );
        let [em, ew, es] = errors;
        // the pruner's error comes from an f32-accumulated Gram matrix, ours from `X`
        assert!(
            (reported - es).abs() <= 1e-3 * es,
            "{}: SparseGPT reports {reported}, measured {es}",
            layer.path
        );
        // no slack: at these seeds the closest pair (conv1: Wanda 6.70e-2, magnitude
        // 7.94e-2) is 16% apart, far beyond rounding
        if !(es <= ew && ew <= em) {
            failures.push(format!(
                "{}: magnitude {em:.4e}, Wanda {ew:.4e}, SparseGPT {es:.4e}",
                layer.path
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "SparseGPT ≤ Wanda ≤ magnitude fails on {failures:#?}"
    );
}
