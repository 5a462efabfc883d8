//! Importing torchvision-format ResNet weights from safetensors.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor};
use sparse_core::BackendKind;
use sparse_models::import::load_torchvision;
use sparse_models::{ModelError, ResNet, ResNetConfig, ResNetDepth};

use crate::torchvision;
use torchvision::{torchvision_resnet18, write_state};

fn device() -> Device {
    BackendKind::from_env().unwrap().device().unwrap()
}

/// A known value for element `i` of tensor `key`.
fn value(key: &str, i: usize) -> f32 {
    let h = key
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    (h % 1000) as f32 + i as f32 * 1e-3
}

fn write(path: &std::path::Path, keys: &[(String, Vec<usize>)]) -> BTreeMap<String, Vec<f32>> {
    write_state(path, keys, |k, shape| {
        (0..shape.iter().product()).map(|i| value(k, i)).collect()
    })
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn model() -> ResNet {
    ResNetConfig::new(ResNetDepth::R18).with_classes(10).init(&device())
}

#[test]
fn every_tensor_lands_in_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r18.safetensors");
    let values = write(&path, &torchvision_resnet18(10));
    let m = load_torchvision(model(), &path).unwrap();

    assert_eq!(host(m.conv1.weight.val()), values["conv1.weight"]);
    assert_eq!(host(m.bn1.gamma.val()), values["bn1.weight"]);
    assert_eq!(host(m.bn1.beta.val()), values["bn1.bias"]);
    assert_eq!(host(m.bn1.running_mean.value()), values["bn1.running_mean"]);
    assert_eq!(host(m.bn1.running_var.value()), values["bn1.running_var"]);
    let mut checked = 5;
    let bn_ok = |bn: &burn::nn::BatchNorm, p: &str| {
        assert_eq!(host(bn.gamma.val()), values[&format!("{p}.weight")], "{p}.weight");
        assert_eq!(host(bn.beta.val()), values[&format!("{p}.bias")], "{p}.bias");
        assert_eq!(
            host(bn.running_mean.value()),
            values[&format!("{p}.running_mean")],
            "{p}"
        );
        assert_eq!(host(bn.running_var.value()), values[&format!("{p}.running_var")], "{p}");
        4
    };
    for (stage, blocks) in [&m.layer1, &m.layer2, &m.layer3, &m.layer4].into_iter().enumerate() {
        assert_eq!(blocks.len(), 2);
        for (b, block) in blocks.iter().enumerate() {
            let p = format!("layer{}.{b}", stage + 1);
            // conv weights: PyTorch and Burn both [out, in, kh, kw]
            assert_eq!(
                host(block.conv1.weight.val()),
                values[&format!("{p}.conv1.weight")],
                "{p}"
            );
            assert_eq!(
                host(block.conv2.weight.val()),
                values[&format!("{p}.conv2.weight")],
                "{p}"
            );
            checked += 2 + bn_ok(&block.bn1, &format!("{p}.bn1")) + bn_ok(&block.bn2, &format!("{p}.bn2"));
            assert!(block.conv3.is_none() && block.bn3.is_none());
            match &block.downsample {
                Some((conv, bn)) => {
                    assert_eq!(
                        host(conv.weight.val()),
                        values[&format!("{p}.downsample.0.weight")],
                        "{p}"
                    );
                    checked += 1 + bn_ok(bn, &format!("{p}.downsample.1"));
                }
                None => assert!(b > 0 || stage == 0, "{p} lost its shortcut"),
            }
        }
    }
    checked += 2; // fc.weight, fc.bias below
    // every float tensor of the file was compared
    assert_eq!(checked, values.len());
    assert_eq!(host(m.fc.bias.as_ref().unwrap().val()), values["fc.bias"]);
    // Linear: PyTorch [out, in] -> Burn [in, out]
    let fc = host(m.fc.weight.val());
    let torch = &values["fc.weight"];
    for o in 0..10 {
        for i in 0..512 {
            assert_eq!(fc[i * 10 + o], torch[o * 512 + i]);
        }
    }
}

#[test]
fn a_missing_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r18.safetensors");
    let keys: Vec<_> = torchvision_resnet18(10)
        .into_iter()
        .filter(|(k, _)| k != "layer4.1.bn2.running_mean")
        .collect();
    write(&path, &keys);
    let err = load_torchvision(model(), &path).unwrap_err();
    assert!(matches!(err, ModelError::MissingKey { .. }), "{err}");
    assert!(err.to_string().contains("layer4.1.bn2.running_mean"), "{err}");
}

#[test]
fn a_misshaped_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r18.safetensors");
    // a 1000-class checkpoint into a 10-class model
    write(&path, &torchvision_resnet18(1000));
    let err = load_torchvision(model(), &path).unwrap_err();
    assert!(matches!(err, ModelError::ShapeMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains("fc.weight") && err.to_string().contains("1000"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.safetensors");
    std::fs::write(&path, b"junk").unwrap();
    let err = load_torchvision(model(), &path).unwrap_err();
    assert!(err.to_string().contains("junk.safetensors"), "{err}");
}
