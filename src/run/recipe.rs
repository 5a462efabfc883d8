//! Recipes: a run in several stages (`[[stage]]` in the run's TOML), as
//! SparseML's recipes chain modifiers: e.g. a dense warm-up, GMP pruning, then a
//! fine-tune of the fixed masks with its own learning-rate schedule.
//!
//! A stage has a `name`, its `epochs`, and may override the run's method, its
//! sparsity, the optimizer and the learning-rate schedule; what it does not give
//! it inherits from the run's top-level sections. Each stage resolves into a full
//! [`RunConfig`] (the run's table with the stage's keys laid over it), so every
//! check of a one-stage run applies to a stage too. The trainer runs the stages
//! one after the other on the same model (see `train::stages`).
//!
//! A stage may also start with one-shot pruning (`prune = { method = "wanda" }`):
//! at its first step the current weights are pruned to the stage's sparsity and
//! pattern by [`sparse_methods::oneshot`] (magnitude, Wanda, SparseGPT),
//! calibrated on the run's own training batches, and the stage's method trains
//! on from those masks ([`StagePrune`]).

use anyhow::{Context, bail};
use burn::config::Config;
use serde_json::Value;
use sparse_core::{LayerFilter, Pattern};
use sparse_methods::MethodConfig;
use sparse_methods::oneshot::{self, CaptureMode, OneShotConfig, OneShotMethod, SparseGptSettings};
use sparse_methods::registry::fill_defaults;

use super::config::RunConfig;

/// The keys a `[[stage]]` takes.
pub const STAGE_KEYS: [&str; 11] = [
    "name",
    "epochs",
    "method",
    "prune",
    "sparsity",
    "optimizer",
    "lr",
    "schedule",
    "milestones",
    "gamma",
    "warmup_epochs",
];

/// The `[training]` keys a stage may set at its own top level.
const TRAINING_KEYS: [&str; 5] = ["lr", "schedule", "milestones", "gamma", "warmup_epochs"];

/// One stage of a recipe.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    /// Its name, as in `metrics.csv`'s `stage` column.
    pub name: String,
    /// Its epochs.
    pub epochs: usize,
    /// The run's config with the stage's keys laid over it (its `training.epochs`
    /// are the stage's; its learning-rate schedule runs over the stage).
    pub config: Box<RunConfig>,
    /// One-shot pruning at the stage's first step, if any.
    pub prune: Option<StagePrune>,
}

/// One-shot pruning at the start of a stage (`prune = "wanda"` or
/// `prune = { method = "sparsegpt", calibration_batches = 8 }` in a `[[stage]]`).
///
/// At the stage's first step the model's current weights are pruned to the
/// stage's `sparsity`, `pattern` and `distribution` over the stage's sparse
/// layers with [`sparse_methods::oneshot::prune`] (layer by layer in forward
/// order, as `sparseburn prune` does): magnitude keeps the largest `|W|`; Wanda
/// (Sun et al. 2023) the largest `|W_ij|·‖X_j‖₂` in each output row; SparseGPT
/// (Frantar & Alistarh 2023) solves the layer-wise OBS problem
/// `min ‖WX − ŴX‖²` row by row and updates the kept weights. `X` are the
/// layers' inputs on the first `calibration_batches` training batches of the
/// run's first epoch (the run's seed orders them, no augmentation), so a resumed
/// run calibrates on the same images. The stage's method then trains from those
/// masks ([`sparse_core::Sparsifier::continue_from`]: `static` keeps them, a DST
/// method moves weights at their per-layer counts).
#[derive(Config, Debug, PartialEq)]
pub struct StagePrune {
    /// `magnitude`, `wanda` or `sparsegpt`.
    pub method: OneShotMethod,
    /// Training batches (of the run's batch size) whose layer inputs calibrate
    /// Wanda and SparseGPT (and the per-layer reconstruction error logged).
    #[config(default = 4)]
    pub calibration_batches: usize,
    /// SparseGPT only: columns per lazy-update block (unset: the default of
    /// [`SparseGptSettings`], the paper's 128).
    pub block_size: Option<usize>,
    /// SparseGPT only: dampening as a fraction of the mean Hessian diagonal
    /// (unset: the default of [`SparseGptSettings`], the paper's 0.01).
    pub dampening: Option<f64>,
}

impl StagePrune {
    /// Reads `prune = "wanda"` or `prune = { method = "wanda", ... }`.
    fn from_toml(value: &toml::Value) -> anyhow::Result<Self> {
        let table = match value {
            toml::Value::String(_) => toml::Table::from_iter([("method".to_string(), value.clone())]),
            toml::Value::Table(t) if t.contains_key("method") => t.clone(),
            _ => bail!(
                "prune must be a one-shot method (prune = \"wanda\") or a table with one (prune = {{ method = \"sparsegpt\", calibration_batches = 8 }}); methods: magnitude, wanda, sparsegpt"
            ),
        };
        let Value::Object(map) = serde_json::to_value(table)? else {
            bail!("prune must be a table");
        };
        let prune = fill_defaults(&StagePrune::new(OneShotMethod::Magnitude), map, "prune")?;
        prune.check_settings_apply()?;
        Ok(prune)
    }

    /// Refuses `block_size` and `dampening` for a method that does not
    /// reconstruct the kept weights (they would silently do nothing).
    fn check_settings_apply(&self) -> anyhow::Result<()> {
        if self.method.reconstructs() {
            return Ok(());
        }
        let given: Vec<&str> = [
            ("block_size", self.block_size.is_some()),
            ("dampening", self.dampening.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect();
        if given.is_empty() {
            return Ok(());
        }
        let methods: Vec<&str> = OneShotMethod::ALL
            .iter()
            .filter(|m| m.reconstructs())
            .map(OneShotMethod::name)
            .collect();
        bail!(
            "prune = {}: {} applies only to {}, which reconstructs the kept weights; drop {}, or use method = \"{}\"",
            self.method,
            given.join(" and "),
            methods.join(", "),
            given.join(" and "),
            methods.first().copied().unwrap_or_default()
        )
    }

    /// SparseGPT's settings: those given, else [`SparseGptSettings`]'s defaults.
    fn sparsegpt(&self) -> SparseGptSettings {
        let default = SparseGptSettings::default();
        SparseGptSettings {
            block_size: self.block_size.unwrap_or(default.block_size),
            dampening: self.dampening.unwrap_or(default.dampening),
        }
    }

    /// The one-shot run that prunes a stage of `config`, over the layers
    /// `policy` (the model's own sparsity policy) and the stage's sparsity settings choose.
    pub fn one_shot(&self, config: &RunConfig, policy: LayerFilter) -> OneShotConfig {
        let sparsity = config.sparsity_config(policy);
        let settings = self.sparsegpt();
        OneShotConfig::new(self.method)
            .with_sparsity(sparsity.sparsity)
            .with_pattern(sparsity.pattern)
            .with_distribution(sparsity.distribution)
            .with_filter(sparsity.filter)
            .with_mode(CaptureMode::Sequential)
            .with_block_size(settings.block_size)
            .with_dampening(settings.dampening)
            .with_report_error(true)
    }
}

impl Stage {
    /// The stage as written in a config file: every key it may set, resolved
    /// (so the written file repeats the stage even where the run's own sections
    /// were resolved differently, e.g. a method's reference distribution).
    pub fn to_table(&self) -> toml::Table {
        let c = &self.config;
        let mut t = toml::Table::new();
        t.insert("name".into(), toml::Value::String(self.name.clone()));
        t.insert("epochs".into(), toml::Value::Integer(self.epochs as i64));
        let mut put = |key: &str, value: Result<toml::Value, toml::ser::Error>| {
            if let Ok(v) = value {
                t.insert(key.into(), v);
            }
        };
        put("method", toml::Value::try_from(&c.method));
        if let Some(s) = &c.sparsity {
            put("sparsity", toml::Value::try_from(s));
        }
        put("optimizer", toml::Value::try_from(&c.optimizer));
        if let Some(p) = &self.prune {
            put("prune", toml::Value::try_from(p));
        }
        if let Ok(toml::Value::Table(training)) = toml::Value::try_from(&c.training) {
            for key in TRAINING_KEYS {
                if let Some(v) = training.get(key) {
                    t.insert(key.into(), v.clone());
                }
            }
        }
        t
    }
}

/// A stage as read, before it is resolved.
pub(crate) struct RawStage {
    name: String,
    epochs: usize,
    overrides: toml::Table,
}

/// Takes `stage` out of a config table: the stages as written (empty when the
/// run has none), each checked for its keys, its name and its epochs.
pub(crate) fn take_stages(table: &mut toml::Table) -> anyhow::Result<Vec<RawStage>> {
    let Some(value) = table.remove("stage") else {
        return Ok(Vec::new());
    };
    let toml::Value::Array(items) = value else {
        bail!("`stage` must be an array of tables ([[stage]] blocks), not `{value}`");
    };
    if items.is_empty() {
        bail!("`stage` is empty: a recipe needs at least one [[stage]] (drop `stage` for a one-stage run)");
    }
    let mut stages: Vec<RawStage> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let toml::Value::Table(mut t) = item else {
            bail!("[[stage]] {} must be a table (name = ..., epochs = ...)", i + 1);
        };
        if let Some(key) = t.keys().find(|k| !STAGE_KEYS.contains(&k.as_str())) {
            bail!(
                "[[stage]] {}: unknown key `{key}`; a stage takes {}",
                i + 1,
                STAGE_KEYS.join(", ")
            );
        }
        let name = match t.remove("name") {
            Some(toml::Value::String(s)) => s,
            None => bail!("[[stage]] {} needs a name (name = \"warmup\")", i + 1),
            Some(other) => bail!("[[stage]] {}: name must be text, not {other}", i + 1),
        };
        let good = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
        if name.is_empty() || !name.chars().all(good) {
            bail!(
                "[[stage]] {}: name `{name}` must be letters, digits, `-`, `_` or `.` (it is a column of metrics.csv)",
                i + 1
            );
        }
        if stages.iter().any(|s| s.name == name) {
            bail!(
                "[[stage]] {}: the name `{name}` is used twice; give each stage its own",
                i + 1
            );
        }
        let epochs = match t.remove("epochs") {
            Some(toml::Value::Integer(e)) if e >= 1 => e as usize,
            None => bail!("[[stage]] `{name}` needs its epochs (epochs = 1 or more)"),
            Some(other) => bail!("[[stage]] `{name}`: epochs {other} must be a whole number, at least 1"),
        };
        stages.push(RawStage {
            name,
            epochs,
            overrides: t,
        });
    }
    Ok(stages)
}

/// The run's epochs: the sum of the stages'. `[training] epochs`, when given,
/// must be that sum (as a written config.toml has it).
pub(crate) fn set_total_epochs(table: &mut toml::Table, stages: &[RawStage]) -> anyhow::Result<()> {
    let total: usize = stages.iter().map(|s| s.epochs).sum();
    let training = table
        .entry("training")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let toml::Value::Table(t) = training else {
        bail!("`training` must be a table ([training])");
    };
    match t.get("epochs") {
        None => {
            t.insert("epochs".into(), toml::Value::Integer(total as i64));
        }
        Some(toml::Value::Integer(e)) if *e == total as i64 => {}
        Some(other) => bail!(
            "[training] epochs = {other}, but the stages' epochs add up to {total}: the stages set the run's length; drop epochs (and --epochs)"
        ),
    }
    Ok(())
}

/// Resolves each stage against `base` (the run's table, without `stage`).
pub(crate) fn resolve_stages(base: &toml::Table, raw: Vec<RawStage>) -> anyhow::Result<Vec<Stage>> {
    let mut stages = Vec::with_capacity(raw.len());
    for (i, s) in raw.into_iter().enumerate() {
        let label = format!("[[stage]] {} `{}`", i + 1, s.name);
        let mut table = stage_table(base, &s).with_context(|| label.clone())?;
        let resolve = |t: toml::Table| RunConfig::from_table(t).map_err(|e| anyhow::anyhow!("{label}: {e:#}"));
        let mut config = resolve(table.clone())?;
        if let Some(before) = stages.last() {
            config = inherit_distribution(before, config, &mut table, &label, resolve)?;
        }
        let prune = s
            .overrides
            .get("prune")
            .map(StagePrune::from_toml)
            .transpose()
            .map_err(|e| anyhow::anyhow!("{label}: {e:#}"))?;
        stages.push(Stage {
            name: s.name,
            epochs: s.epochs,
            config: Box::new(config),
            prune,
        });
    }
    check_carry_over(&stages)?;
    check_prune(&stages)?;
    Ok(stages)
}

/// Checks each stage that starts with one-shot pruning: it prunes a dense
/// model (the first stage, or after a dense stage) into masks that the stage's
/// own sparse method trains on; Wanda and SparseGPT get calibration batches;
/// the pattern is one the pruning keeps (unstructured, N:M); SparseGPT's
/// settings are valid. Whether the model reports its layers' inputs and the
/// epoch has the calibration batches is checked when training starts.
fn check_prune(stages: &[Stage]) -> anyhow::Result<()> {
    for (i, stage) in stages.iter().enumerate() {
        let Some(prune) = &stage.prune else { continue };
        let label = format!("[[stage]] {} `{}`", i + 1, stage.name);
        let method = prune.method.name();
        if stage.config.sparsity.is_none() {
            bail!(
                "{label}: prune = {method} needs a sparse stage to train the pruned model: give the stage a sparsity and a sparse method (method = \"static\" keeps the pruned masks), or drop prune"
            );
        }
        if let Some(before) = stages[..i].last().filter(|b| b.config.sparsity.is_some()) {
            bail!(
                "{label}: prune = {method} prunes a dense model, but stage `{}` before it hands over sparse masks; put a dense stage between them, or drop prune (a gmp stage prunes handed-over masks further by magnitude)",
                before.name
            );
        }
        if prune.method.needs_calibration() && prune.calibration_batches == 0 {
            bail!(
                "{label}: prune = {method} scores the weights on the layers' inputs, but calibration_batches = 0; set calibration_batches to 1 or more (e.g. 4)"
            );
        }
        // the sparsity, pattern and method's settings (the layers are checked when training starts)
        oneshot::check_settings(&prune.one_shot(&stage.config, LayerFilter::new()))
            .map_err(|e| anyhow::anyhow!("{label}: prune = {method}: {e}"))?;
    }
    Ok(())
}

/// A sparse stage that continues the masks of the sparse stage `before` trains
/// under their distribution (the one recorded must be the one trained): it
/// inherits it, in place of its method's reference default; one it names
/// itself must be the same.
fn inherit_distribution(
    before: &Stage,
    config: RunConfig,
    table: &mut toml::Table,
    label: &str,
    resolve: impl Fn(toml::Table) -> anyhow::Result<RunConfig>,
) -> anyhow::Result<RunConfig> {
    let (Some(from), Some(now)) = (&before.config.sparsity, &config.sparsity) else {
        return Ok(config);
    };
    if from.distribution == now.distribution {
        return Ok(config);
    }
    let named = matches!(table.get("sparsity"), Some(toml::Value::Table(t)) if t.contains_key("distribution"));
    if named {
        bail!(
            "{label}: its distribution {} differs from {} of stage `{}`, whose masks it continues; drop its distribution (it inherits theirs), or put a dense stage between them",
            now.distribution,
            from.distribution,
            before.name
        );
    }
    let distribution = toml::Value::try_from(&from.distribution).context("writing the inherited distribution")?;
    lay_over(
        table,
        "sparsity",
        toml::Table::from_iter([("distribution".to_string(), distribution)]),
    );
    resolve(table.clone())
}

/// The run's table with the keys of `stage` laid over it.
fn stage_table(base: &toml::Table, stage: &RawStage) -> anyhow::Result<toml::Table> {
    let mut t = base.clone();
    let o = &stage.overrides;
    if let Some(method) = o.get("method") {
        let method = match method {
            toml::Value::String(name) => toml::Value::Table(toml::Table::from_iter([(
                "name".to_string(),
                toml::Value::String(name.clone()),
            )])),
            toml::Value::Table(m) if m.contains_key("name") => method.clone(),
            _ => bail!(
                "method must be a name (method = \"gmp\") or a table with one (method = {{ name = \"gmp\", delta_t = 50 }})"
            ),
        };
        let name = method.get("name").and_then(toml::Value::as_str).unwrap_or_default();
        let dense = MethodConfig::named(name).is_ok_and(|m| m.is_dense());
        if dense && !o.contains_key("sparsity") {
            t.remove("sparsity"); // a dense stage trains without the run's sparsity
        }
        t.insert("method".into(), method);
    }
    if let Some(sparsity) = o.get("sparsity") {
        let over = match sparsity {
            toml::Value::Float(_) | toml::Value::Integer(_) => {
                toml::Table::from_iter([("sparsity".to_string(), sparsity.clone())])
            }
            toml::Value::Table(s) => s.clone(),
            other => bail!("sparsity must be a number (sparsity = 0.9) or a table like [sparsity], not {other}"),
        };
        lay_over(&mut t, "sparsity", over);
    }
    if let Some(optimizer) = o.get("optimizer") {
        if !optimizer.is_table() {
            bail!("optimizer must be a table like [optimizer] (optimizer = {{ name = \"sgd\", momentum = 0.9 }})");
        }
        t.insert("optimizer".into(), optimizer.clone());
    }
    let mut training = toml::Table::from_iter([("epochs".to_string(), toml::Value::Integer(stage.epochs as i64))]);
    for key in TRAINING_KEYS {
        if let Some(v) = o.get(key) {
            training.insert(key.into(), v.clone());
        }
    }
    if o.contains_key("schedule")
        && let Some(toml::Value::Table(inherited)) = t.get_mut("training")
    {
        // the milestones and factor of the run's step schedule are not the stage's
        inherited.remove("milestones");
        inherited.remove("gamma");
    }
    lay_over(&mut t, "training", training);
    Ok(t)
}

/// Lays the keys of `over` over the section `name` of `t`.
fn lay_over(t: &mut toml::Table, name: &str, over: toml::Table) {
    let section = t.entry(name).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    match section {
        toml::Value::Table(s) => s.extend(over),
        other => *other = toml::Value::Table(over),
    }
}

/// Checks that every stage can start from the masks of the one before: pruned
/// weights come back only in a dense stage, so a sparse stage after a sparse one
/// keeps its masks (same pattern, at least their sparsity). Whether its method
/// can raise the sparsity (GMP) is a property of the built method, checked when
/// training starts (`train::stages`).
fn check_carry_over(stages: &[Stage]) -> anyhow::Result<()> {
    let mut carried: Option<(&Stage, f64, &Pattern)> = None;
    for (i, stage) in stages.iter().enumerate() {
        let label = format!("[[stage]] {} `{}`", i + 1, stage.name);
        let Some(s) = &stage.config.sparsity else {
            carried = None; // a dense stage: every weight trains again
            continue;
        };
        if let Some((before, at, pattern)) = carried {
            if &s.pattern != pattern {
                bail!(
                    "{label}: its pattern {} differs from {} of stage `{}`, whose masks it continues; give both the same pattern, or put a dense stage between them",
                    s.pattern,
                    pattern,
                    before.name
                );
            }
            if s.sparsity + 1e-9 < at {
                bail!(
                    "{label}: sparsity {} cannot be reached from the masks of stage `{}` at {at} (pruned weights come back only in a dense stage); set its sparsity to {at} or more, or put a dense stage between them",
                    s.sparsity,
                    before.name
                );
            }
        }
        carried = Some((stage, s.sparsity, &s.pattern));
    }
    Ok(())
}

/// The sparsity of the masks that stage `i` continues from (none when it starts
/// as a run does: the first stage, or after a dense one).
pub fn carried_sparsity(stages: &[Stage], i: usize) -> Option<f64> {
    let before = stages[..i].last()?;
    before.config.sparsity.as_ref().map(|s| s.sparsity)
}
