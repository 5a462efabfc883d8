//! `sparseburn infer`: an exported model file evaluated on a dataset's test
//! split, with the same batches, normalisation and loss as a run's test
//! evaluation (`train::task::evaluate_with`).

use std::path::Path;

use anyhow::Context;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use sparse_models::ExportedModel;

use super::train::task::{Evaluation, evaluate_with};
use crate::data::{DataConfig, ImageBatcher, ImageSet};

/// What `infer` measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InferResult {
    /// The model file.
    pub model_file: String,
    /// The model's name.
    pub model: String,
    /// The dataset evaluated.
    pub dataset: String,
    /// Test images evaluated.
    pub images: usize,
    /// Fraction correct.
    pub accuracy: f64,
    /// Mean cross-entropy (nats).
    pub loss: f64,
    /// The test accuracy the run recorded when it was exported.
    pub recorded_accuracy: f64,
    /// Per-layer formats.
    pub formats: std::collections::BTreeMap<String, String>,
}

/// Reads a model file onto `device`, naming the file in errors.
pub fn load_model(path: &Path, device: &Device) -> anyhow::Result<ExportedModel> {
    let bytes = std::fs::read(path).with_context(|| format!("reading the model file {}", path.display()))?;
    ExportedModel::from_bytes(&bytes, device).with_context(|| path.display().to_string())
}

/// Evaluates `model` on `test` in batches of `batch`, normalised as the file says.
pub fn evaluate(model: &ExportedModel, test: &ImageSet, batch: usize, device: &Device) -> Evaluation {
    let info = &model.info;
    let batcher = ImageBatcher::with_normalisation(info.input, info.mean.clone(), info.std.clone());
    evaluate_with(&|images| model.model.forward(images), test, &batcher, device, batch)
}

/// Evaluates the model file `path` on the test split of `data` in batches of `batch`.
pub fn infer(path: &Path, data: &DataConfig, batch: usize, device: &Device) -> anyhow::Result<InferResult> {
    let model = load_model(path, device)?;
    let (_, test) = data.load()?;
    model
        .check_input(test.shape, test.num_classes())
        .with_context(|| format!("{} on {}", path.display(), test.name))?;
    let info = &model.info;
    let eval = evaluate(&model, &test, batch, device);
    Ok(InferResult {
        model_file: path.display().to_string(),
        model: info.model.clone(),
        dataset: test.name.clone(),
        images: test.len(),
        accuracy: eval.accuracy,
        loss: eval.loss,
        recorded_accuracy: info.test_accuracy,
        formats: model
            .layer_formats()
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect(),
    })
}
