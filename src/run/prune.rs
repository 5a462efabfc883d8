//! `sparseburn prune`: one-shot pruning of a trained model, no training needed
//! ([`sparse_methods::oneshot`]: magnitude, Wanda (Sun et al. 2023), SparseGPT
//! (Frantar & Alistarh 2023)), written as the model file of `sparseburn export`
//! and evaluated on the dataset's test split before and after.
//!
//! The model comes from a finished dense run folder or from torchvision-format
//! weights; the calibration images are the first `samples` images of a seeded
//! shuffle of the dataset's training split (never the test split).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use sparse_core::SparseError;
use sparse_methods::oneshot::{self, OneShotConfig, OneShotOutcome};
use sparse_models::to_sparse::{SparseMasks, SparseOptions};
use sparse_models::{Classifier, ExportInfo, ExportedModel, FormatKind};

use super::config::ModelSection;
use super::config::RunConfig;
use super::export::{finished_run, write_new};
use super::infer::evaluate;
use super::models::{WithModel, with_model};
use super::train::compact_checkpoint::load_weights;
use super::train::task::{Evaluation, evaluate_with};
use crate::data::{BatchOrder, DataConfig, ImageBatcher, ImageSet};

/// Where the model to prune comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A finished dense run folder (`sparseburn train --method dense --out DIR`).
    Run(PathBuf),
    /// A safetensors file with torchvision key names, for this model.
    Weights {
        /// The architecture.
        model: ModelSection,
        /// The weights file.
        path: PathBuf,
    },
}

/// What `prune` does.
#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// The model.
    pub source: Source,
    /// The dataset: calibration from its training split, accuracies on its test
    /// split. `None` with a run: the run's own data settings.
    pub data: Option<DataConfig>,
    /// Use only the first N test images (0: all; `None` with a run: the run's own limit).
    pub test_limit: Option<usize>,
    /// Method, sparsity, pattern and layers.
    pub oneshot: OneShotConfig,
    /// Calibration images.
    pub samples: usize,
    /// The normalisation the weights expect, where it is not the dataset's own.
    pub normalisation: Normalisation,
    /// Seed of the calibration images' choice.
    pub seed: u64,
    /// Images per batch (calibration and evaluation).
    pub batch: usize,
    /// The layers' format in the file.
    pub format: FormatKind,
    /// The model file to write.
    pub out: PathBuf,
    /// Replace `out` if it exists.
    pub force: bool,
}

/// Per-channel normalisation of the pixels scaled to `[0, 1]`, `(x − mean) / std`,
/// given on the command line (`--mean`, `--std`); `None` keeps the dataset's own
/// statistics (what `sparseburn train` uses). torchvision's ImageNet weights
/// expect mean `0.485, 0.456, 0.406` and std `0.229, 0.224, 0.225`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Normalisation {
    /// Per-channel mean.
    pub mean: Option<Vec<f32>>,
    /// Per-channel standard deviation.
    pub std: Option<Vec<f32>>,
}

impl Normalisation {
    /// Sets the given values on `sets` (calibration and evaluation images and
    /// the written model's record), after checking one value per channel, each
    /// finite, and every std above 0.
    pub fn apply(&self, sets: [&mut ImageSet; 2]) -> anyhow::Result<()> {
        let channels = sets[0].shape[0];
        let check = |flag: &str, values: &[f32], positive: bool| -> anyhow::Result<()> {
            if values.len() != channels {
                bail!(
                    "--{flag} has {} value(s), but the {} images have {channels} channel(s); pass {channels} comma-separated value(s) (torchvision's ImageNet weights: --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225)",
                    values.len(),
                    sets[0].name.split('/').next().unwrap_or_default()
                );
            }
            if let Some(v) = values.iter().find(|v| !v.is_finite() || (positive && **v <= 0.0)) {
                let what = if positive {
                    "a finite number above 0"
                } else {
                    "a finite number"
                };
                bail!("--{flag} {v}: each value must be {what}");
            }
            Ok(())
        };
        if let Some(mean) = &self.mean {
            check("mean", mean, false)?;
        }
        if let Some(std) = &self.std {
            check("std", std, true)?;
        }
        for set in sets {
            if let Some(mean) = &self.mean {
                set.mean = mean.clone();
            }
            if let Some(std) = &self.std {
                set.std = std.clone();
            }
        }
        Ok(())
    }
}

/// One pruned layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrunedLayer {
    /// Weight path.
    pub path: String,
    /// Weight shape.
    pub shape: Vec<usize>,
    /// Pruned fraction.
    pub sparsity: f64,
    /// `‖WX − ŴX‖² / ‖WX‖²` over the calibration inputs.
    pub relative_error: Option<f64>,
}

/// What `prune` did and measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PruneReport {
    /// The model file written.
    pub file: String,
    /// Its size in bytes.
    pub bytes: usize,
    /// The model's name.
    pub model: String,
    /// `magnitude`, `wanda` or `sparsegpt`.
    pub method: String,
    /// `unstructured` or `N:M`.
    pub pattern: String,
    /// The sparsity asked for.
    pub target_sparsity: f64,
    /// The dataset's test split evaluated.
    pub dataset: String,
    /// Test images evaluated.
    pub test_images: usize,
    /// Calibration images (from the training split).
    pub calibration_samples: usize,
    /// Seed of their choice.
    pub seed: u64,
    /// Test accuracy of the dense model (fraction).
    pub accuracy_before: f64,
    /// Its mean test loss.
    pub loss_before: f64,
    /// Test accuracy of the written model (fraction).
    pub accuracy_after: f64,
    /// Its mean test loss.
    pub loss_after: f64,
    /// Pruned fraction of the pruned layers' weights.
    pub sparsity: f64,
    /// Kept weights of the pruned layers.
    pub nonzeros: usize,
    /// Per layer, in pruning (forward) order.
    pub layers: Vec<PrunedLayer>,
}

/// Refuses a run folder that is not a finished dense run.
fn dense_run(dir: &Path) -> anyhow::Result<super::export::FinishedRun> {
    let run = finished_run(dir)?;
    if let Some(method) = run.cfg.sparse_method_text() {
        bail!(
            "{} was trained sparse with {method}; one-shot pruning starts from a dense model: prune a run of `sparseburn train --method dense`, or export this one with `sparseburn export`",
            dir.display(),
        );
    }
    Ok(run)
}

/// The calibration batches: the first `samples` images of a seeded shuffle of `train`.
fn calibration(
    train: &ImageSet,
    samples: usize,
    seed: u64,
    batch: usize,
    batcher: &ImageBatcher,
    device: &Device,
) -> anyhow::Result<Vec<Tensor<4>>> {
    if samples == 0 {
        bail!("--calibration-samples 0: pruning needs calibration images; pass at least 1 (e.g. 128)");
    }
    if samples > train.len() {
        bail!(
            "--calibration-samples {samples} but {} has {} images; pass at most {}",
            train.name,
            train.len(),
            train.len()
        );
    }
    let order = BatchOrder {
        len: train.len(),
        batch_size: batch,
        seed,
    }
    .epoch(0);
    Ok(order[..samples]
        .chunks(batch.max(1))
        .map(|chunk| batcher.batch_indices(train, chunk, device, None).images)
        .collect())
}

/// How the trained weights get into the model.
enum Load<'a> {
    /// A run's checkpoint folder, with the run's config.
    Checkpoint(&'a Path, &'a RunConfig),
    Torchvision(&'a Path),
}

struct Job<'a> {
    opts: &'a PruneOptions,
    load: Load<'a>,
    train: &'a ImageSet,
    test: &'a ImageSet,
    device: &'a Device,
}

/// The dense model's evaluation, the outcome, and the pruned sparse twin.
type Pruned = (Evaluation, OneShotOutcome, sparse_models::SparseModel);

impl WithModel for Job<'_> {
    type Output = anyhow::Result<Pruned>;

    fn run<M: Classifier + 'static>(self, make: &dyn Fn() -> M) -> Self::Output {
        let Job {
            opts,
            load,
            train,
            test,
            device,
        } = self;
        let model = match load {
            Load::Checkpoint(checkpoint, cfg) => load_weights(cfg, make(), checkpoint).map_err(|e| match opts.data {
                Some(_) => anyhow::anyhow!(
                    "the --calibration dataset ({} images, {} classes) does not fit the run's model; drop --calibration to use the run's own data, or pass the dataset it was trained on",
                    shape_text(train.shape),
                    train.num_classes()
                ),
                None => e,
            })?,
            Load::Torchvision(path) => sparse_models::import::load_torchvision(make(), path).with_context(|| {
                format!(
                    "the weights do not fit this model for {} images with {} classes; pass a torchvision-format file of that model",
                    shape_text(train.shape),
                    train.num_classes()
                )
            })?,
        };
        let batcher = ImageBatcher::new(train);
        let images = calibration(train, opts.samples, opts.seed, opts.batch, &batcher, device)?;
        let config = OneShotConfig {
            filter: merged_filter(&opts.oneshot.filter, &model.sparsity_filter()),
            ..opts.oneshot.clone()
        };
        let outcome = oneshot::prune(&model, &images, &config).map_err(|e| match e {
            SparseError::NmDoesNotDivide { .. } => {
                anyhow::anyhow!("{e} (leave it dense with --exclude GLOB, --dense-first-layer or --dense-last-layer)")
            }
            e => e.into(),
        })?;
        let dense = model.valid();
        let before = evaluate_with(&|x| dense.forward(x), test, &batcher, device, opts.batch);
        let model = outcome.apply(model)?;
        let options = SparseOptions {
            format: opts.format,
            ..SparseOptions::default()
        };
        let sparse = model.to_sparse_model(&SparseMasks(outcome.masks()), &options)?;
        Ok((before, outcome, sparse))
    }
}

/// The model's own policy (e.g. MobileNet's dense depthwise convolutions) plus the user's.
fn merged_filter(user: &sparse_core::LayerFilter, model: &sparse_core::LayerFilter) -> sparse_core::LayerFilter {
    let mut f = model.clone();
    f.include.extend(user.include.iter().cloned());
    f.exclude.extend(user.exclude.iter().cloned());
    f.skip_first |= user.skip_first;
    f.skip_last |= user.skip_last;
    f.skip_depthwise |= user.skip_depthwise;
    f
}

fn shape_text([c, h, w]: [usize; 3]) -> String {
    format!("{c}x{h}x{w}")
}

/// Runs `sparseburn prune`: writes `opts.out` and returns what it measured.
pub fn prune(opts: &PruneOptions, device: &Device) -> anyhow::Result<PruneReport> {
    sparse_core::error::check_sparsity(opts.oneshot.sparsity).context("--sparsity")?;
    if opts.out.exists() && !opts.force {
        bail!(
            "{} exists; pass --force to overwrite it, or choose another -o",
            opts.out.display()
        );
    }
    let (model, data, load, run) = match &opts.source {
        Source::Run(dir) => {
            let run = dense_run(dir)?;
            let data = opts.data.clone().unwrap_or_else(|| run.cfg.data.loader());
            (run.cfg.model.clone(), data, None, Some(run))
        }
        Source::Weights { model, path } => {
            if !path.is_file() {
                bail!(
                    "{}: no such weights file; pass a safetensors file with torchvision key names to --init-weights",
                    path.display()
                );
            }
            let Some(data) = opts.data.clone() else {
                bail!("--init-weights needs a dataset: pass --calibration (e.g. fashion-mnist)");
            };
            (model.clone(), data, Some(path.as_path()), None)
        }
    };
    let data = DataConfig {
        train_limit: 0,
        test_limit: opts.test_limit.unwrap_or(data.test_limit),
        ..data
    };
    let (mut train, mut test) = data.load().context("loading the calibration dataset")?;
    opts.normalisation.apply([&mut train, &mut test])?;
    let load = match (&run, load) {
        (Some(run), _) => Load::Checkpoint(&run.checkpoint, &run.cfg),
        (None, Some(path)) => Load::Torchvision(path),
        (None, None) => bail!("no model to prune: pass --run DIR or --model and --init-weights FILE"),
    };
    let job = Job {
        opts,
        load,
        train: &train,
        test: &test,
        device,
    };
    let (before, outcome, sparse) = with_model(&model, train.shape, train.num_classes(), device, job)??;
    let method = opts.oneshot.method.name();
    let mut exported = ExportedModel {
        info: ExportInfo {
            model: model.name.name().into(),
            config: serde_json::to_value(&model).unwrap_or_default(),
            input: train.shape,
            classes: train.classes.clone(),
            mean: train.mean.clone(),
            std: train.std.clone(),
            format: opts.format.name().into(),
            dataset: train.name.split('/').next().unwrap_or_default().into(),
            method: format!("one-shot {method}"),
            test_accuracy: 0.0,
            test_loss: 0.0,
            sparsity: outcome.sparsity(),
            nonzeros: outcome.layers.iter().map(|l| l.mask.count_ones()).sum(),
        },
        model: sparse,
    };
    let after = evaluate(&exported, &test, opts.batch, device);
    exported.info.test_accuracy = after.accuracy;
    exported.info.test_loss = after.loss;
    let bytes = exported.to_bytes()?;
    write_new(&opts.out, &bytes, opts.force)?;
    Ok(PruneReport {
        file: opts.out.display().to_string(),
        bytes: bytes.len(),
        model: exported.info.model.clone(),
        method: method.into(),
        pattern: opts.oneshot.pattern.to_string(),
        target_sparsity: opts.oneshot.sparsity,
        dataset: test.name.clone(),
        test_images: test.len(),
        calibration_samples: opts.samples,
        seed: opts.seed,
        accuracy_before: before.accuracy,
        loss_before: before.loss,
        accuracy_after: after.accuracy,
        loss_after: after.loss,
        sparsity: exported.info.sparsity,
        nonzeros: exported.info.nonzeros,
        layers: outcome
            .layers
            .iter()
            .map(|l| PrunedLayer {
                path: l.path.clone(),
                shape: l.shape.clone(),
                sparsity: l.sparsity(),
                relative_error: l.relative_error(),
            })
            .collect(),
    })
}

/// The report as the command prints it: a per-layer table, then the accuracies.
pub fn render(r: &PruneReport) -> String {
    let pct = |x: f64| format!("{:.2}%", 100.0 * x);
    let width = r.layers.iter().map(|l| l.path.len()).max().unwrap_or(5).max(5);
    let mut s = format!(
        "{:<width$}  {:>14}  {:>9}  {:>14}\n",
        "layer", "shape", "sparsity", "rel. error"
    );
    for l in &r.layers {
        let shape: Vec<String> = l.shape.iter().map(ToString::to_string).collect();
        let error = l.relative_error.map_or("-".into(), |e| format!("{e:.4}"));
        s.push_str(&format!(
            "{:<width$}  {:>14}  {:>9}  {:>14}\n",
            l.path,
            shape.join("x"),
            pct(l.sparsity),
            error
        ));
    }
    s.push_str(&format!(
        "\n{} {} {} at {} on {} calibration images (seed {}): sparsity {}, {} nonzeros\n",
        r.model,
        r.method,
        r.pattern,
        pct(r.target_sparsity),
        r.calibration_samples,
        r.seed,
        pct(r.sparsity),
        r.nonzeros
    ));
    s.push_str(&format!(
        "{} ({} images): accuracy before {} ({}), after {} ({}); loss {:.4} -> {:.4}\n",
        r.dataset,
        r.test_images,
        pct(r.accuracy_before),
        r.accuracy_before,
        pct(r.accuracy_after),
        r.accuracy_after,
        r.loss_before,
        r.loss_after
    ));
    s.push_str(&format!("wrote {} ({} bytes)\n", r.file, r.bytes));
    s
}
