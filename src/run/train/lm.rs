//! A language-model run (`sparseburn train --task lm`): the corpus of
//! `[data] data_dir` (default: Debian's fortunes) with its fixed 90/5/5 split
//! (`crate::data::text`), the char transformer of `[lm]` with sparse attention
//! and MLP projections, trained by the same runner, checkpoints and resume as an
//! image run; `summary.json` and `report.md` add the validation and test bits per
//! token and a sample of generated text. The best epoch is the one with the
//! lowest validation bits per token (`super::selection`).

use std::path::PathBuf;

use anyhow::Context;
use burn::module::Module;
use burn::tensor::Device;
use sparse_core::Sparsifier;
use sparse_core::stats::LayerMacs;
use sparse_models::{CharTransformer, CharTransformerConfig, NextToken, count_params};

use super::checkpoint::TrainerState;
use super::language_model::{Batching, LanguageModelling};
use super::summary::{Identity, epoch_summary};
use super::{Fit, TrainOptions, open_run};
use crate::data::text::{FORTUNES_DIR, Split, TextCorpus, Vocab};
use crate::run::artifacts::{LmSummary, RunDir, Summary};
use crate::run::config::{LmSection, RunConfig};
use crate::run::report;

/// The model's name in summaries and checkpoint messages.
pub const MODEL_NAME: &str = "char-transformer";

/// The corpus folder of `cfg` (`[data] data_dir`, else fortunes).
pub fn corpus_dir(cfg: &RunConfig) -> PathBuf {
    cfg.data.data_dir.clone().unwrap_or_else(|| PathBuf::from(FORTUNES_DIR))
}

/// Loads the corpus and checks that every split is longer than the context.
pub fn load_corpus(cfg: &RunConfig, lm: &LmSection) -> anyhow::Result<TextCorpus> {
    let dir = corpus_dir(cfg);
    let corpus = TextCorpus::load(&dir, lm.tokens)?;
    for split in [Split::Train, Split::Valid, Split::Test] {
        corpus
            .check_block(split, lm.block)
            .with_context(|| format!("the corpus in {}", dir.display()))?;
    }
    Ok(corpus)
}

/// The first `limit` tokens (all when 0).
pub fn first(tokens: &[u32], limit: usize) -> Vec<u32> {
    let n = if limit == 0 {
        tokens.len()
    } else {
        limit.min(tokens.len())
    };
    tokens[..n].to_vec()
}

/// The model of `[lm]` for a vocabulary of `vocab` tokens.
pub fn model_shape(lm: &LmSection, vocab: usize) -> CharTransformerConfig {
    CharTransformerConfig::new(vocab)
        .with_block(lm.block)
        .with_layers(lm.layers)
        .with_heads(lm.heads)
        .with_d_model(lm.d_model)
        .with_dropout(lm.dropout)
}

/// Trains the language model of `cfg` into `opts.out` and returns its summary.
pub fn train_lm(cfg: &RunConfig, opts: &TrainOptions) -> anyhow::Result<Summary> {
    let lm = cfg.lm.clone().context("a language-model run needs an [lm] section")?;
    let device = cfg.device.device()?.autodiff();
    let corpus = load_corpus(cfg, &lm)?;
    let shape = model_shape(&lm, corpus.vocab.size());
    shape.validate()?;
    let created = !opts.out.exists();
    let opened = open_run(opts)?;
    let (dir, resume) = (opened.dir.clone(), opened.resume);
    if !resume {
        dir.write("config.toml", cfg.to_toml().as_bytes())?;
    }
    device.seed(cfg.training.seed);
    let result = fit_lm(cfg, opts, &lm, &corpus, &shape, &dir, resume, &device);
    if result.is_err() && !resume {
        RunDir::discard_unstarted(&opts.out, created);
    }
    drop(opened);
    result
}

#[allow(clippy::too_many_arguments)]
fn fit_lm(
    cfg: &RunConfig,
    opts: &TrainOptions,
    lm: &LmSection,
    corpus: &TextCorpus,
    shape: &CharTransformerConfig,
    dir: &RunDir,
    resume: bool,
    device: &Device,
) -> anyhow::Result<Summary> {
    let t = &cfg.training;
    let model = shape.init(device)?;
    let make = || {
        shape
            .init(device)
            .unwrap_or_else(|_| unreachable!("the shape was validated"))
    };
    let filter = model.sparsity_filter_with(lm.sparse_embeddings, lm.sparse_head);
    let validation = first(&corpus.valid, lm.eval_tokens);
    let test = first(&corpus.test, lm.eval_tokens);
    let split_tokens = [corpus.train.len(), validation.len(), test.len()];
    let task = LanguageModelling::new(
        corpus.train.clone(),
        validation,
        test,
        Batching {
            batch_size: t.batch_size,
            block: lm.block,
            batches_per_epoch: lm.batches_per_epoch,
            eval_batch: t.eval_batch_size,
            seed: t.seed,
        },
        device,
    )
    .with_scoring_batches(t.grad_accumulation);
    let fitted = Fit {
        cfg,
        opts,
        resume,
        dir,
        classes: corpus.vocab.size(),
        model_name: MODEL_NAME,
        units_per_sample: lm.block as u64,
        make: &make,
        reload: &Ok,
    }
    .run(model, filter, task)?;
    let sample = sample_text(&fitted.model, &corpus.vocab, lm, t.seed, device)?;
    let facts = LmFacts {
        corpus: corpus_name(cfg),
        lm,
        vocab: &corpus.vocab,
        split_tokens,
        sample,
    };
    finish_lm(cfg, dir, &fitted.model, &fitted.sparse, &fitted.state, facts)
}

/// The corpus's short name (its folder's).
pub fn corpus_name(cfg: &RunConfig) -> String {
    let dir = corpus_dir(cfg);
    dir.file_name()
        .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Text the trained model writes after the prompt (characters of the prompt not
/// in the vocabulary are left out; an empty prompt starts from the first token).
fn sample_text(
    model: &CharTransformer,
    vocab: &Vocab,
    lm: &LmSection,
    seed: u64,
    device: &Device,
) -> anyhow::Result<String> {
    let mut prompt: Vec<u32> = lm
        .prompt
        .chars()
        .filter_map(|c| vocab.encode(&c.to_string()).ok())
        .flatten()
        .collect();
    if prompt.is_empty() {
        prompt.push(0);
    }
    let inner = device.clone().inner();
    let tokens = model
        .valid()
        .generate(&prompt, lm.sample_tokens, lm.temperature, seed, &inner)?;
    Ok(vocab.decode(&tokens)?)
}

struct LmFacts<'a> {
    corpus: String,
    lm: &'a LmSection,
    vocab: &'a Vocab,
    split_tokens: [usize; 3],
    sample: String,
}

/// Weight multiply-adds per token of each sparse-able linear layer (embedding
/// look-ups and the attention's score products are not counted).
fn weight_macs(sparse: &Sparsifier) -> Vec<LayerMacs> {
    let active = sparse.active_counts();
    sparse
        .layers()
        .iter()
        .map(|l| LayerMacs {
            path: l.path.clone(),
            dense: l.numel() as u64,
            sparse: active.get(&l.path).copied().unwrap_or_else(|| l.numel()) as u64,
        })
        .collect()
}

/// Writes `summary.json`, the plots and `report.md` of a language-model run.
fn finish_lm(
    cfg: &RunConfig,
    dir: &RunDir,
    model: &CharTransformer,
    sparse: &Sparsifier,
    state: &TrainerState,
    facts: LmFacts<'_>,
) -> anyhow::Result<Summary> {
    let macs = weight_macs(sparse);
    let id = Identity {
        model: MODEL_NAME.to_string(),
        dataset: facts.corpus,
        validation_images: facts.split_tokens[1],
    };
    let mut summary = epoch_summary(cfg, state, sparse, id, count_params(model), &macs)?;
    let last = state.last.as_ref().context("the run trained no epoch")?;
    summary.lm = Some(LmSummary {
        tokens: facts.lm.tokens.to_string(),
        vocab: facts.vocab.size(),
        split_tokens: facts.split_tokens,
        validation_bits_per_token: last.val_loss.unwrap_or(f64::NAN),
        test_bits_per_token: last.test_loss,
        best_validation_bits_per_token: state.best.as_ref().and_then(|b| b.val_loss),
        test_bits_per_token_at_best: state.best.as_ref().and_then(|b| b.test_loss),
        sample: facts.sample,
    });
    dir.write("summary.json", serde_json::to_string_pretty(&summary)?.as_bytes())?;
    report::write(dir, &summary, sparse, cfg.model.mask_layer.as_deref(), &macs)?;
    Ok(summary)
}
