//! `report.md` and the plots of a run.

use std::fmt::Write as _;

use sparse_core::stats::LayerMacs;
use sparse_core::{LayerKind, Mask, Sparsifier};

use super::artifacts::{LmSummary, RunDir, Summary};
use super::plots;

/// `--execution` asked for, how many sparse layers ran the sparse kernels,
/// the weights they stored, and the peak memory.
fn execution_row(e: &crate::run::execution::ExecutionSummary) -> String {
    use crate::run::execution::Execution;
    let sparse = e.layers.iter().filter(|l| l.execution == Execution::Sparse).count();
    let stored: usize = e.layers.iter().map(|l| l.stored_weights).sum();
    let mib = |b: u64| format!("{:.0} MiB", b as f64 / f64::from(1 << 20));
    let peak = match (e.peak_rss_bytes, e.setup_peak_rss_bytes, e.steps_peak_rss_bytes) {
        (Some(p), Some(setup), Some(steps)) => format!("{} (setup {}, steps {})", mib(p), mib(setup), mib(steps)),
        (Some(p), _, _) => mib(p),
        (None, ..) => "not measured".to_string(),
    };
    format!(
        "{} ({sparse} of {} sparse layers on the sparse kernels; {stored} weights stored); peak memory {peak}",
        e.requested.name(),
        e.layers.len()
    )
}

/// The sparse layer whose mask is tracked over time: the chosen one, else the largest.
fn tracked_layer(sparse: &Sparsifier, chosen: Option<&str>) -> anyhow::Result<Option<usize>> {
    let layers = sparse.layers();
    match chosen {
        Some(path) => layers.iter().position(|l| l.path == path).map(Some).ok_or_else(|| {
            let known: Vec<&str> = layers.iter().map(|l| l.path.as_str()).collect();
            anyhow::anyhow!(
                "mask_layer `{path}` is not a sparse layer; sparse layers: {}",
                known.join(", ")
            )
        }),
        None => Ok((0..layers.len()).max_by_key(|&l| layers[l].numel())),
    }
}

/// Saves the tracked layer's mask after an epoch (`masks/<round>-<epoch>.bits`).
pub fn save_mask_snapshot(
    dir: &RunDir,
    sparse: &Sparsifier,
    chosen: Option<&str>,
    round: usize,
    epoch: u64,
) -> anyhow::Result<()> {
    let Some(l) = tracked_layer(sparse, chosen)? else {
        return Ok(());
    };
    std::fs::create_dir_all(dir.file("masks"))?;
    dir.write(
        &format!("masks/{round:02}-{epoch:04}.bits"),
        &sparse.masks()[l].to_bytes(),
    )
}

/// How weight shapes are written in tables (one convention for every layer).
pub const SHAPE_LEGEND: &str =
    "out × in (× kernel), PyTorch's order for every layer (Burn stores a Linear weight as in × out)";

/// A weight shape as `out×in` (Linear) or `out×in×kh×kw` (conv), whatever Burn's storage order.
pub fn shape_text(kind: LayerKind, shape: &[usize]) -> String {
    let dims: Vec<usize> = match (kind, shape) {
        (LayerKind::Linear, [i, o]) => vec![*o, *i],
        _ => shape.to_vec(),
    };
    dims.iter().map(usize::to_string).collect::<Vec<_>>().join("×")
}

/// The best epoch of a language model: its validation and test bits per token.
fn lm_best(epoch: u64, lm: &LmSummary) -> String {
    let bits = |x: Option<f64>| x.map_or("—".to_string(), |x| format!("{x:.4}"));
    format!(
        "epoch {epoch}: validation {}, test {} bits per token",
        bits(lm.best_validation_bits_per_token),
        bits(lm.test_bits_per_token_at_best)
    )
}

/// A count with a K/M/G suffix (multiply-adds in tables).
pub(crate) fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.3} G", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.3} M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1} K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// A plot that cannot be drawn is skipped with a warning: no artifact may stop
/// (or fail) a run whose numbers are already saved.
pub fn or_warn(plot: &str, result: anyhow::Result<()>) {
    if let Err(e) = result {
        tracing::warn!("skipped the plot {plot}: {e:#}");
    }
}

/// Writes the plots and `report.md`.
pub fn write(
    dir: &RunDir,
    summary: &Summary,
    sparse: &Sparsifier,
    chosen: Option<&str>,
    macs: &[LayerMacs],
) -> anyhow::Result<()> {
    let rounds = sparse.method().rounds().is_some();
    std::fs::create_dir_all(dir.file("plots"))?;
    let rows = dir.read_metrics()?;
    or_warn(
        "learning_curves.png",
        plots::learning_curves(
            &dir.file("plots/learning_curves.png"),
            &rows,
            if summary.lm.is_some() {
                plots::CurveKind::LanguageModel
            } else {
                plots::CurveKind::Classification
            },
        ),
    );
    or_warn(
        "layer_density.png",
        plots::layer_density(&dir.file("plots/layer_density.png"), sparse.layers(), sparse.masks()),
    );
    let mut mask_plot = String::new();
    if let Some(l) = tracked_layer(sparse, chosen)? {
        let layer = &sparse.layers()[l];
        let mut files: Vec<_> = std::fs::read_dir(dir.file("masks"))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        files.sort();
        let snapshots: Vec<(String, Mask)> = files
            .iter()
            .filter_map(|p| {
                let bytes = std::fs::read(p).ok()?;
                let stem = p.file_stem()?.to_string_lossy().into_owned();
                let (round, epoch) = stem.split_once('-')?;
                let round: u64 = round.parse().ok()?;
                let epoch: u64 = epoch.parse().ok()?;
                let label = if rounds {
                    format!("round {round}, epoch {epoch}")
                } else {
                    format!("epoch {epoch}")
                };
                Some((label, Mask::from_bytes(layer.numel(), &bytes)?))
            })
            .collect();
        or_warn(
            "mask_history.png",
            plots::mask_history(&dir.file("plots/mask_history.png"), layer, &snapshots),
        );
        mask_plot = format!(
            "\n## Mask of `{}` over time\n\nRows are output neurons, columns fan-in weights; black: active, green: grown and red: dropped since the panel before (a layer larger than {} cells a side is shown in blocks whose colour mixes their weights'). The snapshots are in `masks/` (one bit per weight, row-major in the weight's own layout).\n\n![mask](plots/mask_history.png)\n",
            layer.path,
            plots::MAX_CELLS
        );
    }
    let mut r = String::new();
    let _ = writeln!(
        r,
        "# {} with {} on {}\n",
        summary.model, summary.method, summary.dataset
    );
    let pct = |x: Option<f64>| x.map_or("—".to_string(), |x| format!("{:.2}%", 100.0 * x));
    let best = match summary.best_validation_accuracy {
        Some(v) => format!(
            "epoch {}: validation {}, test {}",
            summary.best_epoch,
            pct(Some(v)),
            pct(summary.test_accuracy_at_best)
        ),
        None => format!(
            "no validation split: the last epoch ({}), test {}",
            summary.best_epoch,
            pct(summary.test_accuracy_at_best)
        ),
    };
    let _ = writeln!(r, "| | |\n|---|---|");
    let lm = summary.lm.as_ref();
    let unit = if lm.is_some() { "tokens" } else { "samples" };
    let mut rows: Vec<(&str, String)> = match lm {
        None => vec![
            ("test accuracy (last epoch)", pct(summary.test_accuracy)),
            ("best epoch (by validation accuracy)", best),
            (
                "validation images",
                format!("{} held out of the training set", summary.validation_images),
            ),
        ],
        Some(lm) => vec![
            (
                "validation / test bits per token (last epoch)",
                format!("{:.4} / {:.4}", lm.validation_bits_per_token, lm.test_bits_per_token),
            ),
            ("test next-token accuracy (last epoch)", pct(summary.test_accuracy)),
            (
                "best epoch (by validation bits per token)",
                lm_best(summary.best_epoch, lm),
            ),
            (
                "tokens (train / validation / test)",
                format!(
                    "{} / {} / {} ({}, vocabulary {})",
                    lm.split_tokens[0], lm.split_tokens[1], lm.split_tokens[2], lm.tokens, lm.vocab
                ),
            ),
        ],
    };
    rows.extend([
        (
            "sparsity (sparse layers)",
            format!(
                "{:.2}% (target {:.0}%)",
                100.0 * summary.sparsity,
                100.0 * summary.target_sparsity
            ),
        ),
        (
            "nonzero weights",
            format!("{} of {}", summary.nonzeros, summary.sparse_layer_weights),
        ),
        ("parameters (whole model)", summary.parameters.to_string()),
        (
            if lm.is_some() {
                "weight multiply-adds / token (sparse-able layers)"
            } else {
                "forward multiply-adds / sample"
            },
            format!(
                "{} sparse vs {} dense",
                human(summary.sparse_macs),
                human(summary.dense_macs)
            ),
        ),
        ("ITOP rate", format!("{:.3}", summary.itop)),
        ("epochs, steps", format!("{}, {}", summary.epochs, summary.steps)),
        (
            "wall time",
            format!("{:.0} s on {}", summary.wall_seconds, summary.device),
        ),
        (
            "throughput",
            format!(
                "{:.0} train / {:.0} eval {unit}/s",
                summary.train_samples_per_second, summary.eval_samples_per_second
            ),
        ),
    ]);
    if let Some(e) = &summary.execution {
        rows.push(("execution", execution_row(e)));
    }
    for (k, v) in rows {
        let _ = writeln!(r, "| {k} | {v} |");
    }
    let _ = writeln!(
        r,
        "\nThe ITOP rate (in-time over-parameterisation, Liu et al. 2021) is the fraction of the sparse layers' weights that were active at some point of training: 1 − sparsity for a fixed mask, more for a method that explores. The test set is reported only; the best epoch is chosen on the validation split."
    );
    if let Some(lm) = lm {
        let _ = writeln!(
            r,
            "\nLosses of a language model (`metrics.csv`, the curves) are in bits per token (bits per character for a char vocabulary): the mean next-token cross-entropy over ln 2; accuracies are next-token accuracies.\n\n## Generated text\n\nThe trained model continues the prompt (`[lm] prompt`, temperature `[lm] temperature`):\n\n````text\n{}\n````",
            lm.sample
        );
    }
    if let Some(stages) = &summary.stages {
        let _ = writeln!(
            r,
            "\n## Stages\n\nThe recipe's stages (`[[stage]]`), in order; a stage from epoch a to b trains epochs a+1 to b. Vertical lines mark their starts in the learning curves.\n\n| stage | method | target sparsity | epochs | steps |\n|---|---|---|---|---|"
        );
        for s in stages {
            let _ = writeln!(
                r,
                "| {} | {} | {} | {}–{} | {}–{} |",
                s.name,
                match &s.prune {
                    Some(p) => format!("one-shot {p}, then {}", s.method),
                    None => s.method.clone(),
                },
                pct(Some(s.target_sparsity)),
                s.start_epoch,
                s.end_epoch,
                s.start_step,
                s.end_step
            );
        }
    }
    let _ = writeln!(r, "\n## Learning curves\n\n![curves](plots/learning_curves.png)\n");
    let _ = writeln!(r, "## Layers\n\n![density](plots/layer_density.png)\n");
    let _ = writeln!(r, "Shapes are {SHAPE_LEGEND}.\n");
    let _ = writeln!(
        r,
        "| layer | shape | density | nonzeros | MACs (sparse / dense) |\n|---|---|---|---|---|"
    );
    for ((layer, stats), m) in sparse
        .layers()
        .iter()
        .zip(&sparse.report().layers)
        .zip(macs.iter().filter(|m| sparse.layers().iter().any(|l| l.path == m.path)))
    {
        let _ = writeln!(
            r,
            "| `{}` | {} | {:.2}% | {} | {} / {} |",
            stats.path,
            shape_text(layer.kind, &layer.shape),
            100.0 * stats.density(),
            stats.nonzeros,
            human(m.sparse),
            human(m.dense)
        );
    }
    r.push_str(&mask_plot);
    let _ = writeln!(
        r,
        "\n## Reproduce\n\n```\nsparseburn train --config {}/config.toml --out <new folder>\n```",
        dir.path.display()
    );
    dir.write("report.md", r.as_bytes())
}
