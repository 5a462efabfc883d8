//! The deployable model file: one self-describing safetensors file holding a
//! sparse twin (values, biases and index arrays) and, in its metadata, all it
//! takes to run it without the training stack: the format version, the
//! architecture and its structure (enough to rebuild the twin), every layer's
//! format and geometry, the input normalisation and image shape, the class
//! names, and what the run recorded (test accuracy, sparsity).
//!
//! ```ignore
//! let bytes = std::fs::read("model.safetensors")?;
//! let model = ExportedModel::from_bytes(&bytes, &Device::flex())?;
//! let logits = model.forward(model.normalise(&pixels, batch)?)?;
//! ```

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sparse_kernels::modules::TensorMap;
use sparse_kernels::modules::store::METADATA_KEY;
use sparse_kernels::{FormatKind, KernelError, SparseConv2d, SparseLinear};

use crate::sparse_cnn::SparseSmallCnn;
use crate::sparse_mlp::SparseMlp;
use crate::sparse_mobilenet::SparseMobileNetV1;
use crate::sparse_resnet::SparseResNet;
use crate::sparse_store::SparseStore;

/// The name of the file format, written in the metadata.
pub const FORMAT_NAME: &str = "sparseburn-model";
/// The newest format version this build writes and reads.
pub const FORMAT_VERSION: u64 = 1;

/// A model file that cannot be read or used.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Not a sparseburn model file at all.
    #[error("not a sparseburn model file ({0}); export one with `sparseburn export RUN_DIR -o FILE`")]
    NotAModel(String),
    /// Written by a newer sparseburn.
    #[error(
        "the model file has format version {found}, newer than this sparseburn reads (up to {FORMAT_VERSION}); upgrade sparseburn, or export the run again with this version"
    )]
    NewerVersion {
        /// The file's version.
        found: u64,
    },
    /// Damaged: cut short, or a tensor or index that does not fit.
    #[error("corrupt or truncated model file: {0}; export the run again")]
    Corrupt(String),
    /// Images or a dataset that do not fit the model.
    #[error("{0}")]
    Input(String),
    /// A layer that cannot be converted (e.g. a format that does not fit its mask).
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

/// One of the sparse twins of the reference models.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one model per program: its size does not matter
pub enum SparseModel {
    /// LeNet-300-100.
    Mlp(SparseMlp),
    /// The small CNN.
    Cnn(SparseSmallCnn),
    /// ResNet 18/34/50.
    ResNet(SparseResNet),
    /// MobileNetV1.
    MobileNetV1(SparseMobileNetV1),
}

impl SparseModel {
    /// The architectures of the image models, as written in a file.
    pub const ARCHITECTURES: [&'static str; 4] = [
        SparseMlp::ARCHITECTURE,
        SparseSmallCnn::ARCHITECTURE,
        SparseResNet::ARCHITECTURE,
        SparseMobileNetV1::ARCHITECTURE,
    ];

    /// Logits `[B, classes]` for normalised images `[B, C, H, W]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            Self::Mlp(m) => m.forward(images),
            Self::Cnn(m) => m.forward(images),
            Self::ResNet(m) => m.forward(images),
            Self::MobileNetV1(m) => m.forward(images),
        }
    }

    /// The architecture name written in the file.
    pub fn architecture(&self) -> &'static str {
        match self {
            Self::Mlp(_) => SparseMlp::ARCHITECTURE,
            Self::Cnn(_) => SparseSmallCnn::ARCHITECTURE,
            Self::ResNet(_) => SparseResNet::ARCHITECTURE,
            Self::MobileNetV1(_) => SparseMobileNetV1::ARCHITECTURE,
        }
    }

    fn save_into(&self, map: &mut TensorMap) -> Result<Value, KernelError> {
        match self {
            Self::Mlp(m) => m.save_into(map),
            Self::Cnn(m) => m.save_into(map),
            Self::ResNet(m) => m.save_into(map),
            Self::MobileNetV1(m) => m.save_into(map),
        }
    }

    fn load(architecture: &str, map: &TensorMap, meta: &Value, device: &Device) -> Result<Self, ExportError> {
        Ok(match architecture {
            SparseMlp::ARCHITECTURE => Self::Mlp(SparseMlp::load_from(map, meta, device)?),
            SparseSmallCnn::ARCHITECTURE => Self::Cnn(SparseSmallCnn::load_from(map, meta, device)?),
            SparseResNet::ARCHITECTURE => Self::ResNet(SparseResNet::load_from(map, meta, device)?),
            SparseMobileNetV1::ARCHITECTURE => Self::MobileNetV1(SparseMobileNetV1::load_from(map, meta, device)?),
            other => {
                return Err(ExportError::Corrupt(format!(
                    "unknown architecture `{other}` (known: mlp, small-cnn, resnet, mobilenet-v1)"
                )));
            }
        })
    }

    /// Every conv and linear layer, by name, in forward order.
    pub fn layers(&self) -> Vec<Layer<'_>> {
        let conv = |name: String, c| Layer {
            name,
            layer: LayerRef::Conv(c),
        };
        let linear = |name: &str, l| Layer {
            name: name.to_string(),
            layer: LayerRef::Linear(l),
        };
        let mut out = Vec::new();
        match self {
            Self::Mlp(m) => {
                for (i, l) in m.layers.iter().enumerate() {
                    out.push(linear(&format!("layers.{i}"), l));
                }
            }
            Self::Cnn(m) => {
                out.push(conv("conv1".into(), &m.conv1));
                out.push(conv("conv2".into(), &m.conv2));
                out.push(linear("fc1", &m.fc1));
                out.push(linear("fc2", &m.fc2));
            }
            Self::ResNet(m) => {
                out.push(conv("conv1".into(), &m.conv1));
                for (s, stage) in m.stages.iter().enumerate() {
                    for (b, block) in stage.iter().enumerate() {
                        let p = format!("layer{}.{b}", s + 1);
                        if let Some(d) = &block.downsample {
                            out.push(conv(format!("{p}.downsample"), d));
                        }
                        out.push(conv(format!("{p}.conv1"), &block.conv1));
                        out.push(conv(format!("{p}.conv2"), &block.conv2));
                        if let Some(c) = &block.conv3 {
                            out.push(conv(format!("{p}.conv3"), c));
                        }
                    }
                }
                out.push(linear("fc", &m.fc));
            }
            Self::MobileNetV1(m) => {
                out.push(conv("stem".into(), &m.stem));
                for (i, b) in m.blocks.iter().enumerate() {
                    out.push(conv(format!("blocks.{i}.dw"), &b.dw));
                    out.push(conv(format!("blocks.{i}.pw"), &b.pw));
                }
                out.push(linear("fc", &m.fc));
            }
        }
        out
    }
}

/// A layer of a [`SparseModel`].
#[derive(Clone, Copy, Debug)]
pub enum LayerRef<'a> {
    /// A convolution.
    Conv(&'a SparseConv2d),
    /// A linear layer.
    Linear(&'a SparseLinear),
}

/// A named layer of a [`SparseModel`].
#[derive(Clone, Debug)]
pub struct Layer<'a> {
    /// Its name in the file (`layer1.0.conv1`).
    pub name: String,
    /// The layer.
    pub layer: LayerRef<'a>,
}

impl Layer<'_> {
    /// The format the layer runs.
    pub fn format(&self) -> &'static str {
        match self.layer {
            LayerRef::Conv(c) => c.format(),
            LayerRef::Linear(l) => l.format(),
        }
    }
}

/// What the file says about the model besides its layers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportInfo {
    /// The model's name (`mlp`, `cnn`, `resnet18`, `mobilenet-v1`, …).
    pub model: String,
    /// The model's settings as the run recorded them (name, width, …).
    pub config: Value,
    /// Input image shape `[C, H, W]`.
    pub input: [usize; 3],
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// Per-channel mean of the pixels scaled to `[0, 1]`.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation.
    pub std: Vec<f32>,
    /// The format asked for at export (`auto`, `csr`, …).
    pub format: String,
    /// The dataset the run was trained on.
    pub dataset: String,
    /// The training method.
    pub method: String,
    /// The run's test accuracy after its last epoch (fraction).
    pub test_accuracy: f64,
    /// The run's test loss after its last epoch.
    pub test_loss: f64,
    /// Sparsity of the sparse layers.
    pub sparsity: f64,
    /// Nonzero weights of the sparse layers.
    pub nonzeros: usize,
}

/// A sparse model with everything needed to run it on images.
#[derive(Debug)]
pub struct ExportedModel {
    /// Shapes, normalisation, classes and the run's figures.
    pub info: ExportInfo,
    /// The sparse twin.
    pub model: SparseModel,
}

fn format_version(bytes: &[u8]) -> Result<(u64, Value), ExportError> {
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| match e {
        // no safetensors header at all (a header cut short is `InvalidHeaderLength`: corrupt)
        safetensors::SafeTensorError::HeaderTooSmall
        | safetensors::SafeTensorError::HeaderTooLarge
        | safetensors::SafeTensorError::InvalidHeaderStart => ExportError::NotAModel(format!("{e}")),
        e => ExportError::Corrupt(format!("{e}")),
    })?;
    let text = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(METADATA_KEY))
        .ok_or_else(|| ExportError::NotAModel("a safetensors file without sparseburn metadata".into()))?;
    let json: Value = serde_json::from_str(text).map_err(|e| ExportError::Corrupt(format!("metadata: {e}")))?;
    if json.get("format").and_then(Value::as_str) != Some(FORMAT_NAME) {
        return Err(ExportError::NotAModel(format!("its metadata is not a `{FORMAT_NAME}`")));
    }
    let version = json
        .get("format_version")
        .and_then(Value::as_u64)
        .ok_or_else(|| ExportError::Corrupt("no format version".into()))?;
    Ok((version, json))
}

/// The architecture a model file holds (`mlp`, …, `char-transformer`), read
/// from its metadata after the format and its version are checked: what
/// decides whether [`ExportedModel`] or
/// [`crate::exported_lm::ExportedLanguageModel`] reads it.
pub fn architecture(bytes: &[u8]) -> Result<String, ExportError> {
    let (version, meta) = format_version(bytes)?;
    if version > FORMAT_VERSION {
        return Err(ExportError::NewerVersion { found: version });
    }
    meta.get("architecture")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ExportError::Corrupt("no architecture in the metadata".into()))
}

/// The bytes of a model file: the twin's tensors in `map`, its structure
/// `model`, the `export` section `info`, packed unless `format` is dense (the
/// dense twin stays a plain dense file: it is what a dense model costs).
pub(crate) fn write_file(
    map: &TensorMap,
    architecture: &str,
    model: Value,
    info: &impl Serialize,
    format: &str,
) -> Result<Vec<u8>, ExportError> {
    let meta = json!({
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "architecture": architecture,
        "model": model,
        "export": info,
    });
    let bytes = map.to_bytes(&meta)?;
    crate::packing::pack(&bytes, format != FormatKind::Dense.name())
}

/// A model file's tensors (unpacked), its `model` structure and its `export`
/// section, after [`architecture`] has checked the format and version.
pub(crate) fn read_file<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<(TensorMap, Value, T), ExportError> {
    let bytes = crate::packing::unpack(bytes)?;
    let (map, meta) = TensorMap::from_bytes(&bytes).map_err(|e| ExportError::Corrupt(e.to_string()))?;
    let section = meta
        .get("export")
        .cloned()
        .ok_or_else(|| ExportError::Corrupt("no `export` metadata".into()))?;
    let info = serde_json::from_value(section).map_err(|e| ExportError::Corrupt(format!("export metadata: {e}")))?;
    Ok((map, meta.get("model").cloned().unwrap_or(Value::Null), info))
}

impl ExportedModel {
    /// The file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ExportError> {
        let mut map = TensorMap::default();
        let model = self.model.save_into(&mut map)?;
        write_file(&map, self.model.architecture(), model, &self.info, &self.info.format)
    }

    /// Reads a model file onto `device`: the version is checked first, then
    /// every tensor and index against the recorded geometry.
    pub fn from_bytes(bytes: &[u8], device: &Device) -> Result<Self, ExportError> {
        let architecture = architecture(bytes)?;
        if architecture == crate::sparse_char_transformer::SparseCharTransformer::ARCHITECTURE {
            return Err(ExportError::Input(
                "the file holds a language model, not an image model; read it with `ExportedLanguageModel` (`sparseburn infer MODEL` without --dataset)".into(),
            ));
        }
        let (map, model, info): (_, _, ExportInfo) = read_file(bytes)?;
        let model = SparseModel::load(&architecture, &map, &model, device).map_err(|e| match e {
            ExportError::Kernel(k) => ExportError::Corrupt(k.to_string()),
            e => e,
        })?;
        let [c, h, w] = info.input;
        if c == 0 || h == 0 || w == 0 || info.classes.is_empty() {
            return Err(ExportError::Corrupt(format!(
                "an empty input {c}x{h}x{w} or no classes"
            )));
        }
        if info.mean.len() != c || info.std.len() != c || info.std.iter().any(|s| s.is_nan() || *s <= 0.0) {
            return Err(ExportError::Corrupt(format!(
                "normalisation for {} channels, the input has {c}",
                info.mean.len()
            )));
        }
        Ok(Self { info, model })
    }

    /// Per-layer formats, by layer name.
    pub fn layer_formats(&self) -> BTreeMap<String, &'static str> {
        self.model
            .layers()
            .iter()
            .map(|l| (l.name.clone(), l.format()))
            .collect()
    }

    /// Checks that images `[C, H, W]` of a dataset with `classes` classes fit the model.
    pub fn check_input(&self, shape: [usize; 3], classes: usize) -> Result<(), ExportError> {
        let want = self.info.input;
        if shape != want {
            return Err(ExportError::Input(format!(
                "the images are {}x{}x{} but the model takes {}x{}x{} (channels x height x width); use the dataset the model was trained on",
                shape[0], shape[1], shape[2], want[0], want[1], want[2]
            )));
        }
        if classes != self.info.classes.len() {
            return Err(ExportError::Input(format!(
                "the dataset has {classes} classes but the model predicts {}; use the dataset the model was trained on",
                self.info.classes.len()
            )));
        }
        Ok(())
    }

    /// Normalised images `[batch, C, H, W]` from raw 8-bit pixels (CHW per image), as in training.
    pub fn normalise(&self, pixels: &[u8], batch: usize, device: &Device) -> Result<Tensor<4>, ExportError> {
        let [c, h, w] = self.info.input;
        let want = [batch, c, h, w].iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if want != Some(pixels.len()) {
            return Err(ExportError::Input(format!(
                "{} pixels for {batch} images of {c}x{h}x{w}",
                pixels.len()
            )));
        }
        let plane = h * w;
        let values: Vec<f32> = pixels
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let ch = (i / plane) % c;
                (f32::from(p) / 255.0 - self.info.mean[ch]) / self.info.std[ch]
            })
            .collect();
        Ok(Tensor::from_data(TensorData::new(values, [batch, c, h, w]), device))
    }

    /// Logits `[B, classes]` for normalised images `[B, C, H, W]`; images of another shape are an error.
    pub fn forward(&self, images: Tensor<4>) -> Result<Tensor<2>, ExportError> {
        let [_, c, h, w] = images.dims();
        self.check_input([c, h, w], self.info.classes.len())?;
        Ok(self.model.forward(images))
    }
}
