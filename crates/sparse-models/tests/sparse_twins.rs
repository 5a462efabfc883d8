//! The sparse twin of every reference model gives the logits of the masked
//! dense model (BN folded, ReLU fused, sparse kernels) on small inputs.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData};
use sparse_core::{Pattern, Rng, SparseLayer};
use sparse_models::sparse_store::SparseStore;
use sparse_models::to_sparse::{SparseMasks, SparseOptions, ToSparse};
use sparse_models::{Classifier, MlpConfig, MobileNetV1Config, ResNetConfig, ResNetDepth, SmallCnnConfig, Stem};

use crate::masking::{Prepare, rel_err, values};

/// Random masks for the model's sparse layers, then twin vs masked dense.
fn check<M>(model: M, input: [usize; 3], density: f64, pattern: Pattern, device: &Device)
where
    M: Classifier + ToSparse,
    M::Sparse: Twin + SparseStore,
{
    let mut rng = Rng::new(9);
    let layers: Vec<SparseLayer> = sparse_core::discover(&model, &model.sparsity_filter()).expect("layers");
    let mut masks = BTreeMap::new();
    for l in &layers {
        let desired = (density * l.numel() as f64) as usize;
        if let Ok(count) = pattern.feasible_count(l, desired.max(1)) {
            masks.insert(l.path.clone(), pattern.select(l, &rng.scores(l.numel()), count));
        }
    }
    assert!(!masks.is_empty());
    let model = model.map(&mut Prepare::with_norms(&masks, 3));
    let sparse = model
        .to_sparse(&SparseMasks(masks), &SparseOptions::default())
        .expect("twin");
    let x = Tensor::<4>::from_data(
        TensorData::new(
            (0..2 * input.iter().product::<usize>())
                .map(|_| rng.next_f32() - 0.5)
                .collect(),
            [2, input[0], input[1], input[2]],
        ),
        device,
    );
    let want = values(model.forward(x.clone()));
    let got = values(sparse.logits(x.clone()));
    let err = rel_err(&got, &want);
    assert!(err <= 1e-4, "relative error {err}");
    // the safetensors round trip gives the same logits, and a cut file is an error
    let bytes = sparse.to_safetensors().expect("save");
    let back = M::Sparse::from_safetensors(&bytes, device).expect("load");
    assert_eq!(values(back.logits(x)), got);
    assert!(M::Sparse::from_safetensors(&bytes[..bytes.len() / 2], device).is_err());
}

trait Twin {
    fn logits(&self, x: Tensor<4>) -> Tensor<2>;
}
impl Twin for sparse_models::sparse_mlp::SparseMlp {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x)
    }
}
impl Twin for sparse_models::sparse_cnn::SparseSmallCnn {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x)
    }
}
impl Twin for sparse_models::sparse_resnet::SparseResNet {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x)
    }
}
impl Twin for sparse_models::sparse_mobilenet::SparseMobileNetV1 {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x)
    }
}

#[test]
fn mlp_twin_matches_the_masked_model() {
    let dev = Device::flex();
    let m = MlpConfig::new()
        .with_input(3 * 8 * 8)
        .with_hidden(vec![40, 24])
        .init(&dev);
    check(m, [3, 8, 8], 0.2, Pattern::Unstructured, &dev);
    let m = MlpConfig::new()
        .with_input(3 * 8 * 8)
        .with_hidden(vec![40, 24])
        .init(&dev);
    check(m, [3, 8, 8], 0.2, Pattern::ConstantFanIn, &dev);
}

#[test]
fn small_cnn_twin_matches_the_masked_model() {
    let dev = Device::flex();
    let m = SmallCnnConfig::new()
        .with_input([1, 12, 12])
        .with_channels([8, 16])
        .with_hidden(32)
        .init(&dev);
    check(m, [1, 12, 12], 0.3, Pattern::Unstructured, &dev);
}

#[test]
fn resnet_twins_match_the_masked_models() {
    let dev = Device::flex();
    for (depth, stem, hw) in [
        (ResNetDepth::R18, Stem::Cifar, 8),
        (ResNetDepth::R34, Stem::Cifar, 8),
        (ResNetDepth::R50, Stem::ImageNet, 32),
    ] {
        let m = ResNetConfig::new(depth).with_classes(10).with_stem(stem).init(&dev);
        check(m, [3, hw, hw], 0.1, Pattern::Unstructured, &dev);
    }
}

#[test]
fn mobilenet_twin_matches_the_masked_model() {
    let dev = Device::flex();
    let m = MobileNetV1Config::new()
        .with_width(0.25)
        .with_classes(10)
        .init(&dev)
        .expect("model");
    check(m, [3, 32, 32], 0.1, Pattern::Unstructured, &dev);
}

#[test]
fn a_file_of_another_architecture_is_refused() {
    let dev = Device::flex();
    let m = MlpConfig::new().with_input(12).with_hidden(vec![6]).init(&dev);
    let bytes = m
        .to_sparse(&SparseMasks::default(), &SparseOptions::default())
        .unwrap()
        .to_safetensors()
        .unwrap();
    let err = sparse_models::sparse_resnet::SparseResNet::from_safetensors(&bytes, &dev).unwrap_err();
    assert!(err.to_string().contains("mlp"), "{err}");
}
