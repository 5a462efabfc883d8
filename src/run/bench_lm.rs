//! `sparseburn bench` for a language model (an exported file or a finished
//! `--task lm` run folder): the sparse char transformer against its dense twin,
//! timed alternately as [`super::bench`] does, in tokens per second — a whole
//! context window at batch 1 (scoring; also the cost of one generated token, as
//! generation re-runs the context without a key-value cache) and 32 windows —
//! and every projection on one window; file sizes and peak memory.

use std::path::Path;

use anyhow::Context;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use sparse_models::dense_twin::timing_input;
use sparse_models::sparse_store::SparseStore;
use sparse_models::{ExportedLanguageModel, FormatKind, SparseCharTransformer, TextExportInfo};

use super::bench::{BenchOptions, Footprint, Race, peak_rss, race, rayon_threads, settle};
use super::export::{Exported, exported};
use super::export_lm::load_lm;
use super::task_kind::TaskKind;

/// Whether `source` (a model file or a run folder) holds a language model; a
/// file that is no model file at all (or a damaged or newer one) is an error.
pub fn is_language_model(source: &Path) -> anyhow::Result<bool> {
    if source.is_dir() {
        let config = source.join("config.toml");
        if !config.is_file() {
            return Ok(false); // the image path names the problem
        }
        let cfg = super::RunConfig::load(&config)
            .with_context(|| format!("{} is not a sparseburn run folder", source.display()))?;
        return Ok(cfg.task == TaskKind::Lm);
    }
    let bytes = std::fs::read(source).with_context(|| format!("reading the model file {}", source.display()))?;
    let architecture = sparse_models::exported::architecture(&bytes).with_context(|| source.display().to_string())?;
    Ok(architecture == SparseCharTransformer::ARCHITECTURE)
}

/// A race in windows of the context, with tokens per second.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenRace {
    /// Tokens per forward pass (windows × context).
    pub tokens: usize,
    /// Sparse tokens per second (from the median).
    pub sparse_tokens_per_s: f64,
    /// Dense tokens per second (from the median).
    pub dense_tokens_per_s: f64,
    /// The timings; `batch` counts windows.
    pub race: Race,
}

impl TokenRace {
    fn of(race: Race, context: usize) -> Self {
        let tokens = race.batch * context;
        Self {
            tokens,
            sparse_tokens_per_s: tokens as f64 * 1e3 / race.sparse_ms.median,
            dense_tokens_per_s: tokens as f64 * 1e3 / race.dense_ms.median,
            race,
        }
    }
}

/// One projection on one window (`context` rows).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LmLayerRace {
    /// Layer name (`blocks.0.query`).
    pub name: String,
    /// Its format in the sparse model.
    pub format: String,
    /// Input features.
    pub d_input: usize,
    /// The timings.
    pub race: Race,
}

/// What `bench` measured on a language model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LmBenchReport {
    /// The model file or run folder.
    pub source: String,
    /// Model name.
    pub model: String,
    /// Context length (tokens per window).
    pub context: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// The backend both sides ran on.
    pub backend: String,
    /// Threads of the pool the kernels run on.
    pub threads: usize,
    /// File sizes and peak memory.
    #[serde(flatten)]
    pub footprint: Footprint,
    /// End to end: 1 window, then 32.
    pub end_to_end: Vec<TokenRace>,
    /// Every projection on one window.
    pub layers: Vec<LmLayerRace>,
}

struct Pair {
    sparse: ExportedLanguageModel,
    dense: SparseCharTransformer,
    sparse_bytes: usize,
    dense_bytes: usize,
}

fn text(e: Exported) -> anyhow::Result<ExportedLanguageModel> {
    match e {
        Exported::Text(m) => Ok(m),
        Exported::Image(_) => anyhow::bail!("expected a language-model run"),
    }
}

fn dense_file(sparse: &ExportedLanguageModel) -> anyhow::Result<ExportedLanguageModel> {
    Ok(ExportedLanguageModel {
        info: TextExportInfo {
            format: FormatKind::Dense.name().into(),
            ..sparse.info.clone()
        },
        model: sparse.model.to_dense()?,
    })
}

/// The sparse model of `source`: the file, or the run folder exported with `auto`.
fn sparse_model(source: &Path, device: &Device) -> anyhow::Result<ExportedLanguageModel> {
    if source.is_dir() {
        return text(exported(source, FormatKind::Auto, device)?);
    }
    load_lm(source, device)
}

fn pair(source: &Path, device: &Device) -> anyhow::Result<Pair> {
    let sparse = sparse_model(source, device)?;
    let sparse_bytes = if source.is_dir() {
        sparse.to_bytes()?.len()
    } else {
        std::fs::metadata(source)?.len() as usize
    };
    let dense = dense_file(&sparse)?;
    let dense_bytes = dense.to_bytes()?.len();
    Ok(Pair {
        sparse,
        dense: dense.model,
        sparse_bytes,
        dense_bytes,
    })
}

/// `windows` windows of the context of token ids (a fixed pattern: timing does not depend on them).
fn windows(windows: usize, context: usize, vocab: usize, device: &Device) -> Tensor<2, Int> {
    let ids: Vec<i64> = (0..windows * context).map(|i| ((i * 7 + 3) % vocab) as i64).collect();
    Tensor::from_data(TensorData::new(ids, [windows, context]), device)
}

/// The child's job: one side alone on 1 and 32 windows; the peak RSS.
pub fn memory_probe(source: &Path, dense: bool, device: &Device) -> anyhow::Result<u64> {
    let sparse = sparse_model(source, device)?.model;
    // the dense twin as `bench` builds it: from the sparse model, layer by layer
    let model = if dense { sparse.to_dense()? } else { sparse };
    for n in [1, 32] {
        settle(model.forward(windows(n, model.block(), model.vocab(), device)));
    }
    peak_rss().context("no /proc/self/status: peak memory is measured on Linux only")
}

/// Runs the benchmark on a language model `source` (a model file or a finished run folder).
pub fn bench(source: &Path, opts: BenchOptions) -> anyhow::Result<LmBenchReport> {
    let device = opts.backend.device()?;
    let p = pair(source, &device)?;
    let model = &p.sparse.model;
    let (context, vocab) = (model.block(), model.vocab());
    let (r1, r32, rl) = if opts.quick { (5, 3, 3) } else { (21, 11, 11) };
    let end_to_end = [(1, r1), (32, r32)]
        .into_iter()
        .map(|(n, rounds)| {
            let x = windows(n, context, vocab, &device);
            let r = race(
                n,
                rounds,
                || settle(model.forward(x.clone())),
                || settle(p.dense.forward(x.clone())),
            );
            TokenRace::of(r, context)
        })
        .collect();
    let layers = model
        .linears()
        .into_iter()
        .zip(p.dense.linears())
        .map(|((name, s), (_, d))| {
            let x = timing_input([context, s.d_input], &device);
            LmLayerRace {
                format: s.format().to_string(),
                d_input: s.d_input,
                race: race(
                    context,
                    rl,
                    || settle(s.forward(x.clone())),
                    || settle(d.forward(x.clone())),
                ),
                name,
            }
        })
        .collect();
    Ok(LmBenchReport {
        source: source.display().to_string(),
        model: p.sparse.info.model.clone(),
        context,
        vocab,
        backend: opts.backend.name().into(),
        threads: rayon_threads(),
        footprint: Footprint::measure(source, p.sparse_bytes, p.dense_bytes, opts)?,
        end_to_end,
        layers,
    })
}

fn line(name: &str, r: &Race, unit: &str, sparse_rate: f64, dense_rate: f64) -> String {
    format!(
        "{name:<30} sparse {:>9.3} ms [{:.3}, {:.3}]  dense {:>9.3} ms [{:.3}, {:.3}]  {:.2}x  ({sparse_rate:.0} vs {dense_rate:.0} {unit}/s)\n",
        r.sparse_ms.median, r.sparse_ms.q1, r.sparse_ms.q3, r.dense_ms.median, r.dense_ms.q1, r.dense_ms.q3, r.speedup,
    )
}

/// The report as text.
pub fn render(r: &LmBenchReport) -> String {
    let mut s = format!(
        "{} ({}), context {} tokens, vocabulary {}, {}, {} threads; sparse vs dense twin, alternating, median [quartiles]\n",
        r.source, r.model, r.context, r.vocab, r.backend, r.threads
    );
    s.push_str(&r.footprint.render());
    for x in &r.end_to_end {
        let name = format!("{} window(s) of {}", x.race.batch, r.context);
        s.push_str(&line(
            &name,
            &x.race,
            "tokens",
            x.sparse_tokens_per_s,
            x.dense_tokens_per_s,
        ));
    }
    if let Some(one) = r.end_to_end.first() {
        s.push_str(&format!(
            "generation (one context pass per new token): sparse {:.0}, dense {:.0} tokens/s\n",
            1e3 / one.race.sparse_ms.median,
            1e3 / one.race.dense_ms.median
        ));
    }
    s.push_str(&format!("projections on one window ({} rows):\n", r.context));
    for l in &r.layers {
        let rate = |ms: f64| r.context as f64 * 1e3 / ms;
        let name = format!("  {} ({})", l.name, l.format);
        s.push_str(&line(
            &name,
            &l.race,
            "rows",
            rate(l.race.sparse_ms.median),
            rate(l.race.dense_ms.median),
        ));
    }
    s
}
