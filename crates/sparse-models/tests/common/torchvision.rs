//! torchvision-format ResNet-18 state dicts for tests: the key names and shapes written
//! out independently of the importer, and a safetensors writer.
//!
//! Shared by `sparse-models/tests/import.rs` and `sparse-methods/tests/oneshot_resnet18.rs`
//! (through `#[path]`, as neither test crate can depend on the other's tests).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::Dtype;
use safetensors::tensor::TensorView;

/// torchvision's ResNet-18 state-dict keys and shapes (PyTorch layout), in its order.
pub fn torchvision_resnet18(classes: usize) -> Vec<(String, Vec<usize>)> {
    let mut keys = vec![("conv1.weight".to_string(), vec![64, 3, 7, 7])];
    let bn = |keys: &mut Vec<(String, Vec<usize>)>, p: &str, c: usize| {
        for k in ["weight", "bias", "running_mean", "running_var"] {
            keys.push((format!("{p}.{k}"), vec![c]));
        }
        keys.push((format!("{p}.num_batches_tracked"), vec![]));
    };
    bn(&mut keys, "bn1", 64);
    let mut in_ch = 64;
    for (stage, width) in [64, 128, 256, 512].into_iter().enumerate() {
        for b in 0..2 {
            let p = format!("layer{}.{b}", stage + 1);
            let first_in = if b == 0 { in_ch } else { width };
            keys.push((format!("{p}.conv1.weight"), vec![width, first_in, 3, 3]));
            bn(&mut keys, &format!("{p}.bn1"), width);
            keys.push((format!("{p}.conv2.weight"), vec![width, width, 3, 3]));
            bn(&mut keys, &format!("{p}.bn2"), width);
            if b == 0 && stage > 0 {
                keys.push((format!("{p}.downsample.0.weight"), vec![width, in_ch, 1, 1]));
                bn(&mut keys, &format!("{p}.downsample.1"), width);
            }
        }
        in_ch = width;
    }
    keys.push(("fc.weight".to_string(), vec![classes, 512]));
    keys.push(("fc.bias".to_string(), vec![classes]));
    keys
}

/// Writes a state dict with `keys` to `path`: every `num_batches_tracked` as the i64
/// scalar 5, every other key as f32 with the values `values(key, shape)` (row-major,
/// `shape.iter().product()` of them). Returns the f32 tensors written, by key.
pub fn write_state(
    path: &Path,
    keys: &[(String, Vec<usize>)],
    mut values: impl FnMut(&str, &[usize]) -> Vec<f32>,
) -> BTreeMap<String, Vec<f32>> {
    let mut written = BTreeMap::new();
    let mut blobs = Vec::new();
    for (k, shape) in keys {
        if k.ends_with("num_batches_tracked") {
            blobs.push((k.clone(), Dtype::I64, shape.clone(), 5i64.to_le_bytes().to_vec()));
            continue;
        }
        let v = values(k, shape);
        assert_eq!(
            v.len(),
            shape.iter().product::<usize>(),
            "{k}: values do not fit {shape:?}"
        );
        blobs.push((
            k.clone(),
            Dtype::F32,
            shape.clone(),
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ));
        written.insert(k.clone(), v);
    }
    let views: Vec<(String, TensorView<'_>)> = blobs
        .iter()
        .map(|(k, d, s, b)| (k.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
    written
}
