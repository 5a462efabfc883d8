//! `sparseburn export`, `infer` and `bench` for a language-model run
//! (`--task lm`): the checkpoint's char transformer and masks converted to the
//! sparse twin ([`sparse_models::SparseCharTransformer`]) and written with the
//! vocabulary and the run's recorded bits per token
//! ([`sparse_models::ExportedLanguageModel`]); evaluated on the test split of
//! the corpus as the run evaluated it.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use sparse_models::to_sparse::{SparseOptions, ToSparse};
use sparse_models::{ExportedLanguageModel, FormatKind, NextToken, TextExportInfo};

use super::export::{FinishedRun, check_exportable, check_mask_paths, checkpoint_masks, load_checkpoint};
use super::train::lm::{MODEL_NAME, corpus_name, first, load_corpus, model_shape};
use crate::data::text::{FORTUNES_DIR, Split, TextCorpus, TokenKind};

/// The finished language-model run `run` as an exported model (every
/// projection in `format`, or chosen per layer by `auto`).
pub(crate) fn exported_lm(
    run: &FinishedRun,
    format: FormatKind,
    device: &Device,
) -> anyhow::Result<ExportedLanguageModel> {
    check_exportable(&run.cfg, &run.summary)?;
    let lm = run
        .cfg
        .lm
        .clone()
        .context("a language-model run without an [lm] section")?;
    let corpus = load_corpus(&run.cfg, &lm).context("loading the run's corpus (for its vocabulary)")?;
    let s = &run.summary;
    let recorded =
        s.lm.as_ref()
            .context("the run's summary has no language-model figures")?;
    if corpus.vocab.size() != recorded.vocab {
        bail!(
            "the corpus of {} has {} tokens now, the run trained on {}: the corpus changed; export with the corpus the run was trained on",
            run.dir.display(),
            corpus.vocab.size(),
            recorded.vocab
        );
    }
    let shape = model_shape(&lm, corpus.vocab.size());
    let model = load_checkpoint(shape.init(device)?, &run.checkpoint)?;
    let masks = checkpoint_masks(&run.checkpoint)?;
    check_mask_paths(&model, &masks, &run.checkpoint)?;
    let options = SparseOptions {
        format,
        ..SparseOptions::default()
    };
    let twin = model
        .valid()
        .to_sparse(&masks, &options)
        .with_context(|| format!("exporting {} as {}", run.dir.display(), format.name()))?;
    Ok(ExportedLanguageModel {
        info: TextExportInfo {
            model: MODEL_NAME.into(),
            config: serde_json::to_value(&lm)?,
            tokens: lm.tokens.to_string(),
            vocabulary: corpus.vocab.characters(),
            format: format.name().into(),
            corpus: corpus_name(&run.cfg),
            method: s.method.clone(),
            test_bits_per_token: recorded.test_bits_per_token,
            eval_tokens: lm.eval_tokens,
            sparsity: s.sparsity,
            nonzeros: s.nonzeros,
        },
        model: twin,
    })
}

/// What `infer` measured on a language model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LmInferResult {
    /// The model file.
    pub model_file: String,
    /// The model's name.
    pub model: String,
    /// The corpus folder evaluated.
    pub corpus: String,
    /// Test tokens evaluated.
    pub tokens: usize,
    /// Test bits per token.
    pub bits_per_token: f64,
    /// The test bits per token the run recorded when it was exported.
    pub recorded_bits_per_token: f64,
    /// Per-layer formats.
    pub formats: std::collections::BTreeMap<String, String>,
}

/// Reads a language-model file onto `device`, naming the file in errors.
pub fn load_lm(path: &Path, device: &Device) -> anyhow::Result<ExportedLanguageModel> {
    let bytes = std::fs::read(path).with_context(|| format!("reading the model file {}", path.display()))?;
    ExportedLanguageModel::from_bytes(&bytes, device).with_context(|| path.display().to_string())
}

/// The test tokens of the corpus in `dir` (fortunes when none) as the file's
/// run evaluated them: the same token kind, the same vocabulary (else an
/// error), the first `eval_tokens` of the test split.
fn test_tokens(model: &ExportedLanguageModel, dir: &Path) -> anyhow::Result<Vec<u32>> {
    let kind: TokenKind = model.info.tokens.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let corpus = TextCorpus::load(dir, kind)?;
    if corpus.vocab.characters() != model.info.vocabulary {
        bail!(
            "the corpus in {} has another vocabulary ({} tokens) than the model ({} tokens, trained on `{}`); evaluate on the corpus the model was trained on (--data-dir)",
            dir.display(),
            corpus.vocab.size(),
            model.model.vocab(),
            model.info.corpus
        );
    }
    Ok(first(corpus.split(Split::Test), model.info.eval_tokens))
}

/// `sparseburn infer` on a language-model file: bits per token on the test
/// split of the corpus in `data_dir` (fortunes when none), `batch` windows of
/// the context per forward pass.
pub fn infer_lm(path: &Path, data_dir: Option<&Path>, batch: usize, device: &Device) -> anyhow::Result<LmInferResult> {
    let model = load_lm(path, device)?;
    let dir = data_dir.map_or_else(|| PathBuf::from(FORTUNES_DIR), Path::to_path_buf);
    let tokens = test_tokens(&model, &dir)?;
    let bits = model.model.bits_per_token(&tokens, batch, device)?;
    Ok(LmInferResult {
        model_file: path.display().to_string(),
        model: model.info.model.clone(),
        corpus: dir.display().to_string(),
        tokens: tokens.len(),
        bits_per_token: bits,
        recorded_bits_per_token: model.info.test_bits_per_token,
        formats: model
            .layer_formats()
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect(),
    })
}
