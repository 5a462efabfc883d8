//! Training a [`CompactMlp`] that has no dense twin (issue 10's showcase):
//! SET's and RigL's compact update rules from their configs, and one
//! training step with them. The rules run on the compact layers
//! (`sparse_kernels::train::compact_update`), so no tensor or host vector of
//! a layer's dense shape exists at any step; the decisions are those of the
//! masked-dense methods (tested step by step in `sparse-kernels`).

use std::collections::HashMap;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor};
use sparse_core::Method;
use sparse_core::{DropFraction, DropSchedule, MaskedOptimizer, UpdateSchedule};
use sparse_kernels::KernelError;
use sparse_kernels::train::{CompactUpdate, GROWTH_TILE, take_traces, update_model, with_output_probes};
use sparse_methods::{RigL, RigLConfig, Set, SetConfig};

use crate::{Classifier, CompactMlp};

fn invalid(e: sparse_core::SparseError) -> KernelError {
    KernelError::InvalidConfig(e.to_string())
}

/// The update steps and drop fraction of a drop/grow config's switches.
fn timing(
    total_steps: u64,
    (end_fraction, delta_t): (f64, u64),
    (schedule, alpha, exponent): (DropSchedule, f64, f64),
) -> Result<(UpdateSchedule, DropFraction), KernelError> {
    let updates = UpdateSchedule::until_fraction(total_steps, end_fraction, delta_t).map_err(invalid)?;
    Ok((updates, schedule.with_alpha(alpha, exponent).map_err(invalid)?))
}

/// [`timing`] of a config with the drop/grow switches (`SetConfig`, `RigLConfig`).
macro_rules! timing {
    ($config:expr, $total:expr) => {
        timing(
            $total,
            ($config.end_fraction, $config.delta_t),
            ($config.drop_schedule, $config.drop_fraction, $config.drop_exponent),
        )
    };
}

/// SET's rule (`config`'s ΔT, end fraction and ζ schedule) for a run of
/// `total_steps`, with the run's `seed`.
pub fn set_rule(config: &SetConfig, total_steps: u64, seed: u64) -> Result<CompactUpdate, KernelError> {
    let method = Set::new(config, total_steps).map_err(invalid)?;
    let Some(compact) = method.compact_rule() else {
        return Err(KernelError::InvalidConfig(
            "SET offers no compact rule; train it with `compact_step`".into(),
        ));
    };
    let (updates, drop) = timing!(config, total_steps)?;
    let rule = CompactUpdate {
        rule: compact,
        updates,
        drop,
        skip_optimizer: false,
        seed,
        tile: GROWTH_TILE,
    };
    rule.validate()?;
    Ok(rule)
}

/// RigL's rule (`config`'s ΔT, end fraction, α schedule, drop noise and
/// skipped optimizer step) for a run of `total_steps`, with the run's
/// `seed`. A gradient window above 1 and grow noise are not supported here
/// (they need the dense gradient of several steps, or a noise vector over
/// every position): train those with the masked-dense or `--execution
/// sparse` path.
pub fn rigl_rule(config: &RigLConfig, total_steps: u64, seed: u64) -> Result<CompactUpdate, KernelError> {
    let method = RigL::new(config, total_steps).map_err(invalid)?;
    let Some(compact) = method.compact_rule() else {
        return Err(KernelError::InvalidConfig(format!(
            "RigL with grad_window {} and grow_noise {} cannot update on the compact layers (they take grad_window 1 and grow_noise 0, RigL's defaults)",
            config.grad_window, config.grow_noise
        )));
    };
    let (updates, drop) = timing!(config, total_steps)?;
    let rule = CompactUpdate {
        rule: compact,
        updates,
        drop,
        skip_optimizer: config.skip_weight_update,
        seed,
        tile: GROWTH_TILE,
    };
    rule.validate()?;
    Ok(rule)
}

/// One training step of `model` at step `step` (0-based) on `images` and
/// `targets` with the cross-entropy loss: forward (with output probes on the
/// steps the rule grows by the gradient), backward, the optimizer step on
/// the values (unless the rule skips it at an update) and the topology
/// update. Returns the model and the loss (no longer on the tape).
pub fn compact_rule_step(
    model: CompactMlp,
    rule: &CompactUpdate,
    optimizer: &mut MaskedOptimizer,
    step: u64,
    lr: f64,
    (images, targets): (Tensor<4>, Tensor<1, Int>),
) -> Result<(CompactMlp, Tensor<1>), KernelError> {
    let trace = rule.needs_trace(step);
    let model = if trace {
        with_output_probes(model, images.dims()[0])?
    } else {
        model
    };
    let device = images.device();
    let logits = model.forward(images);
    let loss = CrossEntropyLossConfig::new().init(&device).forward(logits, targets);
    let mut grads = GradientsParams::from_grads(loss.backward(), &model);
    let (mut model, traces) = take_traces(model, &mut grads)?;
    if rule.optimizer_steps(step) {
        model = optimizer.step(lr, model, grads, &HashMap::new());
    }
    if rule.is_update_step(step) {
        model = update_model(model, rule, optimizer, step, &traces)?;
    }
    Ok((model, loss.detach()))
}
