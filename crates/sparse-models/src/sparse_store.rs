//! Serialisation hooks of the sparse twins: every twin writes its tensors to a
//! safetensors map with a small metadata JSON (architecture, structure and
//! per-layer format) and reads itself back, for the `export` command.

use burn::nn::pool::MaxPool2dConfig;
use burn::tensor::Device;
use serde_json::{Value, json};
use sparse_kernels::modules::TensorMap;
use sparse_kernels::{KernelError, SparseConv2d, SparseLinear};

use crate::sparse_cnn::SparseSmallCnn;
use crate::sparse_mlp::SparseMlp;
use crate::sparse_mobilenet::{SparseMobileNetV1, SparseSeparable};
use crate::sparse_resnet::{SparseBlock, SparseResNet, imagenet_maxpool};

/// A sparse twin that can be written to and read from safetensors bytes.
pub trait SparseStore: Sized {
    /// Architecture name written in the metadata.
    const ARCHITECTURE: &'static str;
    /// Writes the tensors into `map`; returns the structure and per-layer metadata.
    fn save_into(&self, map: &mut TensorMap) -> Result<Value, KernelError>;
    /// Rebuilds the twin from `map` and the metadata written by [`SparseStore::save_into`].
    fn load_from(map: &TensorMap, meta: &Value, device: &Device) -> Result<Self, KernelError>;

    /// The safetensors bytes of the twin.
    fn to_safetensors(&self) -> Result<Vec<u8>, KernelError> {
        let mut map = TensorMap::default();
        let meta = self.save_into(&mut map)?;
        map.to_bytes(&json!({"architecture": Self::ARCHITECTURE, "model": meta}))
    }

    /// Reads a twin from safetensors bytes onto `device`.
    fn from_safetensors(bytes: &[u8], device: &Device) -> Result<Self, KernelError> {
        let (map, meta) = TensorMap::from_bytes(bytes)?;
        let arch = meta.get("architecture").and_then(Value::as_str).unwrap_or("?");
        if arch != Self::ARCHITECTURE {
            return Err(KernelError::Serialization(format!(
                "the file holds a `{arch}`, not a `{}`; load it with the matching model type",
                Self::ARCHITECTURE
            )));
        }
        Self::load_from(&map, meta.get("model").unwrap_or(&Value::Null), device)
    }
}

fn layer<'a>(meta: &'a Value, name: &str) -> Result<&'a Value, KernelError> {
    meta.get("layers")
        .and_then(|l| l.get(name))
        .ok_or_else(|| KernelError::Serialization(format!("no metadata for layer `{name}`")))
}

fn save_conv(
    c: &SparseConv2d,
    name: &str,
    map: &mut TensorMap,
    layers: &mut serde_json::Map<String, Value>,
) -> Result<(), KernelError> {
    layers.insert(name.to_string(), c.save(name, map)?);
    Ok(())
}

fn save_linear(
    l: &SparseLinear,
    name: &str,
    map: &mut TensorMap,
    layers: &mut serde_json::Map<String, Value>,
) -> Result<(), KernelError> {
    layers.insert(name.to_string(), l.save(name, map)?);
    Ok(())
}

fn load_conv(name: &str, map: &TensorMap, meta: &Value, device: &Device) -> Result<SparseConv2d, KernelError> {
    SparseConv2d::load(name, map, layer(meta, name)?, device)
}

pub(crate) fn load_linear(
    name: &str,
    map: &TensorMap,
    meta: &Value,
    device: &Device,
) -> Result<SparseLinear, KernelError> {
    SparseLinear::load(name, map, layer(meta, name)?, device)
}

pub(crate) fn count(meta: &Value, key: &str) -> Result<usize, KernelError> {
    meta.get(key)
        .and_then(Value::as_u64)
        .map(|v| v as usize)
        .ok_or_else(|| KernelError::Serialization(format!("no `{key}` in the model metadata")))
}

impl SparseStore for SparseMlp {
    const ARCHITECTURE: &'static str = "mlp";

    fn save_into(&self, map: &mut TensorMap) -> Result<Value, KernelError> {
        let mut layers = serde_json::Map::new();
        for (i, l) in self.layers.iter().enumerate() {
            save_linear(l, &format!("layers.{i}"), map, &mut layers)?;
        }
        Ok(json!({"depth": self.layers.len(), "layers": layers}))
    }

    fn load_from(map: &TensorMap, meta: &Value, device: &Device) -> Result<Self, KernelError> {
        let layers = (0..count(meta, "depth")?)
            .map(|i| load_linear(&format!("layers.{i}"), map, meta, device))
            .collect::<Result<_, _>>()?;
        Ok(Self { layers })
    }
}

impl SparseStore for SparseSmallCnn {
    const ARCHITECTURE: &'static str = "small-cnn";

    fn save_into(&self, map: &mut TensorMap) -> Result<Value, KernelError> {
        let mut layers = serde_json::Map::new();
        save_conv(&self.conv1, "conv1", map, &mut layers)?;
        save_conv(&self.conv2, "conv2", map, &mut layers)?;
        save_linear(&self.fc1, "fc1", map, &mut layers)?;
        save_linear(&self.fc2, "fc2", map, &mut layers)?;
        Ok(json!({"pool": 2, "layers": layers}))
    }

    fn load_from(map: &TensorMap, meta: &Value, device: &Device) -> Result<Self, KernelError> {
        Ok(Self {
            conv1: load_conv("conv1", map, meta, device)?,
            conv2: load_conv("conv2", map, meta, device)?,
            fc1: load_linear("fc1", map, meta, device)?,
            fc2: load_linear("fc2", map, meta, device)?,
            pool: MaxPool2dConfig::new([2, 2]).init(),
        })
    }
}

impl SparseStore for SparseResNet {
    const ARCHITECTURE: &'static str = "resnet";

    fn save_into(&self, map: &mut TensorMap) -> Result<Value, KernelError> {
        let mut layers = serde_json::Map::new();
        save_conv(&self.conv1, "conv1", map, &mut layers)?;
        let mut stages = Vec::new();
        for (s, stage) in self.stages.iter().enumerate() {
            let mut blocks = Vec::new();
            for (b, block) in stage.iter().enumerate() {
                let p = format!("layer{}.{b}", s + 1);
                save_conv(&block.conv1, &format!("{p}.conv1"), map, &mut layers)?;
                save_conv(&block.conv2, &format!("{p}.conv2"), map, &mut layers)?;
                if let Some(c) = &block.conv3 {
                    save_conv(c, &format!("{p}.conv3"), map, &mut layers)?;
                }
                if let Some(c) = &block.downsample {
                    save_conv(c, &format!("{p}.downsample"), map, &mut layers)?;
                }
                blocks.push(json!({"conv3": block.conv3.is_some(), "downsample": block.downsample.is_some()}));
            }
            stages.push(Value::Array(blocks));
        }
        save_linear(&self.fc, "fc", map, &mut layers)?;
        Ok(json!({"maxpool": self.maxpool.is_some(), "stages": stages, "layers": layers}))
    }

    fn load_from(map: &TensorMap, meta: &Value, device: &Device) -> Result<Self, KernelError> {
        let bad = || KernelError::Serialization("ResNet metadata without `stages`".into());
        let mut stages = Vec::new();
        for (s, stage) in meta
            .get("stages")
            .and_then(Value::as_array)
            .ok_or_else(bad)?
            .iter()
            .enumerate()
        {
            let mut blocks = Vec::new();
            for (b, block) in stage.as_array().ok_or_else(bad)?.iter().enumerate() {
                let p = format!("layer{}.{b}", s + 1);
                let has = |k: &str| block.get(k).and_then(Value::as_bool).unwrap_or(false);
                blocks.push(SparseBlock {
                    conv1: load_conv(&format!("{p}.conv1"), map, meta, device)?,
                    conv2: load_conv(&format!("{p}.conv2"), map, meta, device)?,
                    conv3: if has("conv3") {
                        Some(load_conv(&format!("{p}.conv3"), map, meta, device)?)
                    } else {
                        None
                    },
                    downsample: if has("downsample") {
                        Some(load_conv(&format!("{p}.downsample"), map, meta, device)?)
                    } else {
                        None
                    },
                });
            }
            stages.push(blocks);
        }
        Ok(Self {
            conv1: load_conv("conv1", map, meta, device)?,
            maxpool: meta
                .get("maxpool")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .then(imagenet_maxpool),
            stages,
            fc: load_linear("fc", map, meta, device)?,
        })
    }
}

impl SparseStore for SparseMobileNetV1 {
    const ARCHITECTURE: &'static str = "mobilenet-v1";

    fn save_into(&self, map: &mut TensorMap) -> Result<Value, KernelError> {
        let mut layers = serde_json::Map::new();
        save_conv(&self.stem, "stem", map, &mut layers)?;
        for (i, b) in self.blocks.iter().enumerate() {
            save_conv(&b.dw, &format!("blocks.{i}.dw"), map, &mut layers)?;
            save_conv(&b.pw, &format!("blocks.{i}.pw"), map, &mut layers)?;
        }
        save_linear(&self.fc, "fc", map, &mut layers)?;
        Ok(json!({"blocks": self.blocks.len(), "layers": layers}))
    }

    fn load_from(map: &TensorMap, meta: &Value, device: &Device) -> Result<Self, KernelError> {
        let blocks = (0..count(meta, "blocks")?)
            .map(|i| {
                Ok(SparseSeparable {
                    dw: load_conv(&format!("blocks.{i}.dw"), map, meta, device)?,
                    pw: load_conv(&format!("blocks.{i}.pw"), map, meta, device)?,
                })
            })
            .collect::<Result<_, KernelError>>()?;
        Ok(Self {
            stem: load_conv("stem", map, meta, device)?,
            blocks,
            fc: load_linear("fc", map, meta, device)?,
        })
    }
}
