//! The deployable file of a language model: the same self-describing
//! safetensors format as [`crate::exported`] (format name and version,
//! architecture, per-layer formats, packed indices), holding the sparse twin
//! of the char transformer ([`SparseCharTransformer`]) and, instead of image
//! shapes and classes, the vocabulary and the run's recorded bits per token.
//!
//! ```ignore
//! let bytes = std::fs::read("lm.safetensors")?;
//! let model = ExportedLanguageModel::from_bytes(&bytes, &Device::flex())?;
//! let bits = model.model.bits_per_token(&test_tokens, 64, &device)?;
//! ```

use std::collections::BTreeMap;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sparse_kernels::modules::TensorMap;

use crate::exported::{ExportError, SparseModel, architecture, read_file, write_file};
use crate::sparse_char_transformer::SparseCharTransformer;
use crate::sparse_store::SparseStore;

/// What a language-model file says about the model besides its layers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextExportInfo {
    /// The model's name (`char-transformer`).
    pub model: String,
    /// The run's `[lm]` settings.
    pub config: Value,
    /// `char` or `byte`.
    pub tokens: String,
    /// The characters of a char vocabulary, in token order (empty for bytes).
    pub vocabulary: String,
    /// The format asked for at export (`auto`, `csr`, …).
    pub format: String,
    /// The corpus the run was trained on (its folder's name).
    pub corpus: String,
    /// The training method.
    pub method: String,
    /// The run's test bits per token after its last epoch.
    pub test_bits_per_token: f64,
    /// The validation and test tokens the run evaluated on (its first ones; 0: all).
    pub eval_tokens: usize,
    /// Sparsity of the sparse layers.
    pub sparsity: f64,
    /// Nonzero weights of the sparse layers.
    pub nonzeros: usize,
}

/// A sparse language model with what it takes to run it on text.
#[derive(Debug)]
pub struct ExportedLanguageModel {
    /// Vocabulary, settings and the run's figures.
    pub info: TextExportInfo,
    /// The sparse twin.
    pub model: SparseCharTransformer,
}

impl ExportedLanguageModel {
    /// The file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ExportError> {
        let mut map = TensorMap::default();
        let model = self.model.save_into(&mut map)?;
        write_file(
            &map,
            SparseCharTransformer::ARCHITECTURE,
            model,
            &self.info,
            &self.info.format,
        )
    }

    /// Reads a language-model file onto `device`: the version first, then every
    /// tensor and index, then the vocabulary against the model's.
    pub fn from_bytes(bytes: &[u8], device: &Device) -> Result<Self, ExportError> {
        let architecture = architecture(bytes)?;
        if architecture != SparseCharTransformer::ARCHITECTURE {
            return Err(if SparseModel::ARCHITECTURES.contains(&architecture.as_str()) {
                ExportError::Input(format!(
                    "the file holds a `{architecture}` image model, not a language model; evaluate it with `sparseburn infer MODEL --dataset ...`"
                ))
            } else {
                ExportError::Corrupt(format!("unknown architecture `{architecture}`"))
            });
        }
        let (map, model, info): (_, _, TextExportInfo) = read_file(bytes)?;
        let model =
            SparseCharTransformer::load_from(&map, &model, device).map_err(|e| ExportError::Corrupt(e.to_string()))?;
        let vocab = match info.tokens.as_str() {
            "byte" => 256,
            "char" => info.vocabulary.chars().count(),
            other => return Err(ExportError::Corrupt(format!("unknown token kind `{other}`"))),
        };
        if vocab != model.vocab() {
            return Err(ExportError::Corrupt(format!(
                "a vocabulary of {vocab} tokens for a model of {}",
                model.vocab()
            )));
        }
        Ok(Self { info, model })
    }

    /// Per-layer formats, by layer name.
    pub fn layer_formats(&self) -> BTreeMap<String, &'static str> {
        self.model
            .linears()
            .into_iter()
            .map(|(name, l)| (name, l.format()))
            .collect()
    }
}
