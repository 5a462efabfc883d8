//! What a run leaves in its folder: `config.toml`, `metrics.csv`,
//! `summary.json`, `checkpoint/`, `masks/`, `plots/` and `report.md`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// One row of `metrics.csv` (per epoch).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Lottery-ticket round (0 for other methods).
    pub round: usize,
    /// Epoch (0-based).
    pub epoch: u64,
    /// Optimizer steps so far in this round.
    pub step: u64,
    /// Mean training loss of the epoch.
    pub train_loss: f64,
    /// Training accuracy of the epoch.
    pub train_acc: f64,
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
    /// In-time over-parameterisation rate.
    pub itop: f64,
    /// Seconds of training in this epoch (timing: differs between runs).
    pub train_seconds: f64,
    /// Seconds of evaluation (timing).
    pub eval_seconds: f64,
}

const HEADER: &str = "round,epoch,step,train_loss,train_acc,test_loss,test_acc,sparsity,nonzeros,lr,drop_fraction,itop,train_seconds,eval_seconds";

impl EpochMetrics {
    fn csv(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{:.3},{:.3}",
            self.round,
            self.epoch,
            self.step,
            self.train_loss,
            self.train_acc,
            self.test_loss,
            self.test_acc,
            self.sparsity,
            self.nonzeros,
            self.lr,
            self.drop_fraction.map(|d| d.to_string()).unwrap_or_default(),
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

    /// Creates a fresh run folder; refuses to touch an existing non-empty one.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        if path.exists() && path.read_dir().map(|mut d| d.next().is_some()).unwrap_or(true) {
            anyhow::bail!(
                "{} already exists; choose another --out, or continue it with --resume {}",
                path.display(),
                path.display()
            );
        }
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
        })
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

    /// An existing run folder with a checkpoint.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let dir = Self {
            path: path.to_path_buf(),
        };
        if !dir.file("config.toml").is_file() {
            anyhow::bail!("{} is not a sparseburn run folder (no config.toml)", path.display());
        }
        if !dir.checkpoint().join("trainer.json").is_file() {
            anyhow::bail!(
                "{} has no checkpoint to resume from (it stopped before its first epoch ended); start it again",
                path.display()
            );
        }
        Ok(dir)
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
            writeln!(f, "{HEADER}")?;
        }
        writeln!(f, "{}", row.csv())?;
        Ok(())
    }

    /// Keeps only the rows before `(round, epoch)` (on resume).
    pub fn truncate_metrics(&self, round: usize, epoch: u64) -> anyhow::Result<()> {
        let rows = self.read_metrics()?;
        let kept: Vec<String> = std::iter::once(HEADER.to_string())
            .chain(
                rows.iter()
                    .filter(|r| (r.round, r.epoch) < (round, epoch))
                    .map(EpochMetrics::csv),
            )
            .collect();
        self.write("metrics.csv", (kept.join("\n") + "\n").as_bytes())
    }

    /// The rows of `metrics.csv`.
    pub fn read_metrics(&self) -> anyhow::Result<Vec<EpochMetrics>> {
        let path = self.file("metrics.csv");
        if !path.exists() {
            return Ok(Vec::new());
        }
        let text = std::fs::read_to_string(&path)?;
        text.lines()
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
    let f: Vec<&str> = line.split(',').collect();
    anyhow::ensure!(f.len() == 14, "expected 14 columns");
    Ok(EpochMetrics {
        round: f[0].parse()?,
        epoch: f[1].parse()?,
        step: f[2].parse()?,
        train_loss: f[3].parse()?,
        train_acc: f[4].parse()?,
        test_loss: f[5].parse()?,
        test_acc: f[6].parse()?,
        sparsity: f[7].parse()?,
        nonzeros: f[8].parse()?,
        lr: f[9].parse()?,
        drop_fraction: if f[10].is_empty() { None } else { Some(f[10].parse()?) },
        itop: f[11].parse()?,
        train_seconds: f[12].parse()?,
        eval_seconds: f[13].parse()?,
    })
}

/// `summary.json`.
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
    /// Target sparsity.
    pub target_sparsity: f64,
    /// Final test accuracy.
    pub test_accuracy: f64,
    /// Final test loss.
    pub test_loss: f64,
    /// Best test accuracy over epochs.
    pub best_test_accuracy: f64,
    /// Final training accuracy.
    pub train_accuracy: f64,
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
    /// In-time over-parameterisation rate.
    pub itop: f64,
    /// Epochs trained.
    pub epochs: u64,
    /// Optimizer steps.
    pub steps: u64,
    /// Wall time of the run, seconds (all sessions).
    pub wall_seconds: f64,
    /// Training throughput, samples per second.
    pub train_samples_per_second: f64,
    /// Evaluation throughput, samples per second.
    pub eval_samples_per_second: f64,
    /// Versions of sparseburn and Burn.
    pub versions: Versions,
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
