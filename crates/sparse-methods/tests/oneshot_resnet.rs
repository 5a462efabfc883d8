//! Issue 14's check on a torchvision-format ResNet-18 (sparse-models, random weights,
//! CIFAR stem, 3×32×32 inputs): at 50% the layer-wise reconstruction error
//! `‖WX − ŴX‖²` of SparseGPT ≤ Wanda ≤ magnitude, per layer and summed.
//!
//! In one-pass mode every method sees the same (dense) inputs of each layer, so the
//! per-layer comparison is like for like; in sequential mode each method sees the
//! inputs its own earlier layers produce, so only the sum is compared there.

use burn::tensor::{Device, Distribution, Tensor};
use sparse_core::BackendKind;
use sparse_methods::oneshot::{CaptureMode, OneShotConfig, OneShotMethod, OneShotOutcome, prune};
use sparse_models::{ResNet, ResNetConfig, ResNetDepth, Stem};

fn device() -> Device {
    let device = BackendKind::from_env().unwrap().device().unwrap();
    device.seed(14);
    device
}

fn setup() -> (ResNet, Vec<Tensor<4>>) {
    let d = device();
    let model = ResNetConfig::new(ResNetDepth::R18)
        .with_stem(Stem::Cifar)
        .with_classes(10)
        .init(&d);
    let images = (0..2)
        .map(|_| Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &d))
        .collect();
    (model, images)
}

fn run(model: &ResNet, images: &[Tensor<4>], method: OneShotMethod, mode: CaptureMode) -> OneShotOutcome {
    let config = OneShotConfig::new(method).with_sparsity(0.5).with_mode(mode);
    prune(model, images, &config).unwrap()
}

fn table(label: &str, runs: &[&OneShotOutcome; 3]) {
    eprintln!("{label}: relative error ‖WX−ŴX‖²/‖WX‖² per layer (magnitude, Wanda, SparseGPT)");
    for i in 0..runs[0].layers.len() {
        let r = |k: usize| runs[k].layers[i].relative_error().unwrap();
        eprintln!("  {:<28} {:.4} {:.4} {:.4}", runs[0].layers[i].path, r(0), r(1), r(2));
    }
    let t = |k: usize| runs[k].total_error().unwrap();
    eprintln!("  total error {:.4e} {:.4e} {:.4e}", t(0), t(1), t(2));
}

#[test]
fn resnet18_sparsegpt_le_wanda_le_magnitude_at_half_sparsity() {
    let (model, images) = setup();
    let [mag, wanda, sgpt] =
        [OneShotMethod::Magnitude, OneShotMethod::Wanda, OneShotMethod::SparseGpt].map(|m| run(&model, &images, m, CaptureMode::OnePass));
    table("one pass", &[&mag, &wanda, &sgpt]);
    assert_eq!(sgpt.layers.len(), 21);
    for ((m, w), s) in mag.layers.iter().zip(&wanda.layers).zip(&sgpt.layers) {
        assert!((s.sparsity() - 0.5).abs() < 0.01 && (w.sparsity() - 0.5).abs() < 0.01, "{}", s.path);
        let path = &s.path;
        let (m, w, s) = (m.error.unwrap(), w.error.unwrap(), s.error.unwrap());
        assert!(s <= w && w <= m, "{path}: SparseGPT {s:.4e}, Wanda {w:.4e}, magnitude {m:.4e}");
    }
    let [m, w, s] = [&mag, &wanda, &sgpt].map(|o| o.total_error().unwrap());
    assert!(s <= w && w <= m);
}

#[test]
fn resnet18_sequential_totals_keep_the_order() {
    let (model, images) = setup();
    let [mag, wanda, sgpt] = [OneShotMethod::Magnitude, OneShotMethod::Wanda, OneShotMethod::SparseGpt]
        .map(|m| run(&model, &images, m, CaptureMode::Sequential));
    table("sequential", &[&mag, &wanda, &sgpt]);
    let [m, w, s] = [&mag, &wanda, &sgpt].map(|o| o.total_error().unwrap());
    assert!(s <= w && w <= m, "SparseGPT {s:.4e}, Wanda {w:.4e}, magnitude {m:.4e}");
}
