//! The deployable model file as a library user sees it: written, read back
//! with `ExportedModel::from_bytes` (no training stack), same logits as the
//! masked dense model; the dense twin and the per-layer input shapes.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use sparse_core::{Mask, SparseLayer};

use crate::masking::{Prepare, random_masks, rel_err, values};
use sparse_models::to_sparse::{SparseMasks, SparseOptions};
use sparse_models::{
    Classifier, ExportError, ExportInfo, ExportedModel, FormatKind, MlpConfig, ResNetConfig, ResNetDepth, Stem,
};

/// A random unstructured mask of `density` for every sparse layer of `model`.
fn masks<M: Classifier>(model: &M, density: f64) -> BTreeMap<String, Mask> {
    let layers: Vec<SparseLayer> = sparse_core::discover(model, &model.sparsity_filter()).expect("layers");
    random_masks(&layers, density, 5)
}

fn info(input: [usize; 3], format: FormatKind) -> ExportInfo {
    ExportInfo {
        model: "mlp".into(),
        config: serde_json::json!({"name": "mlp"}),
        input,
        classes: (0..10).map(|c| format!("class {c}")).collect(),
        mean: vec![0.5; input[0]],
        std: vec![0.25; input[0]],
        format: format.name().into(),
        dataset: "test".into(),
        method: "static".into(),
        test_accuracy: 0.5,
        test_loss: 1.0,
        sparsity: 0.9,
        nonzeros: 1,
    }
}

#[test]
fn a_written_file_reads_back_to_the_masked_dense_logits() {
    let device = Device::flex();
    let model = MlpConfig::new().init(&device);
    let masks = masks(&model, 0.1);
    let model = model.map(&mut Prepare::masks(&masks));
    let pixels: Vec<u8> = (0..3 * 784).map(|i| (i * 37 % 256) as u8).collect();
    let mut sizes = BTreeMap::new();
    for format in [FormatKind::Auto, FormatKind::Csr, FormatKind::Dense] {
        let options = SparseOptions {
            format,
            ..SparseOptions::default()
        };
        let twin = model
            .to_sparse_model(&SparseMasks(masks.clone()), &options)
            .expect("twin");
        let exported = ExportedModel {
            info: info([1, 28, 28], format),
            model: twin,
        };
        let bytes = exported.to_bytes().expect("write");
        sizes.insert(format.name(), bytes.len());
        // cut anywhere: an error, never a panic; damaged bytes: never a panic
        for cut in (0..bytes.len()).step_by(bytes.len() / 41 + 1) {
            assert!(
                ExportedModel::from_bytes(&bytes[..cut], &device).is_err(),
                "cut at {cut}"
            );
        }
        for at in (0..bytes.len()).step_by(bytes.len() / 23 + 1) {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x5a;
            let _ = ExportedModel::from_bytes(&damaged, &device);
        }
        let back = ExportedModel::from_bytes(&bytes, &device).expect("read");
        assert_eq!(back.info, exported.info);
        assert_eq!(back.layer_formats(), exported.layer_formats());
        let x = back.normalise(&pixels, 3, &device).expect("pixels");
        // the normalisation is (p/255 − mean)/std, as in training
        let first = sparse_core::host::to_vec(x.clone().flatten::<1>(0, 3)).expect("x")[1];
        assert_eq!(first, (37.0f32 / 255.0 - 0.5) / 0.25);
        let got = values(back.forward(x.clone()).expect("forward"));
        assert_eq!(got, values(exported.model.forward(x.clone())), "{}", format.name());
        let want = values(model.forward(x));
        assert!(
            rel_err(&got, &want) <= 1e-5,
            "{}: {}",
            format.name(),
            rel_err(&got, &want)
        );
        // another image shape is an error, not a panic
        let wrong = Tensor::<4>::zeros([1, 3, 28, 28], &device);
        assert!(matches!(back.forward(wrong), Err(ExportError::Input(_))));
    }
    // packed CSR: 10% of the values plus one bit per weight, against 4 bytes per weight
    let ratio = sizes["csr"] as f64 / sizes["dense"] as f64;
    assert!(ratio < 0.14, "{sizes:?}");
    assert!(sizes["auto"] <= sizes["csr"] + 4 * 1010, "{sizes:?}");
}

#[test]
fn the_dense_twin_and_the_layer_shapes_of_a_cifar_resnet() {
    let device = Device::flex();
    let model = ResNetConfig::new(ResNetDepth::R18)
        .with_classes(10)
        .with_stem(Stem::Cifar)
        .init(&device);
    let masks = masks(&model, 0.1);
    let twin = model
        .to_sparse_model(&SparseMasks(masks), &SparseOptions::default())
        .expect("twin");
    let dense = twin.to_dense().expect("dense twin");
    assert!(dense.layers().iter().all(|l| l.format() == "dense"));
    let x = Tensor::<4>::from_data(
        TensorData::new(
            (0..3 * 32 * 32).map(|i| (i % 17) as f32 / 17.0).collect(),
            [1, 3, 32, 32],
        ),
        &device,
    );
    let err = rel_err(&values(dense.forward(x.clone())), &values(twin.forward(x)));
    assert!(err <= 1e-4, "{err}");
    // CIFAR ResNet-18: 32×32 through layer1, 16 in layer2, 8 in layer3, 4 in layer4
    let shapes: BTreeMap<String, Vec<usize>> = twin
        .layers()
        .into_iter()
        .map(|l| l.name)
        .zip(twin.layer_inputs([3, 32, 32]))
        .collect();
    assert_eq!(shapes["conv1"], [3, 32, 32]);
    assert_eq!(shapes["layer1.1.conv2"], [64, 32, 32]);
    assert_eq!(shapes["layer2.0.downsample"], [64, 32, 32]);
    assert_eq!(shapes["layer2.0.conv2"], [128, 16, 16]);
    assert_eq!(shapes["layer4.0.conv1"], [256, 8, 8]);
    assert_eq!(shapes["layer4.1.conv2"], [512, 4, 4]);
    assert_eq!(shapes["fc"], [512]);
}
