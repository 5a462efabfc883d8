//! The configuration of a run, written to `config.toml` so that
//! `sparseburn train --config runs/X/config.toml` repeats the run.
//!
//! It is a tree of typed configs, most of them the library's own: the method is
//! a [`MethodConfig`] (each method's config, tagged by `name`), the sparsity a
//! [`Distribution`] and a [`Pattern`], the optimizer an [`OptimizerConfig`], the
//! penalty a [`RegularizationConfig`]. Reading a file goes through one path,
//! [`RunConfig::from_table`], which is also how command-line options are applied
//! (as a table laid over the file): every key is checked (a typo is an error
//! naming the key and listing the known ones), missing keys take their defaults,
//! and the result is *resolved*: what does not apply to this run is dropped
//! (a RigL run has no GMP switches, an MLP no width multiplier, only image
//! folders have an image size; the dense baseline has no `[sparsity]`), and what
//! the method implies is filled in (SRigL's constant fan-in, SR-STE's 2:4 at 50%).
//! Writing the resolved config and reading it again gives the same config and
//! the same text.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::config::Config;
use serde_json::{Map, Value};
use sparse_core::{BackendKind, Distribution, LayerFilter, OptimizerConfig, Pattern, SparseInit, SparsityConfig};
use sparse_methods::registry::fill_defaults;
use sparse_methods::{DenseConfig, MethodConfig, OutputLayer, RegularizationConfig, RigLConfig};
use sparse_models::{MobileNetV1Config, ResNetConfig, ResNetDepth};

use super::execution::Execution;
use super::lr::LrSchedule;
use super::models::ModelKind;
use super::recipe::{Stage, resolve_stages, set_total_epochs, take_stages};
use super::task_kind::{RlEnv, TaskKind};
use crate::data::text::TokenKind;
use crate::data::{DataConfig, DatasetKind};

/// Which model.
#[derive(Config, Debug, PartialEq)]
pub struct ModelSection {
    /// The architecture.
    #[config(default = "ModelKind::Mlp")]
    pub name: ModelKind,
    /// MobileNetV1 only: width multiplier α.
    #[config(default = "None")]
    pub width: Option<f64>,
    /// MLP only: the hidden layers' widths (unset: LeNet-300-100's `[300, 100]`).
    #[config(default = "None")]
    pub hidden: Option<Vec<usize>>,
    /// ResNets only: γ = 0 in the last BN of each block.
    #[config(default = "None")]
    pub zero_init_residual: Option<bool>,
    /// Start from these weights: a safetensors file with torchvision key names
    /// (dense-to-sparse fine-tuning, e.g. GMP from a pretrained ResNet).
    #[config(default = "None")]
    pub init_weights: Option<PathBuf>,
    /// The sparse layer whose mask is plotted over time (default: the largest).
    #[config(default = "None")]
    pub mask_layer: Option<String>,
}

/// Which data.
#[derive(Config, Debug, PartialEq)]
pub struct DataSection {
    /// The dataset.
    #[config(default = "DatasetKind::FashionMnist")]
    pub dataset: DatasetKind,
    /// Folder with the files (default: the dataset's usual place).
    #[config(default = "None")]
    pub data_dir: Option<PathBuf>,
    /// (Fashion-)MNIST and CIFAR-10: download the dataset if it is missing.
    #[config(default = "None")]
    pub download: Option<bool>,
    /// Image folders only: side of the resized square images.
    #[config(default = "None")]
    pub image_size: Option<usize>,
    /// Image folders only: 1 (grayscale) or 3 (RGB) channels.
    #[config(default = "None")]
    pub channels: Option<usize>,
    /// Image folders only: stop at an unreadable image instead of skipping it.
    #[config(default = "None")]
    pub strict_images: Option<bool>,
    /// Images held out of the training set for validation (default: the
    /// dataset's, see `sparseburn::data::split`; 0 = none).
    #[config(default = "None")]
    pub validation: Option<usize>,
    /// Use only the first N training images after the split (0 = all).
    #[config(default = 0)]
    pub train_limit: usize,
    /// Use only the first N test images (0 = all).
    #[config(default = 0)]
    pub test_limit: usize,
    /// Random crop (4 px padding) and horizontal flip (default: on for CIFAR-10).
    #[config(default = "None")]
    pub augment: Option<bool>,
}

impl DataSection {
    /// The loader's settings (the training limit is applied after the split).
    pub fn loader(&self) -> DataConfig {
        let d = DataConfig::default();
        DataConfig {
            dataset: self.dataset,
            data_dir: self.data_dir.clone(),
            download: self.download.unwrap_or(d.download),
            image_size: self.image_size.unwrap_or(d.image_size),
            channels: self.channels.unwrap_or(d.channels),
            strict_images: self.strict_images.unwrap_or(d.strict_images),
            train_limit: 0,
            test_limit: self.test_limit,
            augment: self.augment,
        }
    }
}

/// How sparse and in which shape (the model's own policy, e.g. MobileNet's dense
/// depthwise convolutions, is added to `filter`).
#[derive(Config, Debug, PartialEq)]
pub struct SparsitySection {
    /// Target sparsity in `[0, 1)` of the sparse layers (the library's default).
    #[config(default = "SparsityConfig::new().sparsity")]
    pub sparsity: f64,
    /// Layer-wise distribution (the method's reference where it has one: SNIP,
    /// GraSP global; GMP, MEST uniform; else the library's default, ERK).
    #[config(default = "SparsityConfig::new().distribution")]
    pub distribution: Distribution,
    /// Mask pattern (the library's default, unstructured).
    #[config(default = "SparsityConfig::new().pattern")]
    pub pattern: Pattern,
    /// Weights kept dense besides the model's policy.
    #[config(default = "LayerFilter::new()")]
    pub filter: LayerFilter,
    /// Sparse-aware re-initialisation after the first masks (resolved from the
    /// method's reference when not given: grad-flow for SRigL, none otherwise).
    #[config(default = "None")]
    pub sparse_init: Option<SparseInit>,
}

/// How long and how fast.
#[derive(Config, Debug, PartialEq)]
pub struct TrainingSection {
    /// Epochs (per round for iterative pruning).
    #[config(default = 30)]
    pub epochs: usize,
    /// Training batch size (of each micro-batch with gradient accumulation).
    #[config(default = 128)]
    pub batch_size: usize,
    /// Micro-batches of `batch_size` summed into one optimizer step (1 = none);
    /// every step count (ΔT, T_end, learning rate, checkpoints) counts optimizer
    /// steps, `⌊batches/grad_accumulation⌋` per epoch. As condensed-sparsity's
    /// `simulated_batch_size = grad_accumulation × batch_size`.
    #[config(default = 1)]
    pub grad_accumulation: usize,
    /// Evaluation batch size.
    #[config(default = 1000)]
    pub eval_batch_size: usize,
    /// Base learning rate.
    #[config(default = 0.1)]
    pub lr: f64,
    /// Learning-rate schedule after the warm-up.
    #[config(default = "LrSchedule::Cosine")]
    pub schedule: LrSchedule,
    /// Step schedule only: epochs where the rate is multiplied by `gamma`.
    #[config(default = "None")]
    pub milestones: Option<Vec<usize>>,
    /// Step schedule only: the factor.
    #[config(default = "None")]
    pub gamma: Option<f64>,
    /// Linear warm-up epochs.
    #[config(default = 0.0)]
    pub warmup_epochs: f64,
    /// Label smoothing ε.
    #[config(default = 0.0)]
    pub label_smoothing: f64,
    /// Seed of initialisation, data order, augmentation and masks.
    #[config(default = 1)]
    pub seed: u64,
    /// How the sparse layers train: masked-dense, in sparse execution (their
    /// active values only), or `auto` (see [`crate::run::execution`]).
    #[config(default = "Execution::Dense")]
    pub execution: Execution,
}

/// The language model of `task = "lm"`: the char transformer's shape
/// ([`sparse_models::CharTransformerConfig`]), which weights are sparse, the
/// corpus's tokens, the epoch, the evaluation and the report's sample. The corpus
/// is `[data] data_dir` (default: Debian's fortunes).
#[derive(Config, Debug, PartialEq)]
pub struct LmSection {
    /// Tokens: `char` (UTF-8 text, vocabulary of the corpus's characters) or `byte` (256).
    #[config(default = "TokenKind::Char")]
    pub tokens: TokenKind,
    /// Context length `T` (tokens); a training sample is one window of `T` tokens.
    #[config(default = 64)]
    pub block: usize,
    /// Transformer blocks.
    #[config(default = 2)]
    pub layers: usize,
    /// Attention heads.
    #[config(default = 4)]
    pub heads: usize,
    /// Model width.
    #[config(default = 128)]
    pub d_model: usize,
    /// Dropout (embeddings, attention, residual branches); its randomness is a
    /// pure function of the seed and the step, so a resumed run stays exact.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Make the token and position embeddings sparse too (dense by default).
    #[config(default = false)]
    pub sparse_embeddings: bool,
    /// Make the output head sparse too (dense by default).
    #[config(default = false)]
    pub sparse_head: bool,
    /// Batches per epoch (0: ⌊training tokens / (batch_size · block)⌋, one pass's worth
    /// of random windows).
    #[config(default = 0)]
    pub batches_per_epoch: usize,
    /// Evaluate on the first N tokens of the validation and test splits (0: all).
    #[config(default = 0)]
    pub eval_tokens: usize,
    /// Tokens of generated text in `report.md`.
    #[config(default = 300)]
    pub sample_tokens: usize,
    /// The prompt of the sample.
    #[config(default = "String::from(\"The \")")]
    pub prompt: String,
    /// Sampling temperature of the sample (0: greedy).
    #[config(default = 0.8)]
    pub temperature: f64,
}

/// The agent of `task = "rl"`: a DQN agent (`sparse_rl::Dqn`) whose Q-network is
/// sparse. Classic control uses Graesser et al.'s MLP and settings (squared TD
/// error), Breakout MinAtar's conv network and settings (Huber loss); the
/// defaults below are classic control's, and `env = "breakout"` lays MinAtar's
/// under the keys not given (warm-up 5000, target copy every 1000, ε over 100k
/// steps; `[training]` batch 32, lr 2.5e-4). An epoch is `steps_per_epoch`
/// environment steps followed by a greedy evaluation on fixed seeds; every step
/// count of the method (ΔT, T_end) counts environment steps, and the method's
/// update schedule defaults to Graesser et al.'s (`rl_method_defaults`).
#[derive(Config, Debug, PartialEq)]
pub struct RlSection {
    /// The environment.
    #[config(default = "RlEnv::Cartpole")]
    pub env: RlEnv,
    /// Environment steps per epoch.
    #[config(default = 5000)]
    pub steps_per_epoch: u64,
    /// Evaluation episodes at the end of every epoch (greedy, seeds 1,000,000 + i).
    #[config(default = 100)]
    pub eval_episodes: usize,
    /// Hidden widths of the classic-control Q-network (Graesser et al.: 512, 512).
    #[config(default = "vec![512, 512]")]
    pub hidden: Vec<usize>,
    /// Environment steps of random actions before training starts.
    #[config(default = 1000)]
    pub warmup_steps: u64,
    /// Replay capacity (transitions).
    #[config(default = 100_000)]
    pub replay_capacity: usize,
    /// Environment steps after the warm-up over which ε falls from 1 to 0.1.
    #[config(default = 25_000)]
    pub epsilon_decay_steps: u64,
    /// Gradient steps between copies of the online network into the target.
    #[config(default = 100)]
    pub target_update_every: u64,
}

/// Everything a run needs (the default: RigL at 90% on the MLP over Fashion-MNIST).
#[derive(Clone, Debug, PartialEq)]
pub struct RunConfig {
    /// What is trained (image classification by default).
    pub task: TaskKind,
    /// The backend.
    pub device: BackendKind,
    /// The model.
    pub model: ModelSection,
    /// The data.
    pub data: DataSection,
    /// Sparsity (none for the dense baseline).
    pub sparsity: Option<SparsitySection>,
    /// The method and its switches.
    pub method: MethodConfig,
    /// An optional penalty on the sparse weights (L1, group lasso).
    pub penalty: Option<RegularizationConfig>,
    /// The optimizer.
    pub optimizer: OptimizerConfig,
    /// Training.
    pub training: TrainingSection,
    /// The language model (`task = "lm"` only).
    pub lm: Option<LmSection>,
    /// The agent (`task = "rl"` only).
    pub rl: Option<RlSection>,
    /// The stages of a recipe (`[[stage]]`; empty for a one-stage run).
    pub stages: Vec<Stage>,
}

/// The sections of a config file, in the order they are written.
pub const SECTIONS: [&str; 12] = [
    "task",
    "device",
    "model",
    "data",
    "sparsity",
    "method",
    "penalty",
    "optimizer",
    "training",
    "lm",
    "rl",
    "stage",
];

impl Default for RunConfig {
    fn default() -> Self {
        Self::from_table(toml::Table::new()).expect("the defaults resolve")
    }
}

/// The section `name` of `table` as a JSON object (empty when absent).
fn section(table: &mut toml::Table, name: &str) -> anyhow::Result<Option<Map<String, Value>>> {
    match table.remove(name) {
        None => Ok(None),
        Some(toml::Value::Table(t)) => match serde_json::to_value(t)? {
            Value::Object(map) => Ok(Some(map)),
            _ => unreachable!("a table converts to an object"),
        },
        Some(other) => bail!("`{name}` must be a table ([{name}]), not `{other}`"),
    }
}

impl RunConfig {
    /// Reads, checks and resolves a config table (a file's, with any command-line
    /// options laid over it).
    pub fn from_table(mut table: toml::Table) -> anyhow::Result<Self> {
        super::finite::check_finite_numbers(&table)?;
        if let Some(key) = table.keys().find(|k| !SECTIONS.contains(&k.as_str())) {
            bail!("unknown setting `{key}`; a config file has {}", SECTIONS.join(", "));
        }
        let task = match table.remove("task") {
            None => TaskKind::Image,
            Some(toml::Value::String(s)) => s.parse()?,
            Some(other) => bail!("task must be text (image, lm, rl), not {other}"),
        };
        let raw_stages = take_stages(&mut table)?;
        if !raw_stages.is_empty() {
            if task != TaskKind::Image {
                bail!(
                    "[[stage]] recipes apply to image classification only, not task = \"{}\"",
                    task.name()
                );
            }
            set_total_epochs(&mut table, &raw_stages)?;
        }
        if task != TaskKind::Image {
            task_defaults(task, &mut table)?;
        }
        // the run's own sections, which the stages inherit
        let base = table.clone();
        let device = match table.remove("device") {
            None => BackendKind::Flex,
            Some(toml::Value::String(s)) => s.parse()?,
            Some(other) => bail!("device must be text (flex, ndarray, wgpu, cuda), not {other}"),
        };
        let model = resolve_model(fill_defaults(
            &ModelSection::new(),
            section(&mut table, "model")?.unwrap_or_default(),
            "model",
        )?)?;
        let data = fill_defaults(
            &DataSection::new(),
            section(&mut table, "data")?.unwrap_or_default(),
            "data",
        )?;
        let data = if task == TaskKind::Image {
            resolve_data(data)?
        } else {
            data
        };
        let method = resolve_method(
            match section(&mut table, "method")? {
                None => default_method(),
                Some(mut map) => {
                    // switches without a method name are the default method's
                    let default = default_method();
                    map.entry("name")
                        .or_insert_with(|| Value::String(default.name().into()));
                    MethodConfig::from_value(Value::Object(map))?
                }
            },
            &model,
        );
        let sparsity = resolve_sparsity(&method, section(&mut table, "sparsity")?)?;
        let penalty = section(&mut table, "penalty")?
            .map(|map| -> anyhow::Result<RegularizationConfig> {
                let kind = map
                    .get("kind")
                    .cloned()
                    .context("[penalty] needs `kind = \"l1\"` or `kind = \"group-lasso\"`")?;
                let default = RegularizationConfig::new(serde_json::from_value(kind)?);
                Ok(fill_defaults(&default, map, "penalty")?)
            })
            .transpose()?;
        let optimizer = resolve_optimizer(section(&mut table, "optimizer")?.unwrap_or_default())?;
        let training = resolve_training(fill_defaults(
            &TrainingSection::new(),
            section(&mut table, "training")?.unwrap_or_default(),
            "training",
        )?)?;
        let lm = match (task, section(&mut table, "lm")?) {
            (TaskKind::Lm, map) => Some(resolve_lm(fill_defaults(
                &LmSection::new(),
                map.unwrap_or_default(),
                "lm",
            )?)?),
            (_, Some(_)) => bail!("[lm] applies to the language model only (task = \"lm\", --task lm)"),
            (_, None) => None,
        };
        if task == TaskKind::Rl {
            check_rl_training(&training)?;
        }
        let rl = match (task, section(&mut table, "rl")?) {
            (TaskKind::Rl, map) => Some(resolve_rl(fill_defaults(
                &RlSection::new(),
                map.unwrap_or_default(),
                "rl",
            )?)?),
            (_, Some(_)) => bail!("[rl] applies to the DQN agent only (task = \"rl\", --task rl)"),
            (_, None) => None,
        };
        let stages = if raw_stages.is_empty() {
            Vec::new()
        } else {
            resolve_stages(&base, raw_stages)?
        };
        let cfg = Self {
            task,
            device,
            model,
            data,
            sparsity,
            method,
            penalty,
            optimizer,
            training,
            lm,
            rl,
            stages,
        };
        super::execution::check_config(&cfg)?;
        Ok(cfg)
    }

    /// Reads a TOML config file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), one_line(&e.to_string())))?;
        Self::from_table(table).map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))
    }

    /// The config as a table (what `to_toml` writes).
    pub fn to_table(&self) -> toml::Table {
        let mut t = toml::Table::new();
        if self.task != TaskKind::Image {
            t.insert("task".into(), toml::Value::String(self.task.name().into()));
        }
        t.insert("device".into(), toml::Value::String(self.device.name().into()));
        let mut put = |name: &str, value: Result<toml::Value, toml::ser::Error>| {
            if let Ok(v) = value {
                t.insert(name.into(), v);
            }
        };
        if self.task == TaskKind::Image {
            put("model", toml::Value::try_from(&self.model));
            put("data", toml::Value::try_from(&self.data));
        } else {
            // only the keys that apply to a task without an image model
            if let Some(layer) = &self.model.mask_layer {
                let model = toml::Table::from_iter([("mask_layer".to_string(), toml::Value::String(layer.clone()))]);
                put("model", Ok(toml::Value::Table(model)));
            }
            if let Some(dir) = &self.data.data_dir {
                let value = toml::Value::String(dir.display().to_string());
                put(
                    "data",
                    Ok(toml::Value::Table(toml::Table::from_iter([(
                        "data_dir".to_string(),
                        value,
                    )]))),
                );
            }
        }
        if let Some(s) = &self.sparsity {
            put("sparsity", toml::Value::try_from(s));
        }
        put("method", toml::Value::try_from(&self.method));
        if let Some(p) = &self.penalty {
            put("penalty", toml::Value::try_from(p));
        }
        put("optimizer", toml::Value::try_from(&self.optimizer));
        put("training", toml::Value::try_from(&self.training));
        if let Some(lm) = &self.lm {
            put("lm", toml::Value::try_from(lm));
        }
        if let Some(rl) = &self.rl {
            put("rl", toml::Value::try_from(rl));
        }
        if !self.stages.is_empty() {
            let stages = self.stages.iter().map(|s| toml::Value::Table(s.to_table())).collect();
            t.insert("stage".into(), toml::Value::Array(stages));
        }
        t
    }

    /// The TOML text of the resolved config.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.to_table()).unwrap_or_default()
    }

    /// The same run with the dense baseline as its method.
    pub fn dense_twin(&self) -> anyhow::Result<Self> {
        let mut table = self.to_table();
        table.remove("sparsity");
        table.remove("stage"); // a recipe's twin: the run's [training] over all its epochs
        let dense: MethodConfig = DenseConfig::new().into();
        table.insert("method".into(), toml::Value::try_from(&dense)?);
        Self::from_table(table)
    }

    /// The target sparsity (0 for the dense baseline; a recipe's last stage's).
    pub fn target_sparsity(&self) -> f64 {
        match self.stages.last() {
            Some(last) => last.config.target_sparsity(),
            None => self.sparsity.as_ref().map_or(0.0, |s| s.sparsity),
        }
    }

    /// The config the model was trained under last: a recipe's last stage's,
    /// else the run's own (whose `[method]` a recipe's stages do not use).
    pub fn final_config(&self) -> &RunConfig {
        self.stages.last().map_or(self, |s| &s.config)
    }

    /// Whether the run trains dense throughout: every stage of a recipe dense,
    /// else the run's method.
    pub fn is_dense(&self) -> bool {
        if self.stages.is_empty() {
            return self.method.is_dense();
        }
        self.stages.iter().all(|s| s.config.method.is_dense())
    }

    /// The run's first sparse method, as text for a message: `` `gmp` `` or, in
    /// a recipe, `` `gmp` (stage `prune`) `` (none when the run is dense).
    pub fn sparse_method_text(&self) -> Option<String> {
        if self.stages.is_empty() {
            return (!self.method.is_dense()).then(|| format!("`{}`", self.method.name()));
        }
        self.stages
            .iter()
            .find(|s| !s.config.method.is_dense())
            .map(|s| format!("`{}` (stage `{}`)", s.config.method.name(), s.name))
    }

    /// The method's name; a recipe's stages' methods joined by `+` (`dense+gmp+static`).
    pub fn method_label(&self) -> String {
        if self.stages.is_empty() {
            return self.method.name().to_string();
        }
        let names: Vec<&str> = self.stages.iter().map(|s| s.config.method.name()).collect();
        names.join("+")
    }

    /// The library's sparsity config for a model whose own policy is `policy`.
    pub fn sparsity_config(&self, policy: LayerFilter) -> SparsityConfig {
        let config = SparsityConfig::new().with_seed(self.training.seed);
        match &self.sparsity {
            None => config.with_sparsity(0.0).with_filter(policy),
            Some(s) => {
                let mut filter = policy;
                filter.include.extend(s.filter.include.iter().cloned());
                filter.exclude.extend(s.filter.exclude.iter().cloned());
                filter.skip_first |= s.filter.skip_first;
                filter.skip_last |= s.filter.skip_last;
                filter.skip_depthwise |= s.filter.skip_depthwise;
                config
                    .with_sparsity(s.sparsity)
                    .with_distribution(s.distribution.clone())
                    .with_pattern(s.pattern.clone())
                    .with_filter(filter)
                    .with_sparse_init(s.sparse_init)
            }
        }
    }

    /// A default folder name for the run.
    pub fn default_out(&self) -> PathBuf {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let model = match self.task {
            TaskKind::Image => self.model.name.name(),
            TaskKind::Lm => "lm",
            TaskKind::Rl => "rl",
        };
        PathBuf::from("runs").join(format!(
            "{}-{}-{}-s{}-{stamp}",
            model,
            self.method_label(),
            (self.target_sparsity() * 100.0).round(),
            self.training.seed
        ))
    }
}

fn resolve_model(mut m: ModelSection) -> anyhow::Result<ModelSection> {
    let mobilenet = m.name == ModelKind::MobilenetV1;
    let resnet = m.name.is_resnet();
    if !mobilenet && m.width.is_some() {
        bail!("[model] width applies to mobilenet-v1 only, not {}", m.name.name());
    }
    let mlp = m.name == ModelKind::Mlp;
    if !mlp && m.hidden.is_some() {
        bail!("[model] hidden applies to the mlp only, not {}", m.name.name());
    }
    if m.hidden.as_ref().is_some_and(|h| h.contains(&0)) {
        bail!("[model] hidden widths must be at least 1 (e.g. [300, 100]; [] for a linear classifier)");
    }
    if !resnet && m.zero_init_residual.is_some() {
        bail!(
            "[model] zero_init_residual applies to the ResNets only, not {}",
            m.name.name()
        );
    }
    if mobilenet {
        let width = *m.width.get_or_insert(MobileNetV1Config::new().width);
        if !(width > 0.0 && width.is_finite()) {
            bail!("[model] width {width} must be a positive number (1.0, 0.75, 0.5, 0.25)");
        }
    }
    if resnet {
        m.zero_init_residual
            .get_or_insert(ResNetConfig::new(ResNetDepth::R18).zero_init_residual);
    }
    Ok(m)
}

fn resolve_data(mut d: DataSection) -> anyhow::Result<DataSection> {
    let folder = d.dataset == DatasetKind::Folder;
    let downloadable = matches!(
        d.dataset,
        DatasetKind::FashionMnist | DatasetKind::Mnist | DatasetKind::Cifar10
    );
    let only_folders = [
        ("image_size", d.image_size.is_some()),
        ("channels", d.channels.is_some()),
        ("strict_images", d.strict_images.is_some()),
    ];
    if let Some((key, _)) = only_folders.iter().find(|(_, given)| *given && !folder) {
        bail!("[data] {key} applies to image folders (dataset = \"folder\") only");
    }
    if d.download.is_some() && !downloadable {
        bail!("[data] download applies to fashion-mnist, mnist and cifar10 only");
    }
    let defaults = DataConfig::default();
    if folder {
        let size = *d.image_size.get_or_insert(defaults.image_size);
        let channels = *d.channels.get_or_insert(defaults.channels);
        d.strict_images.get_or_insert(defaults.strict_images);
        crate::data::folder::check_settings(size, channels)?;
    }
    if downloadable {
        d.download.get_or_insert(defaults.download);
    }
    d.augment.get_or_insert(d.dataset == DatasetKind::Cifar10);
    Ok(d)
}

/// Fills what a method leaves to the model: whether lottery tickets ignore the
/// output layer (open_lth: LeNet-style models do, ResNets do not).
fn resolve_method(mut method: MethodConfig, model: &ModelSection) -> MethodConfig {
    if let MethodConfig::Lth(lth) = &mut method
        && lth.output_layer == OutputLayer::Auto
    {
        let lenet_style = matches!(model.name, ModelKind::Mlp | ModelKind::Cnn);
        lth.output_layer = if lenet_style {
            OutputLayer::Ignore
        } else {
            OutputLayer::Prune
        };
    }
    method
}

fn resolve_sparsity(
    method: &MethodConfig,
    user: Option<Map<String, Value>>,
) -> anyhow::Result<Option<SparsitySection>> {
    if method.is_dense() {
        if user.as_ref().is_some_and(|u| !u.is_empty()) {
            bail!(
                "the dense baseline trains without sparsity: drop [sparsity] (and --sparsity, --pattern, --distribution)"
            );
        }
        return Ok(None);
    }
    let user = user.unwrap_or_default();
    let mut default = SparsitySection::new();
    if let Some(p) = method.preferred_pattern() {
        default.pattern = p;
    }
    // the method's reference settings for whatever the run does not set
    let reference = method.sparsity_defaults();
    default.filter.skip_first = reference.dense_first_layer;
    default.filter.skip_last = reference.dense_last_layer;
    let gave_sparsity = user.contains_key("sparsity");
    let gave_distribution = user.contains_key("distribution");
    let mut s = fill_defaults(&default, user, "sparsity")?;
    if let (false, Some(d)) = (gave_distribution, reference.distribution) {
        // a global ranking has no per-group patterns: keep ERK under N:M, blocks, ...
        if d != Distribution::Global || s.pattern == Pattern::Unstructured {
            s.distribution = d;
        }
    }
    s.sparse_init.get_or_insert(method.default_sparse_init());
    if let (false, Some(d)) = (gave_sparsity, s.pattern.fixed_density()) {
        s.sparsity = 1.0 - d;
    }
    sparse_core::error::check_sparsity(s.sparsity)?;
    Ok(Some(s))
}

/// The run's default weight decay, for every optimizer (L2 for SGD and Adam,
/// decoupled for AdamW); the other defaults are the library's (SGD: momentum 0.9
/// here, PyTorch's dampening 0; Adam: PyTorch's betas and ε).
pub const WEIGHT_DECAY: f64 = 5e-4;

/// The run's default SGD momentum (the library's is 0).
pub const MOMENTUM: f64 = 0.9;

/// The step schedule's default factor γ.
pub const STEP_GAMMA: f64 = 0.1;

fn resolve_optimizer(mut user: Map<String, Value>) -> anyhow::Result<OptimizerConfig> {
    let name = match user.remove("name") {
        None => "sgd".to_string(),
        Some(Value::String(s)) => s,
        Some(other) => bail!("[optimizer] name must be text (sgd, adam, adamw), not {other}"),
    };
    let config = match name.as_str() {
        "sgd" => OptimizerConfig::Sgd(fill_defaults(
            &sparse_core::SgdSettings::new()
                .with_momentum(MOMENTUM)
                .with_weight_decay(WEIGHT_DECAY),
            user,
            "optimizer",
        )?),
        "adam" | "adamw" => OptimizerConfig::Adam(fill_defaults(
            &sparse_core::AdamSettings::new()
                .with_weight_decay(WEIGHT_DECAY)
                .with_decoupled(name == "adamw"),
            user,
            "optimizer",
        )?),
        other => bail!("unknown optimizer `{other}`; use sgd, adam or adamw"),
    };
    config.validate()?;
    Ok(config)
}

/// The keys of `[model]` and `[data]` that a task other than image
/// classification takes.
const NON_IMAGE_KEYS: [(&str, &str); 2] = [("model", "mask_layer"), ("data", "data_dir")];

/// Checks that `[model]` and `[data]` hold only what applies to `task`, and lays
/// the task's training defaults under the user's (language model: Adam at
/// 1e-3, batches of 32 windows, 10 epochs, evaluation batches of 64 windows).
fn task_defaults(task: TaskKind, table: &mut toml::Table) -> anyhow::Result<()> {
    for name in ["model", "data"] {
        if let Some(toml::Value::Table(t)) = table.get(name)
            && let Some(key) = t.keys().find(|k| !NON_IMAGE_KEYS.contains(&(name, k.as_str())))
        {
            let allowed: Vec<&str> = NON_IMAGE_KEYS
                .iter()
                .filter(|(s, _)| *s == name)
                .map(|(_, k)| *k)
                .collect();
            bail!(
                "[{name}] {key} applies to image classification only; task = \"{}\" takes only {} in [{name}]",
                task.name(),
                allowed.join(", ")
            );
        }
    }
    if task == TaskKind::Rl {
        rl_defaults(table);
    }
    if task == TaskKind::Lm {
        let training = table
            .entry("training")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = training {
            for (key, value) in [
                ("lr", toml::Value::Float(1e-3)),
                ("batch_size", toml::Value::Integer(32)),
                ("eval_batch_size", toml::Value::Integer(64)),
                ("epochs", toml::Value::Integer(10)),
            ] {
                t.entry(key).or_insert(value);
            }
        }
        let optimizer = table
            .entry("optimizer")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = optimizer {
            t.entry("name").or_insert(toml::Value::String("adam".into()));
            t.entry("weight_decay").or_insert(toml::Value::Float(0.0));
        }
    }
    Ok(())
}

/// The method of a run whose config names none: RigL with its defaults.
fn default_method() -> MethodConfig {
    RigLConfig::new().into()
}

/// Graesser et al.'s (ICML 2022) mask-update schedule for DQN, by switch: laid
/// on whichever of these switches the run's method has, so any drop/grow or
/// pruning method takes it without being named. Classic control (their Table 1
/// and gin config): an update every 1 000 environment steps, drop fraction 0.5
/// with cosine decay, none after 75% of training; pruning from 20% to 75% of
/// training, every 1 000 steps. MinAtar (their Atari DQN's): every 5 000 steps,
/// drop fraction 0.3 with cosine decay. `delta_epochs = 0` makes a method that
/// counts its interval in epochs (MEST) count `delta_t` steps instead.
fn rl_method_defaults(minatar: bool) -> Vec<(&'static str, toml::Value)> {
    let cosine = toml::Value::String("cosine".into());
    let in_steps = ("delta_epochs", toml::Value::Float(0.0));
    if minatar {
        return vec![
            ("delta_t", toml::Value::Integer(5000)),
            in_steps,
            ("drop_fraction", toml::Value::Float(0.3)),
            ("drop_schedule", cosine),
        ];
    }
    vec![
        ("delta_t", toml::Value::Integer(1000)),
        in_steps,
        ("drop_fraction", toml::Value::Float(0.5)),
        ("drop_schedule", cosine),
        ("end_fraction", toml::Value::Float(0.75)),
        ("prune_begin_fraction", toml::Value::Float(0.2)),
        ("prune_end_fraction", toml::Value::Float(0.75)),
    ]
}

/// The switches of [`rl_method_defaults`] that the method of `table` has
/// (none for an unknown method, which `from_table` refuses by name).
fn rl_method_switches(table: &toml::Table, minatar: bool) -> Vec<(&'static str, toml::Value)> {
    let default = default_method();
    let name = table
        .get("method")
        .and_then(|m| m.get("name"))
        .and_then(toml::Value::as_str)
        .unwrap_or(default.name());
    let Ok(method) = sparse_methods::registry::find(name) else {
        return Vec::new();
    };
    rl_method_defaults(minatar)
        .into_iter()
        .filter(|(key, _)| method.has_switch(key))
        .collect()
}

/// Lays the agent's defaults under the user's keys: Adam with Graesser et al.'s
/// weight decay 1e-6, 20 epochs, their mask-update schedule
/// ([`rl_method_defaults`]); classic control: batch 128 at lr 1e-3; Breakout:
/// MinAtar's batch 32 at lr 2.5e-4 and its `[rl]` settings.
fn rl_defaults(table: &mut toml::Table) {
    let minatar = table
        .get("rl")
        .and_then(|rl| rl.get("env"))
        .and_then(toml::Value::as_str)
        .is_some_and(|e| e == RlEnv::Breakout.name());
    let method = rl_method_switches(table, minatar);
    let mut lay = |name: &str, values: Vec<(&str, toml::Value)>| {
        let section = table
            .entry(name)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = section {
            for (key, value) in values {
                t.entry(key).or_insert(value);
            }
        }
    };
    let (batch, lr) = if minatar { (32, 2.5e-4) } else { (128, 1e-3) };
    lay(
        "training",
        vec![
            ("lr", toml::Value::Float(lr)),
            ("batch_size", toml::Value::Integer(batch)),
            ("epochs", toml::Value::Integer(20)),
            ("schedule", toml::Value::String("constant".into())),
        ],
    );
    lay(
        "optimizer",
        vec![
            ("name", toml::Value::String("adam".into())),
            ("weight_decay", toml::Value::Float(if minatar { 0.0 } else { 1e-6 })),
        ],
    );
    if !method.is_empty() {
        lay("method", method);
    }
    if minatar {
        lay(
            "rl",
            vec![
                ("warmup_steps", toml::Value::Integer(5000)),
                ("target_update_every", toml::Value::Integer(1000)),
                ("epsilon_decay_steps", toml::Value::Integer(100_000)),
            ],
        );
    }
}

/// A DQN agent takes one gradient step per environment step at a constant rate:
/// the `[training]` keys of supervised training must keep their neutral values.
fn check_rl_training(t: &TrainingSection) -> anyhow::Result<()> {
    let unused = [
        ("schedule", t.schedule != LrSchedule::Constant, "--schedule constant"),
        ("warmup_epochs", t.warmup_epochs != 0.0, "--warmup-epochs 0"),
        ("grad_accumulation", t.grad_accumulation != 1, "--grad-accumulation 1"),
        ("label_smoothing", t.label_smoothing != 0.0, "--label-smoothing 0"),
    ];
    if let Some((key, _, fix)) = unused.iter().find(|(_, set, _)| *set) {
        bail!(
            "[training] {key} does not apply to a DQN agent (a constant learning rate, one gradient step per environment step); drop it or use {fix}"
        );
    }
    Ok(())
}

fn resolve_rl(rl: RlSection) -> anyhow::Result<RlSection> {
    if rl.steps_per_epoch == 0 || rl.eval_episodes == 0 || rl.replay_capacity == 0 || rl.target_update_every == 0 {
        bail!("[rl] steps_per_epoch, eval_episodes, replay_capacity and target_update_every must all be at least 1");
    }
    if rl.hidden.is_empty() || rl.hidden.contains(&0) {
        bail!("[rl] hidden must list at least one width, each at least 1 (e.g. [512, 512])");
    }
    Ok(rl)
}

fn resolve_lm(lm: LmSection) -> anyhow::Result<LmSection> {
    if lm.block == 0 || lm.layers == 0 || lm.heads == 0 || lm.d_model == 0 {
        bail!("[lm] block, layers, heads and d_model must all be at least 1");
    }
    if !lm.d_model.is_multiple_of(lm.heads) {
        bail!("[lm] d_model {} must be a multiple of heads {}", lm.d_model, lm.heads);
    }
    if !(0.0..1.0).contains(&lm.dropout) {
        bail!("[lm] dropout {} must be in [0, 1)", lm.dropout);
    }
    if !(lm.temperature >= 0.0 && lm.temperature.is_finite()) {
        bail!("[lm] temperature {} must be a number >= 0 (0: greedy)", lm.temperature);
    }
    Ok(lm)
}

fn resolve_training(mut t: TrainingSection) -> anyhow::Result<TrainingSection> {
    let step = t.schedule == LrSchedule::Step;
    if !step && (t.milestones.is_some() || t.gamma.is_some()) {
        bail!("[training] milestones and gamma apply to the step schedule only (schedule = \"step\")");
    }
    if step {
        t.milestones.get_or_insert_with(Vec::new);
        t.gamma.get_or_insert(STEP_GAMMA);
    }
    if t.epochs == 0 || t.batch_size == 0 || t.eval_batch_size == 0 {
        bail!("[training] epochs, batch_size and eval_batch_size must be at least 1");
    }
    if t.grad_accumulation == 0 {
        bail!(
            "[training] grad_accumulation must be at least 1 (1 = no accumulation); set --grad-accumulation 1 or more"
        );
    }
    if !(t.lr > 0.0 && t.lr <= 1.0) {
        bail!(
            "[training] lr {} must be in (0, 1] (Burn's learning-rate schedulers take rates up to 1)",
            t.lr
        );
    }
    if !(t.warmup_epochs >= 0.0 && t.warmup_epochs.is_finite()) {
        bail!("[training] warmup_epochs {} must be a number >= 0", t.warmup_epochs);
    }
    if !(0.0..1.0).contains(&t.label_smoothing) {
        bail!("[training] label_smoothing {} must be in [0, 1)", t.label_smoothing);
    }
    Ok(t)
}

/// A TOML error message on one line.
pub(crate) fn one_line(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('|'))
        .collect::<Vec<_>>()
        .join(" ")
}
