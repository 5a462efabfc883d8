//! `--execution dense|sparse|auto`: whether a run trains its sparse layers
//! masked-dense (dense weights, gradients and moments times a mask) or in
//! sparse execution (their active values only; `sparse_kernels::train`,
//! `docs/sparse-execution.md`).

use anyhow::bail;
use serde::{Deserialize, Serialize};
use sparse_core::{LayerKind, Method, SparseExecution, Sparsifier};
use sparse_methods::BuildContext;

use super::config::RunConfig;
use super::task_kind::TaskKind;

/// How the sparse layers train.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Execution {
    /// Dense weights, gradients and optimizer moments, multiplied by the masks.
    #[default]
    Dense,
    /// The active values only: weights, gradients and moments follow the
    /// nonzeros (an error for a method or model that cannot).
    Sparse,
    /// Sparse where it can run and is faster: when the method and model can,
    /// each layer of density at most its crossover ([`SPARSE_BELOW_DENSITY`]
    /// for linear layers, [`CONV_SPARSE_BELOW_DENSITY`] for convolutions)
    /// runs the sparse kernels and the others multiply densely (all of them
    /// stored as their active values); a run with no such layer, or that
    /// cannot train sparse, trains masked-dense.
    Auto,
}

/// The density up to which `auto` trains sparse. Measured on the wide MLP
/// 784-4096-4096-10 at batch 128 (`docs/sparse-execution.md`, "First
/// measurement"): a sparse step was 1.9-3.5x faster than the masked-dense one
/// at density 0.1 and 0.55x at density 0.2, so the crossover lies between.
pub const SPARSE_BELOW_DENSITY: f64 = 0.15;

/// The density up to which `auto` trains a convolution sparse. Measured on
/// ResNet-18 (CIFAR stem, batch 64, RigL 90% ERK, whose layer1 convolutions
/// are 42% dense; `docs/sparse-execution.md`, "Convolutions"): the full step
/// was 1.55x the masked-dense one with every convolution sparse and 1.40x
/// with those above density 0.3 multiplied densely; the sparse convolution
/// kernels were faster at every density ERK gave them.
pub const CONV_SPARSE_BELOW_DENSITY: f64 = 0.5;

impl Execution {
    /// The name, as on the command line.
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self).map_or_else(String::new, |p| p.get_name().to_string())
    }
}

/// Why the run of `cfg` cannot train in sparse execution, from its config
/// alone (the task, the recipe, a penalty, the method), or `None`: every
/// image model has a sparse-execution twin.
pub fn config_obstacle(cfg: &RunConfig) -> Option<String> {
    if cfg.task != TaskKind::Image {
        return Some(format!(
            "sparse execution trains image classifiers; a `{}` run trains masked-dense",
            cfg.task.name()
        ));
    }
    if !cfg.stages.is_empty() {
        return Some("a recipe's stages train masked-dense".into());
    }
    if cfg.penalty.is_some() {
        return Some("a penalty adds a dense gradient term to the sparse weights every step".into());
    }
    // the method's property as a run builds it (the run's own build reports a bad setting)
    let built = cfg.method.build(&BuildContext::new(1000)).ok()?;
    method_obstacle(built.as_ref())
}

/// Why `method` cannot train in sparse execution, or `None`.
fn method_obstacle(method: &dyn Method) -> Option<String> {
    (method.sparse_execution() == SparseExecution::MaskedDenseOnly).then(|| {
        format!(
            "the method `{}` needs dense weights or gradients every step, at its initialisation or in dense phases, so it trains masked-dense only (methods that train sparse: static, set, mest, rigl, srigl)",
            method.name()
        )
    })
}

/// Refuses `--execution sparse` for a run whose config alone rules it out
/// (see [`config_obstacle`]).
pub fn check_config(cfg: &RunConfig) -> anyhow::Result<()> {
    if cfg.training.execution != Execution::Sparse || dense_anyway(cfg) {
        return Ok(()); // every config is read through here: build no method for the others
    }
    match config_obstacle(cfg) {
        Some(why) => bail!("--execution sparse: {why}; train with `--execution dense`"),
        None => Ok(()),
    }
}

/// A run with nothing to sparsify (target sparsity 0, the dense baseline):
/// every execution trains it dense.
fn dense_anyway(cfg: &RunConfig) -> bool {
    cfg.target_sparsity() == 0.0 && cfg.stages.is_empty()
}

/// Whether the run trains in sparse execution: `cfg`'s choice resolved for
/// its method (built into `sparse`). `sparse` fails with an error naming the
/// method or model and `--execution dense`; `auto` falls back to dense,
/// saying why in the log.
pub fn resolve(cfg: &RunConfig, sparse: &Sparsifier) -> anyhow::Result<bool> {
    let wanted = cfg.training.execution;
    if wanted == Execution::Dense {
        return Ok(false);
    }
    if dense_anyway(cfg) {
        tracing::info!("nothing to sparsify (target sparsity 0): training dense");
        return Ok(false);
    }
    let method = sparse.method();
    let obstacle = config_obstacle(cfg).or_else(|| method_obstacle(method));
    match (wanted, obstacle) {
        (Execution::Sparse, Some(why)) => bail!("--execution sparse: {why}; train with `--execution dense`"),
        (Execution::Auto, Some(why)) => {
            tracing::info!(reason = %why, "--execution auto: training masked-dense");
            Ok(false)
        }
        _ => Ok(true),
    }
}

/// A sparse layer's target density: the one its distribution gives it
/// (which does not move during training, unlike a mask between an EM&S
/// mutation and its pruning), the mask's where the plan cannot say.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerTarget {
    /// The weight's path.
    pub path: String,
    /// The target density.
    pub density: f64,
    /// The density up to which `auto` runs the layer's sparse kernels.
    pub crossover: f64,
}

impl LayerTarget {
    /// Whether the layer runs the sparse kernels in a run that trains in
    /// sparse execution under `execution` (else it multiplies densely).
    pub fn is_sparse(&self, execution: Execution) -> bool {
        execution == Execution::Sparse || self.density <= self.crossover
    }
}

/// The density up to which `auto` trains a layer of `kind` sparse.
pub fn crossover(kind: LayerKind) -> f64 {
    match kind {
        LayerKind::Linear => SPARSE_BELOW_DENSITY,
        LayerKind::Conv => CONV_SPARSE_BELOW_DENSITY,
    }
}

/// The [`LayerTarget`] of every layer of `sparse`.
pub fn targets(sparse: &Sparsifier) -> Vec<LayerTarget> {
    let plan = sparse.plan();
    let counts = plan.counts(plan.sparsity()).ok();
    sparse
        .layers()
        .iter()
        .zip(sparse.masks())
        .enumerate()
        .map(|(i, (l, m))| {
            let active = counts
                .as_ref()
                .and_then(|t| t.get(i).copied())
                .unwrap_or_else(|| m.count_ones());
            LayerTarget {
                path: l.path.clone(),
                density: active as f64 / l.numel().max(1) as f64,
                crossover: crossover(l.kind),
            }
        })
        .collect()
}

/// Whether a run that can train in sparse execution does (`auto`: some layer
/// runs the sparse kernels).
pub fn any_sparse_layer(execution: Execution, sparse: &Sparsifier) -> bool {
    targets(sparse).iter().any(|t| t.is_sparse(execution))
}

/// How a run's sparse layers trained, and its peak memory (in `summary.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecutionSummary {
    /// What the config asked for.
    pub requested: Execution,
    /// Each sparse layer: how it multiplied (`sparse`: the sparse kernels;
    /// `dense`: densely), its density at the end, and the weights it stored
    /// (all of them on the masked-dense path, the active ones in sparse
    /// execution, whichever way a layer multiplies).
    pub layers: Vec<LayerExecution>,
    /// Peak resident memory of the run (`VmHWM`; of this session for a
    /// resumed run), bytes; none off Linux.
    pub peak_rss_bytes: Option<u64>,
    /// The part of it before the training steps began: the model's setup
    /// (in sparse execution, the dense model initialised and gathered).
    pub setup_peak_rss_bytes: Option<u64>,
    /// Peak resident memory from the first training step on, evaluation and
    /// checkpoints included (a run in sparse execution writes compact
    /// checkpoints, and turns its model back into the dense one at the end;
    /// [`crate::run::peak`]).
    pub steps_peak_rss_bytes: Option<u64>,
}

/// How one sparse layer trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerExecution {
    /// The weight's path.
    pub path: String,
    /// `dense` (masked) or `sparse`.
    pub execution: Execution,
    /// Active fraction at the end.
    pub density: f64,
    /// Weights stored while training.
    pub stored_weights: usize,
}

/// The [`ExecutionSummary`] of a run of `cfg` that trained with `sparse`.
pub fn summary(cfg: &RunConfig, sparse: &Sparsifier) -> ExecutionSummary {
    let peaks = super::peak::peaks();
    let requested = cfg.training.execution;
    let compact = resolve(cfg, sparse).unwrap_or(false) && any_sparse_layer(requested, sparse);
    let layers = sparse
        .layers()
        .iter()
        .zip(sparse.masks())
        .zip(targets(sparse))
        .map(|((layer, mask), target)| LayerExecution {
            execution: match compact && target.is_sparse(requested) {
                true => Execution::Sparse,
                false => Execution::Dense,
            },
            path: target.path,
            density: mask.count_ones() as f64 / layer.numel().max(1) as f64,
            stored_weights: if compact { mask.count_ones() } else { layer.numel() },
        })
        .collect();
    ExecutionSummary {
        requested: cfg.training.execution,
        layers,
        peak_rss_bytes: peaks.whole,
        setup_peak_rss_bytes: peaks.setup,
        steps_peak_rss_bytes: peaks.steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under `auto` a 42%-dense convolution (ResNet-18's layer1 under ERK at
    /// 90%) runs the sparse kernels and a linear layer of that density
    /// multiplies densely; under `sparse` both run the sparse kernels.
    #[test]
    fn auto_trains_convolutions_sparse_to_a_higher_density_than_linear_layers() {
        let at = |kind, density| LayerTarget {
            path: "w".into(),
            density,
            crossover: crossover(kind),
        };
        assert!(at(LayerKind::Conv, 0.42).is_sparse(Execution::Auto));
        assert!(!at(LayerKind::Conv, 0.6).is_sparse(Execution::Auto));
        assert!(!at(LayerKind::Linear, 0.42).is_sparse(Execution::Auto));
        assert!(at(LayerKind::Linear, 0.1).is_sparse(Execution::Auto));
        assert!(at(LayerKind::Linear, 0.42).is_sparse(Execution::Sparse));
    }
}
