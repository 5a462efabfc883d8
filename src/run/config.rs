//! The fully resolved configuration of a run, written to `config.toml` so that
//! `sparseburn train --config runs/X/config.toml` repeats the run. Every section
//! rejects unknown keys, so a typo is an error that names the key.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::DataConfig;

/// Which model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSettings {
    /// `mlp`, `cnn`, `resnet18`, `resnet34`, `resnet50` or `mobilenet-v1`.
    pub name: String,
    /// MobileNetV1 width multiplier α.
    pub width: f64,
    /// ResNet: γ = 0 in the last BN of each block.
    pub zero_init_residual: bool,
    /// Start from these weights: a safetensors file with torchvision key names
    /// (dense-to-sparse fine-tuning, e.g. GMP from a pretrained ResNet).
    pub init_weights: Option<PathBuf>,
    /// The sparse layer whose mask is plotted over time (default: the largest).
    pub mask_layer: Option<String>,
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self {
            name: "mlp".into(),
            width: 1.0,
            zero_init_residual: false,
            init_weights: None,
            mask_layer: None,
        }
    }
}

/// How sparse and in which shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SparsitySettings {
    /// Target sparsity in `[0, 1)`.
    pub sparsity: f64,
    /// `erk`, `er`, `uniform`, `uniform-dense-first` or `global`.
    pub distribution: String,
    /// ERK power scale.
    pub erk_power: f64,
    /// `unstructured`, `N:M` (e.g. `2:4`), `constant-fan-in`, `block:RxC` or `channel`.
    pub pattern: String,
    /// Keep the first layer dense (off the sparse set), whatever the model's policy.
    pub dense_first_layer: bool,
    /// Keep the classifier dense.
    pub dense_last_layer: bool,
    /// Extra glob patterns of weights to keep dense.
    pub exclude: Vec<String>,
}

impl Default for SparsitySettings {
    fn default() -> Self {
        Self {
            sparsity: 0.9,
            distribution: "erk".into(),
            erk_power: 1.0,
            pattern: "unstructured".into(),
            dense_first_layer: false,
            dense_last_layer: false,
            exclude: Vec::new(),
        }
    }
}

/// The method and all its switches (each method reads the ones it documents).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MethodSettings {
    /// `dense`, `static`, `snip`, `grasp`, `lth`, `one-shot`, `gmp`, `set`, `rigl`,
    /// `srigl`, `autosparse`, `mest`, `srste`.
    pub name: String,
    /// Steps between topology updates (ΔT).
    pub delta_t: u64,
    /// Updates stop at this fraction of training (RigL: 0.75).
    pub end_fraction: f64,
    /// Drop fraction α (RigL 0.3; SET ζ).
    pub drop_fraction: f64,
    /// `cosine`, `constant` or `exponential` (with `drop_exponent`).
    pub drop_schedule: String,
    /// Exponent k of the exponential drop-fraction decay.
    pub drop_exponent: f64,
    /// Skip the optimizer step on update steps (RigL default true, SRigL false).
    pub skip_weight_update: Option<bool>,
    /// RigL: steps of dense gradient averaged for growth.
    pub grad_window: u64,
    /// RigL: std of tie-break noise.
    pub tie_noise: f64,
    /// SRigL: γ_sal.
    pub gamma_sal: f64,
    /// SRigL: dynamic neuron ablation.
    pub ablation: bool,
    /// GMP: initial sparsity s_i.
    pub initial_sparsity: f64,
    /// GMP: pruning starts at this fraction of training (t0).
    pub prune_begin_fraction: f64,
    /// GMP: pruning ends at this fraction of training (t0 + nΔT).
    pub prune_end_fraction: f64,
    /// LTH: pruning rounds after the dense round.
    pub rounds: usize,
    /// LTH: fraction of remaining weights pruned per round.
    pub prune_fraction: f64,
    /// LTH: `step` (rewind to `rewind_step`), `finetune` or `reinit`.
    pub rewind: String,
    /// LTH: rewind step k.
    pub rewind_step: u64,
    /// LTH: global ranking (else per layer).
    pub global: bool,
    /// GraSP: samples per class.
    pub samples_per_class: usize,
    /// GraSP: logit temperature.
    pub temperature: f32,
    /// GraSP: finite-difference step relative to ‖θ‖.
    pub fd_epsilon: f64,
    /// AutoSparse: α_0.
    pub alpha0: f64,
    /// AutoSparse: initial threshold logit.
    pub threshold_init: f32,
    /// AutoSparse: weight decay of the thresholds.
    pub threshold_decay: f64,
    /// AutoSparse: freeze the mask at the target when α reaches 0.
    pub freeze_at_target: bool,
    /// MEST: initial mutation ratio.
    pub mutation: f64,
    /// MEST: fractions of training where the mutation ratio steps down.
    pub mutation_decay: Vec<f64>,
    /// MEST: λ of `|w| + λ|g|`.
    pub mest_lambda: f64,
    /// MEST: soft memory bound (EM&S).
    pub soft_bound: bool,
    /// SR-STE: λ_W.
    pub srste_lambda: f32,
    /// Optional penalty on the sparse weights: `l1` or `group-lasso`.
    pub penalty: Option<String>,
    /// Penalty strength λ.
    pub penalty_strength: f64,
}

impl Default for MethodSettings {
    fn default() -> Self {
        Self {
            name: "rigl".into(),
            delta_t: 100,
            end_fraction: 0.75,
            drop_fraction: 0.3,
            drop_schedule: "cosine".into(),
            drop_exponent: 3.0,
            skip_weight_update: None,
            grad_window: 1,
            tie_noise: 0.0,
            gamma_sal: 0.3,
            ablation: true,
            initial_sparsity: 0.0,
            prune_begin_fraction: 0.0,
            prune_end_fraction: 0.75,
            rounds: 3,
            prune_fraction: 0.2,
            rewind: "step".into(),
            rewind_step: 0,
            global: true,
            samples_per_class: 10,
            temperature: 200.0,
            fd_epsilon: 5e-3,
            alpha0: 0.5,
            threshold_init: -5.0,
            threshold_decay: 0.0,
            freeze_at_target: true,
            mutation: 0.02,
            mutation_decay: vec![0.5625, 0.75],
            mest_lambda: 0.0,
            soft_bound: false,
            srste_lambda: 2e-4,
            penalty: None,
            penalty_strength: 1e-4,
        }
    }
}

/// Optimisation settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingSettings {
    /// Epochs (per round for lottery tickets).
    pub epochs: usize,
    /// Training batch size.
    pub batch_size: usize,
    /// Evaluation batch size.
    pub eval_batch_size: usize,
    /// `sgd`, `adam` or `adamw`.
    pub optimizer: String,
    /// Base learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// Weight decay (L2 for SGD/Adam, decoupled for AdamW).
    pub weight_decay: f64,
    /// `cosine`, `step` or `constant`.
    pub schedule: String,
    /// Step schedule: epochs where the rate is multiplied by `gamma`.
    pub milestones: Vec<usize>,
    /// Step schedule factor.
    pub gamma: f64,
    /// Linear warm-up epochs.
    pub warmup_epochs: f64,
    /// Label smoothing ε.
    pub label_smoothing: f32,
    /// Seed of initialisation, data order, augmentation and masks.
    pub seed: u64,
}

impl Default for TrainingSettings {
    fn default() -> Self {
        Self {
            epochs: 30,
            batch_size: 128,
            eval_batch_size: 1000,
            optimizer: "sgd".into(),
            lr: 0.1,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 5e-4,
            schedule: "cosine".into(),
            milestones: Vec::new(),
            gamma: 0.1,
            warmup_epochs: 0.0,
            label_smoothing: 0.0,
            seed: 1,
        }
    }
}

/// Everything a run needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// `flex`, `ndarray`, `wgpu` or `cuda`.
    pub device: String,
    /// Model.
    pub model: ModelSettings,
    /// Data.
    pub data: DataConfig,
    /// Sparsity.
    pub sparsity: SparsitySettings,
    /// Method.
    pub method: MethodSettings,
    /// Training.
    pub training: TrainingSettings,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            device: "flex".into(),
            model: ModelSettings::default(),
            data: DataConfig::default(),
            sparsity: SparsitySettings::default(),
            method: MethodSettings::default(),
            training: TrainingSettings::default(),
        }
    }
}

impl RunConfig {
    /// Reads a TOML config file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), one_line(&e.to_string())))
    }

    /// The TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// A default folder name for the run.
    pub fn default_out(&self) -> PathBuf {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        PathBuf::from("runs").join(format!(
            "{}-{}-{}-s{}-{stamp}",
            self.model.name,
            self.method.name,
            (self.sparsity.sparsity * 100.0).round(),
            self.training.seed
        ))
    }
}

/// A TOML error message on one line.
fn one_line(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('|'))
        .collect::<Vec<_>>()
        .join(" ")
}
