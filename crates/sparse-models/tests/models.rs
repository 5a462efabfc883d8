//! Reference models: published parameter counts and multiply-adds, forward
//! shapes, trainability, default sparsity policies and ERK totals.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use sparse_core::{BackendKind, Plan, SparsityConfig, discover};
use sparse_models::*;

fn device() -> Device {
    BackendKind::from_env().unwrap().device().unwrap().autodiff()
}

fn resnet(depth: ResNetDepth) -> ResNet {
    ResNetConfig::new(depth).init(&device())
}

#[test]
fn parameter_counts_match_the_published_ones() {
    assert_eq!(count_params(&resnet(ResNetDepth::R18)), 11_689_512);
    assert_eq!(count_params(&resnet(ResNetDepth::R34)), 21_797_672);
    assert_eq!(count_params(&resnet(ResNetDepth::R50)), 25_557_032);
    let mobilenet = MobileNetV1Config::new().init(&device()).unwrap();
    assert_eq!(count_params(&mobilenet), 4_231_976);
    let mlp = MlpConfig::new().init(&device());
    assert_eq!(count_params(&mlp), 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10);
}

fn total_macs<M: Classifier>(model: &M, input: [usize; 3]) -> u64 {
    model_macs(model, input, &BTreeMap::new())
        .unwrap()
        .iter()
        .map(|l| l.dense)
        .sum()
}

#[test]
fn multiply_adds_at_224_match_the_published_ones() {
    let r50 = total_macs(&resnet(ResNetDepth::R50), [3, 224, 224]) as f64;
    assert!((r50 / 4.1e9 - 1.0).abs() < 0.02, "ResNet-50: {r50}");
    let mobilenet = total_macs(&MobileNetV1Config::new().init(&device()).unwrap(), [3, 224, 224]) as f64;
    assert!((mobilenet / 569e6 - 1.0).abs() < 0.02, "MobileNetV1: {mobilenet}");
}

#[test]
fn sparse_macs_scale_with_the_masks() {
    let model = MlpConfig::new().init(&device());
    let active = BTreeMap::from([("layers.0.weight".to_string(), 23_520)]);
    let macs = model_macs(&model, [1, 28, 28], &active).unwrap();
    assert_eq!(macs[0].dense, 235_200);
    assert_eq!(macs[0].sparse, 23_520);
    assert_eq!(macs[1].sparse, macs[1].dense);
}

fn logits_shape<M: Classifier>(model: &M, input: [usize; 4]) -> [usize; 2] {
    let x = Tensor::<4>::random(input, Distribution::Normal(0.0, 1.0), &device());
    model.forward(x).dims()
}

#[test]
fn forward_shapes() {
    let d = device();
    let mlp = MlpConfig::new().init(&d);
    assert_eq!(logits_shape(&mlp, [2, 1, 28, 28]), [2, 10]);
    let mlp3 = MlpConfig::new().with_input(3 * 32 * 32).init(&d);
    assert_eq!(logits_shape(&mlp3, [2, 3, 32, 32]), [2, 10]);
    for input in [[1, 28, 28], [3, 32, 32]] {
        let cnn = SmallCnnConfig::new().with_input(input).init(&d);
        assert_eq!(logits_shape(&cnn, [2, input[0], input[1], input[2]]), [2, 10]);
        for depth in [ResNetDepth::R18, ResNetDepth::R34, ResNetDepth::R50] {
            for stem in [Stem::Cifar, Stem::ImageNet] {
                let r = ResNetConfig::new(depth)
                    .with_classes(10)
                    .with_in_channels(input[0])
                    .with_stem(stem)
                    .init(&d);
                assert_eq!(
                    logits_shape(&r, [2, input[0], input[1], input[2]]),
                    [2, 10],
                    "{depth:?} {stem:?}"
                );
            }
        }
        for width in [0.25, 0.5, 0.75, 1.0] {
            let m = MobileNetV1Config::new()
                .with_width(width)
                .with_classes(10)
                .with_in_channels(input[0])
                .with_small_input(true)
                .init(&d)
                .unwrap();
            assert_eq!(
                logits_shape(&m, [2, input[0], input[1], input[2]]),
                [2, 10],
                "width {width}"
            );
        }
    }
    // ImageNet size at batch 1: every model
    let mlp224 = MlpConfig::new().with_input(3 * 224 * 224).init(&d);
    assert_eq!(logits_shape(&mlp224, [1, 3, 224, 224]), [1, 10]);
    let cnn224 = SmallCnnConfig::new().with_input([3, 224, 224]).init(&d);
    assert_eq!(logits_shape(&cnn224, [1, 3, 224, 224]), [1, 10]);
    for depth in [ResNetDepth::R18, ResNetDepth::R34] {
        assert_eq!(logits_shape(&resnet(depth), [1, 3, 224, 224]), [1, 1000], "{depth:?}");
    }
    // ImageNet size: ResNet-50 and MobileNetV1 at batch 1
    assert_eq!(logits_shape(&resnet(ResNetDepth::R50), [1, 3, 224, 224]), [1, 1000]);
    let m = MobileNetV1Config::new().init(&d).unwrap();
    assert_eq!(logits_shape(&m, [1, 3, 224, 224]), [1, 1000]);
}

fn loss_goes_down<M: Classifier + Module>(mut model: M, input: [usize; 4], steps: usize, lr: f64) {
    let d = device();
    let x = Tensor::<4>::random(input, Distribution::Normal(0.0, 1.0), &d);
    let labels: Vec<i64> = (0..input[0] as i64).map(|i| i % 3).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [input[0]]), &d);
    let loss_fn = CrossEntropyLossConfig::new().init(&d);
    let mut optim = SgdConfig::new().init();
    let first = loss_fn
        .forward(model.forward(x.clone()), y.clone())
        .into_scalar::<f32>();
    for _ in 0..steps {
        let loss = loss_fn.forward(model.forward(x.clone()), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr, model, grads);
    }
    let last = loss_fn.forward(model.forward(x), y).into_scalar::<f32>();
    assert!(last < first * 0.9, "loss {first} -> {last}");
}

#[test]
fn a_few_steps_reduce_the_loss() {
    let d = device();
    loss_goes_down(MlpConfig::new().with_input(3 * 8 * 8).init(&d), [6, 3, 8, 8], 10, 0.05);
    loss_goes_down(
        SmallCnnConfig::new().with_input([3, 8, 8]).init(&d),
        [6, 3, 8, 8],
        10,
        0.05,
    );
    let r = ResNetConfig::new(ResNetDepth::R18)
        .with_classes(3)
        .with_stem(Stem::Cifar)
        .init(&d);
    loss_goes_down(r, [6, 3, 8, 8], 8, 0.02);
    let m = MobileNetV1Config::new()
        .with_width(0.25)
        .with_classes(3)
        .with_small_input(true)
        .init(&d)
        .unwrap();
    loss_goes_down(m, [6, 3, 16, 16], 20, 0.1);
}

fn sparse_paths<M: Classifier>(model: &M) -> Vec<String> {
    discover(model, &model.sparsity_filter())
        .unwrap()
        .into_iter()
        .map(|l| l.path)
        .collect()
}

#[test]
fn default_sparsity_policies() {
    let r50 = resnet(ResNetDepth::R50);
    let paths = sparse_paths(&r50);
    assert_eq!(paths.len(), 53 + 1, "every conv (incl. shortcuts) and the classifier");
    assert_eq!(paths[0], "conv1.weight");
    assert!(paths.contains(&"layer3.0.downsample.0.weight".to_string()));
    assert_eq!(paths.last().unwrap(), "fc.weight");
    let dense_first = ResNetConfig::new(ResNetDepth::R50)
        .with_dense_first_layer(true)
        .init(&device());
    assert!(!sparse_paths(&dense_first).contains(&"conv1.weight".to_string()));

    let m = MobileNetV1Config::new().init(&device()).unwrap();
    let paths = sparse_paths(&m);
    let expected: Vec<String> = (0..13)
        .map(|i| format!("blocks.{i}.pw.weight"))
        .chain(std::iter::once("fc.weight".to_string()))
        .collect();
    assert_eq!(
        paths, expected,
        "pointwise convs and classifier; stem and depthwise dense"
    );
}

#[test]
fn erk_over_resnet50_hits_the_target_density() {
    let r50 = resnet(ResNetDepth::R50);
    let layers = discover(&r50, &r50.sparsity_filter()).unwrap();
    let total: usize = layers.iter().map(|l| l.numel()).sum();
    for sparsity in [0.8, 0.9] {
        let plan = Plan::new(layers.clone(), SparsityConfig::new().with_sparsity(sparsity)).unwrap();
        let kept: usize = plan.counts(sparsity).unwrap().iter().sum();
        assert_eq!(kept, ((1.0 - sparsity) * total as f64).round() as usize);
    }
}
