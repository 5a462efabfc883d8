//! The options of each subcommand, in groups, and how the given ones become a
//! config table laid over the `--config` file (or the defaults). Only options a
//! subcommand uses are defined on it (`info` has no `--lr`; `sweep` no
//! `--method` or `--sparsity`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use clap::builder::PossibleValuesParser;
use sparse_core::{Distribution, Pattern, SparseInit};
use toml::{Table, Value};

use super::choices::{DEVICES, MethodName, OPTIMIZERS, PENALTIES};
use crate::data::DatasetKind;
use crate::run::execution::Execution;
use crate::run::lr::LrSchedule;
use crate::run::models::ModelKind;
use crate::run::task_kind::{RlEnv, TaskKind};

/// Sets `table[path] = value`, creating the tables on the way.
pub fn set(table: &mut Table, path: &[&str], value: Value) {
    let (last, parents) = path.split_last().expect("a non-empty path");
    let mut t = table;
    for p in parents {
        let entry = t.entry(p.to_string()).or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        t = entry.as_table_mut().expect("made a table above");
    }
    t.insert(last.to_string(), value);
}

/// Lays `over` onto `base`, table by table; a different method replaces the
/// method table (its switches belong to the other method).
pub fn merge(base: &mut Table, over: Table) {
    for (key, value) in over {
        let other_method = key == "method"
            && matches!(
                (base.get("method").and_then(|m| m.get("name")), value.get("name")),
                (Some(a), Some(b)) if a != b
            );
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) if !other_method => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The command-line option that sets config key `path` (`training.epochs` → `--epochs`).
pub fn flag_name(path: &str) -> String {
    match path {
        "method.name" => "--method".into(),
        "sparsity.sparsity" => "--sparsity".into(),
        "sparsity.filter" => "--dense-first-layer/--dense-last-layer".into(),
        "optimizer.name" | "optimizer.decoupled" => "--optimizer".into(),
        "penalty.kind" => "--penalty".into(),
        "penalty.strength" => "--penalty-strength".into(),
        "model.name" => "--model".into(),
        "data.augment" => "--augment".into(),
        "training.schedule" => "--schedule".into(),
        "device" => "--device".into(),
        _ => match path.split_once('.') {
            Some(("method", key)) => format!("-m {key}"),
            Some((_, key)) => format!("--{}", key.replace('_', "-")),
            None => format!("--{path}"),
        },
    }
}

/// A `-m key=value` value: a TOML literal (number, bool, array, quoted text) or bare text.
pub fn switch_value(text: &str) -> Value {
    toml::from_str::<Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(text.to_string()))
}

fn float(x: f64) -> Value {
    Value::Float(x)
}

fn int(x: u64) -> anyhow::Result<Value> {
    Ok(Value::Integer(
        i64::try_from(x).context("a number too large for a config file")?,
    ))
}

/// The `--config` file.
#[derive(Args, Clone, Debug, Default)]
pub struct ConfigArgs {
    /// TOML file with the settings (e.g. a previous run's config.toml); options given here override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArgs {
    /// The file's table, or an empty one.
    pub fn table(&self) -> anyhow::Result<Table> {
        let Some(path) = &self.config else {
            return Ok(Table::new());
        };
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), crate::run::config::one_line(&e.to_string())))
    }
}

/// The model.
#[derive(Args, Clone, Debug, Default)]
pub struct ModelArgs {
    /// The model.
    #[arg(long, value_enum)]
    pub model: Option<ModelKind>,
    /// MobileNetV1 width multiplier α.
    #[arg(long)]
    pub width: Option<f64>,
    /// MLP: hidden layer widths, comma separated (e.g. 4096,4096 for 784-4096-4096-10).
    #[arg(long, value_delimiter = ',', value_name = "WIDTHS")]
    pub mlp_hidden: Option<Vec<usize>>,
}

impl ModelArgs {
    fn apply(&self, t: &mut Table) {
        if let Some(m) = self.model {
            set(t, &["model", "name"], Value::String(m.name().into()));
        }
        if let Some(w) = self.width {
            set(t, &["model", "width"], float(w));
        }
        if let Some(h) = &self.mlp_hidden {
            let widths = h.iter().map(|&w| Value::Integer(w as i64)).collect();
            set(t, &["model", "hidden"], Value::Array(widths));
        }
    }
}

/// Model options of a training run.
#[derive(Args, Clone, Debug, Default)]
pub struct ModelRunArgs {
    /// Start from torchvision weights in a safetensors file (dense-to-sparse fine-tuning).
    #[arg(long, value_name = "FILE")]
    pub init_weights: Option<PathBuf>,
    /// The sparse layer whose mask is plotted over time (default: the largest).
    #[arg(long, value_name = "PATH")]
    pub mask_layer: Option<String>,
}

impl ModelRunArgs {
    fn apply(&self, t: &mut Table) {
        if let Some(p) = &self.init_weights {
            set(t, &["model", "init_weights"], Value::String(p.display().to_string()));
        }
        if let Some(p) = &self.mask_layer {
            set(t, &["model", "mask_layer"], Value::String(p.clone()));
        }
    }
}

/// The data.
#[derive(Args, Clone, Debug, Default)]
pub struct DataArgs {
    /// The dataset.
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetKind>,
    /// Folder with the dataset files.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Download the dataset if it is missing (needs internet; fashion-mnist, mnist, cifar10).
    #[arg(long)]
    pub download: bool,
    /// Image folders: side of the resized images.
    #[arg(long, value_name = "PIXELS")]
    pub image_size: Option<usize>,
    /// Image folders: 1 or 3 channels.
    #[arg(long)]
    pub channels: Option<usize>,
    /// Image folders: stop at an unreadable image instead of skipping it.
    #[arg(long)]
    pub strict_images: bool,
    /// Images held out of the training set for validation (0: none; "best" is then the last epoch).
    #[arg(long, value_name = "IMAGES")]
    pub validation: Option<usize>,
    /// Use only the first N training images (after the validation split).
    #[arg(long, value_name = "N")]
    pub train_limit: Option<usize>,
    /// Use only the first N test images.
    #[arg(long, value_name = "N")]
    pub test_limit: Option<usize>,
}

impl DataArgs {
    fn apply(&self, t: &mut Table) -> anyhow::Result<()> {
        if let Some(d) = self.dataset {
            let name = clap::ValueEnum::to_possible_value(&d).map(|p| p.get_name().to_string());
            set(t, &["data", "dataset"], Value::String(name.unwrap_or_default()));
        }
        if let Some(p) = &self.data_dir {
            set(t, &["data", "data_dir"], Value::String(p.display().to_string()));
        }
        if self.download {
            set(t, &["data", "download"], Value::Boolean(true));
        }
        if let Some(s) = self.image_size {
            set(t, &["data", "image_size"], int(s as u64)?);
        }
        if let Some(c) = self.channels {
            set(t, &["data", "channels"], int(c as u64)?);
        }
        if self.strict_images {
            set(t, &["data", "strict_images"], Value::Boolean(true));
        }
        if let Some(v) = self.validation {
            set(t, &["data", "validation"], int(v as u64)?);
        }
        if let Some(n) = self.train_limit {
            set(t, &["data", "train_limit"], int(n as u64)?);
        }
        if let Some(n) = self.test_limit {
            set(t, &["data", "test_limit"], int(n as u64)?);
        }
        Ok(())
    }
}

/// The shape of the sparsity (shared by every run of a sweep).
#[derive(Args, Clone, Debug, Default)]
pub struct ShapeArgs {
    /// Layer-wise distribution: erk, erk:P (power scale P), er, uniform, uniform-dense-first, global, explicit:GLOB=D,...
    #[arg(long, value_name = "DISTRIBUTION")]
    pub distribution: Option<Distribution>,
    /// Mask pattern: unstructured, N:M (e.g. 2:4), constant-fan-in, block:RxC, channel (default: the method's, else unstructured).
    #[arg(long, value_name = "PATTERN")]
    pub pattern: Option<Pattern>,
    /// Keep the first layer dense (default: the method's reference, e.g. MEST true; `=false` to make it sparse).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub dense_first_layer: Option<bool>,
    /// Keep the last layer (the classifier) dense (default: the method's reference, e.g. MEST, SR-STE true).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub dense_last_layer: Option<bool>,
    /// Sparse-aware re-initialisation: grad-flow, sparse-kaiming or none (default: the method's reference, grad-flow for srigl).
    #[arg(long, value_name = "INIT")]
    pub sparse_init: Option<SparseInit>,
}

impl ShapeArgs {
    fn apply(&self, t: &mut Table) {
        if let Some(d) = &self.distribution {
            set(t, &["sparsity", "distribution"], Value::String(d.to_string()));
        }
        if let Some(p) = &self.pattern {
            set(t, &["sparsity", "pattern"], Value::String(p.to_string()));
        }
        if let Some(dense) = self.dense_first_layer {
            set(t, &["sparsity", "filter", "skip_first"], Value::Boolean(dense));
        }
        if let Some(dense) = self.dense_last_layer {
            set(t, &["sparsity", "filter", "skip_last"], Value::Boolean(dense));
        }
        if let Some(init) = self.sparse_init {
            set(t, &["sparsity", "sparse_init"], Value::String(init.to_string()));
        }
    }
}

/// The method of one run.
#[derive(Args, Clone, Debug, Default)]
pub struct MethodArgs {
    /// The method (see `sparseburn methods` for each one's switches).
    #[arg(long, value_enum)]
    pub method: Option<MethodName>,
    /// A switch of the method, `key=value`, repeatable: -m delta_t=50 -m drop_fraction=0.5.
    #[arg(short = 'm', long = "method-arg", value_name = "KEY=VALUE")]
    pub method_args: Vec<String>,
}

/// Parses `-m key=value` options into `(key, value)` pairs.
pub fn switches(args: &[String]) -> anyhow::Result<Vec<(String, Value)>> {
    args.iter()
        .map(|arg| {
            let (k, v) = arg
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("method switch `{arg}` must look like key=value (e.g. delta_t=50)"))?;
            Ok((k.trim().to_string(), switch_value(v.trim())))
        })
        .collect()
}

impl MethodArgs {
    fn apply(&self, t: &mut Table) -> anyhow::Result<()> {
        if let Some(m) = self.method {
            set(t, &["method", "name"], Value::String(m.name().into()));
        }
        for (k, v) in switches(&self.method_args)? {
            set(t, &["method", &k], v);
        }
        Ok(())
    }
}

/// A penalty on the sparse weights.
#[derive(Args, Clone, Debug, Default)]
pub struct PenaltyArgs {
    /// Add an L1 or group-lasso penalty on the sparse weights (with any method).
    #[arg(long, value_parser = PossibleValuesParser::new(PENALTIES))]
    pub penalty: Option<String>,
    /// The penalty's strength λ.
    #[arg(long, value_name = "LAMBDA")]
    pub penalty_strength: Option<f64>,
}

impl PenaltyArgs {
    fn apply(&self, t: &mut Table) -> anyhow::Result<()> {
        if let Some(p) = &self.penalty {
            set(t, &["penalty", "kind"], Value::String(p.clone()));
        }
        if let Some(s) = self.penalty_strength {
            if self.penalty.is_none() && !t.contains_key("penalty") {
                bail!("--penalty-strength needs --penalty l1 or --penalty group-lasso");
            }
            set(t, &["penalty", "strength"], float(s));
        }
        Ok(())
    }
}

/// Optimisation.
#[derive(Args, Clone, Debug, Default)]
pub struct TrainingArgs {
    /// Epochs (per round for iterative pruning).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Batch size (of each micro-batch with --grad-accumulation).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Micro-batches of --batch-size summed into one optimizer step (1: none); steps, ΔT and the learning-rate schedule count optimizer steps, ⌊batches/K⌋ per epoch.
    #[arg(long, value_name = "K")]
    pub grad_accumulation: Option<usize>,
    /// Evaluation batch size.
    #[arg(long)]
    pub eval_batch_size: Option<usize>,
    /// The optimizer.
    #[arg(long, value_parser = PossibleValuesParser::new(OPTIMIZERS))]
    pub optimizer: Option<String>,
    /// Learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// SGD momentum.
    #[arg(long)]
    pub momentum: Option<f64>,
    /// SGD Nesterov momentum.
    #[arg(long)]
    pub nesterov: bool,
    /// Weight decay (L2 for SGD and Adam, decoupled for AdamW).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Learning-rate schedule after the warm-up.
    #[arg(long, value_enum)]
    pub schedule: Option<LrSchedule>,
    /// Step schedule: epochs where the rate is multiplied by --gamma, comma separated.
    #[arg(long, value_delimiter = ',', value_name = "EPOCHS")]
    pub milestones: Option<Vec<usize>>,
    /// Step schedule: the factor.
    #[arg(long)]
    pub gamma: Option<f64>,
    /// Linear warm-up epochs.
    #[arg(long, value_name = "EPOCHS")]
    pub warmup_epochs: Option<f64>,
    /// Label smoothing ε.
    #[arg(long)]
    pub label_smoothing: Option<f64>,
    /// Random crop (4 px padding) and horizontal flip of training images.
    #[arg(long, value_name = "BOOL")]
    pub augment: Option<bool>,
    /// How the sparse layers train: dense (masked), sparse (their active values only: weights, gradients and optimizer moments follow the nonzeros) or auto (sparse where the method and model can and the density is low).
    #[arg(long, value_enum)]
    pub execution: Option<Execution>,
}

impl TrainingArgs {
    fn apply(&self, t: &mut Table) -> anyhow::Result<()> {
        let mut put = |key: &str, v: Value| set(t, &["training", key], v);
        if let Some(e) = self.epochs {
            put("epochs", int(e as u64)?);
        }
        if let Some(b) = self.batch_size {
            put("batch_size", int(b as u64)?);
        }
        if let Some(b) = self.eval_batch_size {
            put("eval_batch_size", int(b as u64)?);
        }
        if let Some(k) = self.grad_accumulation {
            put("grad_accumulation", int(k as u64)?);
        }
        if let Some(lr) = self.lr {
            put("lr", float(lr));
        }
        if let Some(s) = self.schedule {
            let name = clap::ValueEnum::to_possible_value(&s).map(|p| p.get_name().to_string());
            put("schedule", Value::String(name.unwrap_or_default()));
        }
        if let Some(m) = &self.milestones {
            put(
                "milestones",
                Value::Array(m.iter().map(|e| int(*e as u64)).collect::<anyhow::Result<_>>()?),
            );
        }
        if let Some(g) = self.gamma {
            put("gamma", float(g));
        }
        if let Some(w) = self.warmup_epochs {
            put("warmup_epochs", float(w));
        }
        if let Some(l) = self.label_smoothing {
            put("label_smoothing", float(l));
        }
        if let Some(a) = self.augment {
            set(t, &["data", "augment"], Value::Boolean(a));
        }
        if let Some(e) = self.execution {
            set(t, &["training", "execution"], Value::String(e.name()));
        }
        if let Some(o) = &self.optimizer {
            let name = if o == "adamw" { "adam" } else { o.as_str() };
            set(t, &["optimizer", "name"], Value::String(name.into()));
            if o == "adamw" {
                set(t, &["optimizer", "decoupled"], Value::Boolean(true));
            }
        }
        if let Some(m) = self.momentum {
            set(t, &["optimizer", "momentum"], float(m));
        }
        if self.nesterov {
            set(t, &["optimizer", "nesterov"], Value::Boolean(true));
        }
        if let Some(w) = self.weight_decay {
            set(t, &["optimizer", "weight_decay"], float(w));
        }
        Ok(())
    }
}

/// The seed and the backend.
#[derive(Args, Clone, Debug, Default)]
pub struct RunEnvArgs {
    /// Seed of initialisation, data order, augmentation and masks.
    #[arg(long)]
    pub seed: Option<u64>,
    /// The backend (compiled in with the cargo feature of the same name).
    #[arg(long, value_parser = PossibleValuesParser::new(DEVICES))]
    pub device: Option<String>,
}

impl RunEnvArgs {
    fn apply(&self, t: &mut Table) -> anyhow::Result<()> {
        if let Some(s) = self.seed {
            set(t, &["training", "seed"], int(s)?);
        }
        if let Some(d) = &self.device {
            t.insert("device".into(), Value::String(d.clone()));
        }
        Ok(())
    }
}

/// The task, and the language model's shape (`[lm]`).
#[derive(Args, Clone, Debug, Default)]
pub struct TaskArgs {
    /// What to train: image classification, a language model on a text folder (--data-dir; default: Debian's fortunes), or a DQN agent.
    #[arg(long, value_enum)]
    pub task: Option<TaskKind>,
    /// Language model: tokens (char: UTF-8 text; byte: any file).
    #[arg(long, value_parser = PossibleValuesParser::new(["char", "byte"]))]
    pub tokens: Option<String>,
    /// Language model: context length (tokens).
    #[arg(long, value_name = "TOKENS")]
    pub block: Option<usize>,
    /// Language model: transformer blocks.
    #[arg(long)]
    pub layers: Option<usize>,
    /// Language model: attention heads.
    #[arg(long)]
    pub heads: Option<usize>,
    /// Language model: model width.
    #[arg(long)]
    pub d_model: Option<usize>,
    /// Language model: dropout.
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Language model: batches per epoch (0: one pass's worth of training tokens).
    #[arg(long, value_name = "N")]
    pub batches_per_epoch: Option<usize>,
    /// Language model: evaluate on the first N tokens of the validation and test splits (0: all).
    #[arg(long, value_name = "N")]
    pub eval_tokens: Option<usize>,
    /// DQN agent: the environment.
    #[arg(long, value_enum)]
    pub env: Option<RlEnv>,
    /// DQN agent: environment steps per epoch (each epoch ends with an evaluation).
    #[arg(long, value_name = "STEPS")]
    pub steps_per_epoch: Option<u64>,
    /// DQN agent: evaluation episodes (fixed seeds) at the end of every epoch.
    #[arg(long, value_name = "N")]
    pub eval_episodes: Option<usize>,
    /// DQN agent: environment steps of random actions before training.
    #[arg(long, value_name = "STEPS")]
    pub warmup_steps: Option<u64>,
    /// DQN agent: hidden widths of the classic-control Q-network, comma separated.
    #[arg(long, value_delimiter = ',', value_name = "WIDTHS")]
    pub hidden: Option<Vec<usize>>,
}

impl TaskArgs {
    fn apply(&self, t: &mut Table) -> anyhow::Result<()> {
        if let Some(task) = self.task {
            t.insert("task".into(), Value::String(task.name().into()));
        }
        if let Some(k) = &self.tokens {
            set(t, &["lm", "tokens"], Value::String(k.clone()));
        }
        for (key, value) in [
            ("block", self.block),
            ("layers", self.layers),
            ("heads", self.heads),
            ("d_model", self.d_model),
            ("batches_per_epoch", self.batches_per_epoch),
            ("eval_tokens", self.eval_tokens),
        ] {
            if let Some(v) = value {
                set(t, &["lm", key], int(v as u64)?);
            }
        }
        if let Some(d) = self.dropout {
            set(t, &["lm", "dropout"], float(d));
        }
        if let Some(e) = self.env {
            set(t, &["rl", "env"], Value::String(e.name().into()));
        }
        for (key, value) in [
            ("steps_per_epoch", self.steps_per_epoch),
            ("eval_episodes", self.eval_episodes.map(|n| n as u64)),
            ("warmup_steps", self.warmup_steps),
        ] {
            if let Some(v) = value {
                set(t, &["rl", key], int(v)?);
            }
        }
        if let Some(h) = &self.hidden {
            let widths = h.iter().map(|&w| int(w as u64)).collect::<anyhow::Result<Vec<_>>>()?;
            set(t, &["rl", "hidden"], Value::Array(widths));
        }
        Ok(())
    }
}

/// Everything that defines a training run.
#[derive(Args, Clone, Debug, Default)]
pub struct RunArgs {
    #[command(flatten)]
    pub task: TaskArgs,
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub model_run: ModelRunArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Target sparsity in [0, 1) of the sparse layers.
    #[arg(long)]
    pub sparsity: Option<f64>,
    #[command(flatten)]
    pub shape: ShapeArgs,
    #[command(flatten)]
    pub method: MethodArgs,
    #[command(flatten)]
    pub penalty: PenaltyArgs,
    #[command(flatten)]
    pub training: TrainingArgs,
    #[command(flatten)]
    pub env: RunEnvArgs,
}

impl RunArgs {
    /// The given options as a table (without the config file).
    pub fn overrides(&self) -> anyhow::Result<Table> {
        let mut t = Table::new();
        self.task.apply(&mut t)?;
        self.model.apply(&mut t);
        self.model_run.apply(&mut t);
        self.data.apply(&mut t)?;
        if let Some(s) = self.sparsity {
            set(&mut t, &["sparsity", "sparsity"], float(s));
        }
        self.shape.apply(&mut t);
        self.method.apply(&mut t)?;
        self.penalty.apply(&mut t)?;
        self.training.apply(&mut t)?;
        self.env.apply(&mut t)?;
        Ok(t)
    }

    /// The config file's table with the given options laid over it.
    pub fn table(&self) -> anyhow::Result<Table> {
        let mut table = self.config.table()?;
        merge(&mut table, self.overrides()?);
        Ok(table)
    }

    /// The resolved config of these options (errors name the config file, if any).
    pub fn resolve(&self) -> anyhow::Result<crate::run::RunConfig> {
        crate::run::RunConfig::from_table(self.table()?).map_err(|e| match &self.config.config {
            Some(path) => anyhow::anyhow!("{}: {e:#}", path.display()),
            None => e,
        })
    }

    /// Each given option on its own, as `(--name, table)` (to say which ones
    /// would change a run that is resumed).
    pub fn each_given(&self) -> anyhow::Result<Vec<(String, Table)>> {
        let whole = self.overrides()?;
        let mut out = Vec::new();
        for (section, value) in whole {
            match value {
                Value::Table(inner) => {
                    for (key, v) in inner {
                        let mut t = Table::new();
                        set(&mut t, &[&section, &key], v);
                        out.push((format!("{section}.{key}"), t));
                    }
                }
                v => out.push((section.clone(), Table::from_iter([(section, v)]))),
            }
        }
        Ok(out)
    }
}
