//! What a run leaves in its folder: `config.toml`, `metrics.csv`,
//! `summary.json`, `checkpoint/`, `masks/`, `plots/` and `report.md`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// One row of `metrics.csv` (per epoch). Accuracies, sparsity, the drop
/// fraction and the ITOP rate are fractions in `[0, 1]`; losses are the mean
/// cross-entropy in nats; times are seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Round of iterative pruning (0 for other methods).
    pub round: usize,
    /// Epochs completed in this round (1 after the first epoch, as the console counts).
    pub epoch: u64,
    /// Optimizer steps so far in this round.
    pub step: u64,
    /// Mean training loss of the epoch.
    pub train_loss: f64,
    /// Training accuracy of the epoch.
    pub train_acc: f64,
    /// Validation loss (none without a validation split).
    pub val_loss: Option<f64>,
    /// Validation accuracy (none without a validation split).
    pub val_acc: Option<f64>,
    /// Test loss.
    pub test_loss: f64,
    /// Test accuracy.
    pub test_acc: f64,
    /// Global sparsity of the sparse layers.
    pub sparsity: f64,
    /// Active weights of the sparse layers.
    pub nonzeros: usize,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Drop fraction at the last step (empty for methods without one).
    pub drop_fraction: Option<f64>,
    /// In-time over-parameterisation rate: the fraction of the sparse layers'
    /// weights that have been active at some point of training.
    pub itop: f64,
    /// The stage of a recipe (none for a one-stage run: then `metrics.csv` has
    /// no `stage` column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Seconds of training in this epoch (timing: differs between runs).
    pub train_seconds: f64,
    /// Seconds of evaluation (timing).
    pub eval_seconds: f64,
}

const HEADER: &str = "round,epoch,step,train_loss,train_acc,val_loss,val_acc,test_loss,test_acc,sparsity,nonzeros,lr,drop_fraction,itop,train_seconds,eval_seconds";

/// The header of a recipe's `metrics.csv`: a `stage` column before the timings.
const HEADER_STAGES: &str = "round,epoch,step,train_loss,train_acc,val_loss,val_acc,test_loss,test_acc,sparsity,nonzeros,lr,drop_fraction,itop,stage,train_seconds,eval_seconds";

/// Columns of `metrics.csv` (one more, `stage`, in a recipe's).
pub const COLUMNS: usize = 16;

/// The header for rows like `row`.
fn header(row: &EpochMetrics) -> &'static str {
    if row.stage.is_some() { HEADER_STAGES } else { HEADER }
}

fn optional(x: Option<f64>) -> String {
    x.map(|d| d.to_string()).unwrap_or_default()
}

impl EpochMetrics {
    fn csv(&self) -> String {
        let stage = self.stage.as_ref().map(|s| format!("{s},")).unwrap_or_default();
        format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{stage}{:.3},{:.3}",
            self.round,
            self.epoch,
            self.step,
            self.train_loss,
            self.train_acc,
            optional(self.val_loss),
            optional(self.val_acc),
            self.test_loss,
            self.test_acc,
            self.sparsity,
            self.nonzeros,
            self.lr,
            optional(self.drop_fraction),
            self.itop,
            self.train_seconds,
            self.eval_seconds
        )
    }
}

/// The run folder.
#[derive(Clone, Debug)]
pub struct RunDir {
    /// Its path.
    pub path: PathBuf,
}

impl RunDir {
    /// `path/name`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The checkpoint folder (falling back to the previous one if a save was cut short).
    pub fn checkpoint(&self) -> PathBuf {
        let current = self.file("checkpoint");
        let old = self.file("checkpoint.old");
        if !current.join("trainer.json").is_file() && old.join("trainer.json").is_file() {
            return old;
        }
        current
    }

    /// Removes what a run that failed before its first epoch or checkpoint wrote
    /// into `path` (its config, early plots), so the same `--out` can be used
    /// again; the folder itself goes too if the run `created` it. A folder with
    /// metrics or a checkpoint is kept.
    pub fn discard_unstarted(path: &Path, created: bool) {
        let started = ["metrics.csv", "checkpoint", "checkpoint.old"]
            .iter()
            .any(|f| path.join(f).exists());
        if started {
            return;
        }
        if created {
            let _ = std::fs::remove_dir_all(path);
            return;
        }
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            let p = entry.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }

    /// Writes `name` atomically.
    pub fn write(&self, name: &str, contents: &[u8]) -> anyhow::Result<()> {
        write_atomic(&self.file(name), contents)
    }

    /// Appends a row to `metrics.csv` (writing the header first if needed).
    pub fn append_metrics(&self, row: &EpochMetrics) -> anyhow::Result<()> {
        let path = self.file("metrics.csv");
        let new = !path.exists();
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        if new {
            writeln!(f, "{}", header(row))?;
        }
        writeln!(f, "{}", row.csv())?;
        Ok(())
    }

    /// Keeps only the rows up to `(round, epoch)` (on resume: the epochs the checkpoint has).
    pub fn truncate_metrics(&self, round: usize, epoch: u64) -> anyhow::Result<()> {
        let rows = self.read_metrics()?;
        let kept: Vec<&EpochMetrics> = rows.iter().filter(|r| (r.round, r.epoch) <= (round, epoch)).collect();
        let Some(first) = kept.first() else {
            // no row: the first one appended writes the header its kind needs
            let path = self.file("metrics.csv");
            if path.exists() {
                std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            }
            return Ok(());
        };
        let lines: Vec<String> = std::iter::once(header(first).to_string())
            .chain(kept.iter().map(|r| r.csv()))
            .collect();
        self.write("metrics.csv", (lines.join("\n") + "\n").as_bytes())
    }

    /// The rows of `metrics.csv`.
    pub fn read_metrics(&self) -> anyhow::Result<Vec<EpochMetrics>> {
        let path = self.file("metrics.csv");
        if !path.exists() {
            return Ok(Vec::new());
        }
        let text = std::fs::read_to_string(&path)?;
        // a row cut short by a kill has no line end: it was never written
        let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
        complete
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(|l| parse_row(l).with_context(|| format!("{}: bad row `{l}`", path.display())))
            .collect()
    }
}

/// Writes `contents` to `path` atomically: a temporary file in the same folder,
/// flushed to disk, then renamed over `path` (tempfile's `persist`), so a crash
/// leaves either the old or the new file, never a torn one.
pub fn write_atomic(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut file = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("writing into {}", dir.display()))?;
    file.write_all(contents)
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    file.persist(path)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.error))?;
    Ok(())
}

fn parse_row(line: &str) -> anyhow::Result<EpochMetrics> {
    let mut f: Vec<&str> = line.split(',').collect();
    anyhow::ensure!(
        f.len() == COLUMNS || f.len() == COLUMNS + 1,
        "expected {COLUMNS} columns ({} with a recipe's stage)",
        COLUMNS + 1
    );
    let stage = (f.len() > COLUMNS).then(|| f.remove(14).to_string());
    let optional = |s: &str| -> anyhow::Result<Option<f64>> { Ok(if s.is_empty() { None } else { Some(s.parse()?) }) };
    Ok(EpochMetrics {
        round: f[0].parse()?,
        epoch: f[1].parse()?,
        step: f[2].parse()?,
        train_loss: f[3].parse()?,
        train_acc: f[4].parse()?,
        val_loss: optional(f[5])?,
        val_acc: optional(f[6])?,
        test_loss: f[7].parse()?,
        test_acc: f[8].parse()?,
        sparsity: f[9].parse()?,
        nonzeros: f[10].parse()?,
        lr: f[11].parse()?,
        drop_fraction: optional(f[12])?,
        itop: f[13].parse()?,
        stage,
        train_seconds: f[14].parse()?,
        eval_seconds: f[15].parse()?,
    })
}

/// `summary.json`. Accuracies and sparsities are fractions in `[0, 1]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Model name.
    pub model: String,
    /// Method name.
    pub method: String,
    /// Dataset name.
    pub dataset: String,
    /// Backend.
    pub device: String,
    /// Seed.
    pub seed: u64,
    /// Target sparsity (0 for the dense baseline).
    pub target_sparsity: f64,
    /// Test accuracy after the last epoch (none for a DQN run, which has no
    /// test set: absent from its `summary.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
    /// Test loss after the last epoch (none for a DQN run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_loss: Option<f64>,
    /// Training accuracy of the last epoch (none for a DQN run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_accuracy: Option<f64>,
    /// Images held out of the training set for validation (0: none).
    pub validation_images: usize,
    /// The best epoch (of the last round), 1-based: by validation accuracy for an
    /// image classifier, by validation bits per token for a language model, by
    /// mean evaluation return for a DQN agent; without a validation split, the
    /// last epoch (no selection on the test set).
    pub best_epoch: u64,
    /// The best validation accuracy (none without a validation split).
    pub best_validation_accuracy: Option<f64>,
    /// Test accuracy at the best epoch (reported, never used for the choice;
    /// none for a DQN run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy_at_best: Option<f64>,
    /// Global sparsity of the sparse layers.
    pub sparsity: f64,
    /// Active weights of the sparse layers.
    pub nonzeros: usize,
    /// Weights of the sparse layers.
    pub sparse_layer_weights: usize,
    /// Trainable parameters of the whole model.
    pub parameters: usize,
    /// Forward multiply-adds per sample, dense.
    pub dense_macs: u64,
    /// Forward multiply-adds per sample with the masks.
    pub sparse_macs: u64,
    /// ITOP rate: the fraction of the sparse layers' weights active at some point.
    pub itop: f64,
    /// Epochs trained (per round).
    pub epochs: u64,
    /// Optimizer steps (of the last round).
    pub steps: u64,
    /// Wall time of the run, seconds (all sessions).
    pub wall_seconds: f64,
    /// Training throughput, samples per second.
    pub train_samples_per_second: f64,
    /// Evaluation throughput, samples per second.
    pub eval_samples_per_second: f64,
    /// Versions of sparseburn and Burn.
    pub versions: Versions,
    /// How the sparse layers trained (`--execution`), and the peak memory
    /// (absent in summaries written before it existed, and for DQN runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<crate::run::execution::ExecutionSummary>,
    /// A recipe's stages, in order (absent for a one-stage run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<StageSummary>>,
    /// What a language-model run adds (`task = "lm"`; absent for image runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lm: Option<LmSummary>,
    /// What a DQN run adds (`task = "rl"`; absent otherwise). A DQN run has no
    /// classes nor test set: its accuracy and loss fields are absent, its
    /// multiply-adds are not counted (0), `steps` counts environment steps and
    /// `best_epoch` is the epoch of the best mean evaluation return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rl: Option<crate::run::train::rl::RlSummary>,
}

/// Where a stage of a recipe starts and ends: epochs and optimizer steps of
/// the run, the start exclusive (a stage from epoch 2 to 5 trains epochs 3, 4, 5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageSummary {
    /// Its name.
    pub name: String,
    /// Its method.
    pub method: String,
    /// The one-shot pruning at its start (`wanda`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<String>,
    /// Its target sparsity (0 for a dense stage).
    pub target_sparsity: f64,
    /// Epochs of the run before it.
    pub start_epoch: u64,
    /// Epochs of the run at its end.
    pub end_epoch: u64,
    /// Optimizer steps of the run before it.
    pub start_step: u64,
    /// Optimizer steps of the run at its end.
    pub end_step: u64,
}

/// The language model's figures in `summary.json` (losses there are in bits per token).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LmSummary {
    /// `char` or `byte`.
    pub tokens: String,
    /// Vocabulary size.
    pub vocab: usize,
    /// Tokens of the training, validation and test splits (as evaluated).
    pub split_tokens: [usize; 3],
    /// Validation bits per token after the last epoch.
    pub validation_bits_per_token: f64,
    /// Test bits per token after the last epoch.
    pub test_bits_per_token: f64,
    /// Validation bits per token of the best epoch (`best_epoch`: the lowest;
    /// none in summaries written before it was recorded).
    #[serde(default)]
    pub best_validation_bits_per_token: Option<f64>,
    /// Test bits per token at the best epoch (reported, never used for the choice).
    #[serde(default)]
    pub test_bits_per_token_at_best: Option<f64>,
    /// Text generated from the prompt by the trained model (also in `report.md`).
    pub sample: String,
}

/// Software versions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Versions {
    /// sparseburn.
    pub sparseburn: String,
    /// Burn.
    pub burn: String,
}

impl Default for Versions {
    fn default() -> Self {
        Self {
            sparseburn: env!("CARGO_PKG_VERSION").into(),
            burn: "0.22.1".into(),
        }
    }
}
