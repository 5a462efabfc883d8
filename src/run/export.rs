//! `sparseburn export`: a finished run folder turned into one deployable model
//! file (see [`sparse_models::exported`]): the checkpoint's weights and masks
//! converted to the sparse twin, with the dataset's shape, classes and
//! normalisation and the run's recorded figures in the metadata.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::module::Module;
use burn::tensor::Device;
use sparse_methods::BuildContext;
use sparse_models::to_sparse::{SparseMasks, SparseOptions};
use sparse_models::{Classifier, ExportInfo, ExportedLanguageModel, ExportedModel, FormatKind};

use super::artifacts::{RunDir, Summary};
use super::config::RunConfig;
use super::models::{WithModel, with_model};
use super::task_kind::TaskKind;
use super::train::checksum;
use super::train::compact_checkpoint::load_weights;
use crate::data::ImageSet;

/// A finished run folder, checked.
pub(crate) struct FinishedRun {
    /// The run folder.
    pub dir: PathBuf,
    /// The run's settings.
    pub cfg: RunConfig,
    /// Its recorded figures.
    pub summary: Summary,
    /// Its final checkpoint folder.
    pub checkpoint: PathBuf,
}

/// The finished run in `dir`, with its checkpoint's checksums verified.
pub(crate) fn finished_run(dir: &Path) -> anyhow::Result<FinishedRun> {
    if !dir.join("config.toml").is_file() {
        bail!(
            "{} is not a sparseburn run folder (no config.toml); pass a folder written by `sparseburn train --out`",
            dir.display()
        );
    }
    let summary_path = dir.join("summary.json");
    if !summary_path.is_file() {
        bail!(
            "{} is an unfinished run (no summary.json); finish it with `sparseburn train --resume {}` and export it then",
            dir.display(),
            dir.display()
        );
    }
    let cfg = RunConfig::load(&dir.join("config.toml"))
        .with_context(|| format!("{} is not a sparseburn run folder", dir.display()))?;
    let summary: Summary = serde_json::from_str(&std::fs::read_to_string(&summary_path)?)
        .with_context(|| format!("{}: not a run summary; train the run again", summary_path.display()))?;
    let checkpoint = RunDir {
        path: dir.to_path_buf(),
    }
    .checkpoint();
    if !checkpoint.is_dir() {
        bail!(
            "{} has a summary but no checkpoint/ to export; train the run again",
            dir.display()
        );
    }
    checksum::verify(&checkpoint)?;
    Ok(FinishedRun {
        dir: dir.to_path_buf(),
        cfg,
        summary,
        checkpoint,
    })
}

/// Refuses methods that change the forward pass (a reparameterization): the
/// stored weights alone are not what their model computes.
pub(crate) fn check_exportable(cfg: &RunConfig, summary: &Summary) -> anyhow::Result<()> {
    // a recipe's model is its last stage's
    let cfg = cfg.final_config();
    let steps = summary.steps.max(1);
    let context = BuildContext {
        steps_per_epoch: (steps / summary.epochs.max(1)).max(1),
        sparsity: cfg.target_sparsity(),
        ..BuildContext::new(steps)
    };
    let method = cfg
        .method
        .build(&context)
        .with_context(|| format!("rebuilding the run's method `{}` to check it", cfg.method.name()))?;
    if method.reparameterization().is_some() {
        bail!(
            "cannot export a `{}` run: the method changes the model's forward pass (a reparameterization), so the saved weights alone do not give its accuracy; export runs of methods without one (see `sparseburn methods`)",
            method.name()
        );
    }
    Ok(())
}

/// `model` with the weights saved in the run checkpoint `checkpoint`.
pub(crate) fn load_checkpoint<M: Module>(model: M, checkpoint: &Path) -> anyhow::Result<M> {
    model.try_load_file(checkpoint.join("model")).map_err(|e| {
        anyhow::anyhow!(
            "{}: the saved model does not fit the run's config.toml ({e:?}); was the folder changed?",
            checkpoint.display()
        )
    })
}

/// Refuses masks of weights that `model` does not have (a checkpoint of another run).
pub(crate) fn check_mask_paths<M: Module>(model: &M, masks: &SparseMasks, checkpoint: &Path) -> anyhow::Result<()> {
    let known = sparse_core::discovery::all_weights(model);
    if let Some(path) = masks.0.keys().find(|p| !known.iter().any(|l| &l.path == *p)) {
        bail!(
            "{}: a mask for `{path}`, which the model does not have; the checkpoint is not this run's",
            checkpoint.display()
        );
    }
    Ok(())
}

/// The masks saved in a run checkpoint, by weight path.
pub(crate) fn checkpoint_masks(checkpoint: &Path) -> anyhow::Result<SparseMasks> {
    let masks = sparse_core::state::read_masks(checkpoint.join("sparse.safetensors"))?
        .into_iter()
        .map(|(path, _, mask)| (path, mask))
        .collect();
    Ok(SparseMasks(masks))
}

struct Convert<'a> {
    cfg: &'a RunConfig,
    checkpoint: &'a Path,
    masks: SparseMasks,
    options: SparseOptions,
}

impl WithModel for Convert<'_> {
    type Output = anyhow::Result<sparse_models::SparseModel>;

    fn run<M: Classifier + 'static>(self, make: &dyn Fn() -> M) -> Self::Output {
        let model = load_weights(self.cfg, make(), self.checkpoint)?;
        check_mask_paths(&model, &self.masks, self.checkpoint)?;
        Ok(model.to_sparse_model(&self.masks, &self.options)?)
    }
}

/// A model file's contents: an image classifier or a language model.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one model per command: its size does not matter
pub enum Exported {
    /// An image classifier ([`ExportedModel`]).
    Image(ExportedModel),
    /// A language model ([`ExportedLanguageModel`]).
    Text(ExportedLanguageModel),
}

impl Exported {
    /// The file's bytes.
    pub fn to_bytes(&self) -> anyhow::Result<Vec<u8>> {
        Ok(match self {
            Self::Image(m) => m.to_bytes()?,
            Self::Text(m) => m.to_bytes()?,
        })
    }

    /// Per-layer formats, by layer name.
    pub fn layer_formats(&self) -> BTreeMap<String, &'static str> {
        match self {
            Self::Image(m) => m.layer_formats(),
            Self::Text(m) => m.layer_formats(),
        }
    }

    /// One line: the model, its data, the figure the run recorded and the sparsity.
    pub fn describe(&self) -> String {
        match self {
            Self::Image(m) => format!(
                "{} on {}, test accuracy {:.2}% as recorded, sparsity {:.2}%",
                m.info.model,
                m.info.dataset,
                100.0 * m.info.test_accuracy,
                100.0 * m.info.sparsity
            ),
            Self::Text(m) => format!(
                "{} on {}, test {:.4} bits per token as recorded, sparsity {:.2}%",
                m.info.model,
                m.info.corpus,
                m.info.test_bits_per_token,
                100.0 * m.info.sparsity
            ),
        }
    }
}

/// The finished run in `dir`, image or language model, as an exported model
/// (every layer in `format`, or chosen per layer by `auto`).
pub fn exported(dir: &Path, format: FormatKind, device: &Device) -> anyhow::Result<Exported> {
    let run = finished_run(dir)?;
    match run.cfg.task {
        TaskKind::Lm => Ok(Exported::Text(super::export_lm::exported_lm(&run, format, device)?)),
        _ => Ok(Exported::Image(image_model(&run, format, device)?)),
    }
}

/// The image run in `dir` as an exported model (every layer in `format`, or chosen per layer by `auto`).
pub fn exported_model(dir: &Path, format: FormatKind, device: &Device) -> anyhow::Result<ExportedModel> {
    image_model(&finished_run(dir)?, format, device)
}

fn image_model(run: &FinishedRun, format: FormatKind, device: &Device) -> anyhow::Result<ExportedModel> {
    let dir = &run.dir;
    match run.cfg.task {
        TaskKind::Image => {}
        TaskKind::Lm => bail!(
            "{} is a language-model run; `sparseburn export` and `bench` take it as one, the image-model API does not",
            dir.display()
        ),
        TaskKind::Rl => bail!(
            "{} is a DQN run: its Q-network is not exported (export takes image-classification and language-model runs)",
            dir.display()
        ),
    }
    check_exportable(&run.cfg, &run.summary)?;
    let (train, _) = run
        .cfg
        .data
        .loader()
        .load()
        .context("loading the run's dataset (for its image shape, classes and normalisation)")?;
    let convert = Convert {
        cfg: &run.cfg,
        checkpoint: &run.checkpoint,
        masks: checkpoint_masks(&run.checkpoint)?,
        options: SparseOptions {
            format,
            ..SparseOptions::default()
        },
    };
    let model = with_model(&run.cfg.model, train.shape, train.num_classes(), device, convert)?
        .with_context(|| format!("exporting {} as {}", dir.display(), format.name()))?;
    Ok(ExportedModel {
        info: info(run, &train, format),
        model,
    })
}

fn info(run: &FinishedRun, train: &ImageSet, format: FormatKind) -> ExportInfo {
    let s = &run.summary;
    ExportInfo {
        model: s.model.clone(),
        config: serde_json::to_value(&run.cfg.model).unwrap_or_default(),
        input: train.shape,
        classes: train.classes.clone(),
        mean: train.mean.clone(),
        std: train.std.clone(),
        format: format.name().into(),
        dataset: s.dataset.clone(),
        method: s.method.clone(),
        // an image run always has both (only a DQN run lacks them)
        test_accuracy: s.test_accuracy.unwrap_or(f64::NAN),
        test_loss: s.test_loss.unwrap_or(f64::NAN),
        sparsity: s.sparsity,
        nonzeros: s.nonzeros,
    }
}

/// Writes `bytes` to `path` atomically (tempfile's `persist`); refuses to
/// replace an existing file unless `force`.
pub fn write_new(path: &Path, bytes: &[u8], force: bool) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        bail!("{}: the folder does not exist; create it first", dir.display());
    }
    let mut file = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("writing into {}", dir.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    let persisted = if force {
        file.persist(path)
    } else {
        file.persist_noclobber(path)
    };
    persisted.map_err(|e| match e.error.kind() {
        std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
            "{} exists; pass --force to overwrite it, or choose another -o",
            path.display()
        ),
        _ => anyhow::anyhow!("{}: {}", path.display(), e.error),
    })?;
    Ok(())
}

/// `sparseburn export`: writes the run in `dir` to `out`; returns the model and the file's size.
pub fn export(dir: &Path, format: FormatKind, out: &Path, force: bool) -> anyhow::Result<(Exported, usize)> {
    if out.exists() && !force {
        bail!(
            "{} exists; pass --force to overwrite it, or choose another -o",
            out.display()
        );
    }
    let model = exported(dir, format, &Device::flex())?;
    let bytes = model.to_bytes()?;
    write_new(out, &bytes, force)?;
    Ok((model, bytes.len()))
}
