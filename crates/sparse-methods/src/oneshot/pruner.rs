//! The one-shot pruning driver: which layers, in which order, with which inputs.

use std::collections::BTreeMap;

use burn::module::Module;
use sparse_core::capture::CaptureInputs;
use sparse_core::distribution::{Allocation, Distribution};
use sparse_core::error::check_sparsity;
use sparse_core::plan::{Plan, SparsityConfig};
use sparse_core::{Mask, Pattern, Result, SparseError, SparseLayer, discover};

use super::calibration::{LayerStats, StatsSink, calibration_stats};
use super::config::{CaptureMode, OneShotConfig, OneShotMethod};
use super::magnitude::magnitude_keep;
use super::outcome::{LayerReport, OneShotOutcome};
use super::reconstruction::{output_energy, reconstruction_error};
use super::sparsegpt::sparsegpt_prune;
use super::target::Target;
use super::wanda::wanda_keep;
use super::weights::{from_rows, read_weight, to_rows, write_weights};

/// Prunes `model` in one shot and returns, per pruned layer, its mask, its new
/// weights and its reconstruction error; `outcome.apply(model)` writes the weights.
///
/// The calibration batches are fed to [`CaptureInputs::forward_capture`] of an
/// inference-mode copy of `model` (`Module::valid`: BatchNorm uses its running
/// statistics); `model` itself is not changed. Magnitude pruning accepts an empty
/// calibration set (then no error is reported); Wanda and SparseGPT need data.
///
/// ```ignore
/// let config = OneShotConfig::new(OneShotMethod::SparseGpt).with_sparsity(0.5);
/// let outcome = sparse_methods::oneshot::prune(&model, &images, &config)?;
/// let model = outcome.apply(model)?;
/// ```
pub fn prune<M: CaptureInputs>(model: &M, calibration: &[M::Batch], config: &OneShotConfig) -> Result<OneShotOutcome> {
    let layers = discover(model, &config.filter)?;
    check_config(config, &layers)?;
    let data = !calibration.is_empty();
    if !data && config.method != OneShotMethod::Magnitude {
        return Err(SparseError::method(
            config.method.name(),
            "needs calibration data (the activations of each layer); pass at least one calibration batch",
        ));
    }
    let mut model = model.valid();
    let order = if data {
        forward_order(&model, &calibration[0], &layers)?
    } else {
        layers.clone()
    };
    let need_gram = data && (config.method == OneShotMethod::SparseGpt || config.report_error);
    let dense = match (config.mode == CaptureMode::OnePass && data, global_needs_data(config)) {
        (true, _) => Some(calibration_stats(&model, calibration, &paths(&order), need_gram)?),
        (false, true) => Some(calibration_stats(&model, calibration, &paths(&order), false)?),
        (false, false) => None,
    };
    let targets = layer_targets(&model, &order, config, dense.as_ref())?;
    let mut reports = Vec::with_capacity(order.len());
    for (layer, target) in order.iter().zip(targets) {
        let weights = read_weight(&model, &layer.path)?;
        let report = match (&config.mode, &dense) {
            (CaptureMode::OnePass, Some(stats)) => prune_layer(layer, weights, stats.get(&layer.path), target, config)?,
            _ if data => {
                let mut stats = calibration_stats(&model, calibration, std::slice::from_ref(&layer.path), need_gram)?;
                let report = prune_layer(layer, weights, stats.remove(&layer.path).as_ref(), target, config)?;
                model = write_weights(model, &BTreeMap::from([(layer.path.clone(), report.weights.clone())]))?;
                report
            }
            _ => prune_layer(layer, weights, None, target, config)?,
        };
        tracing::info!(
            layer = %report.path,
            sparsity = report.sparsity(),
            error = ?report.error,
            relative_error = ?report.relative_error(),
            "one-shot {}",
            config.method.name()
        );
        reports.push(report);
    }
    Ok(OneShotOutcome { layers: reports })
}

/// Checks, without pruning, that [`prune`] can run `config` on `model`: the
/// sparsity, the pattern and SparseGPT's settings against the layers, the
/// calibration data a method needs, and, given a calibration `batch`, that the
/// model's [`CaptureInputs::forward_capture`] reports every layer to prune (so a
/// training recipe can refuse a bad one-shot stage before it trains).
pub fn check<M: CaptureInputs>(model: &M, batch: Option<&M::Batch>, config: &OneShotConfig) -> Result<()> {
    let layers = discover(model, &config.filter)?;
    check_config(config, &layers)?;
    match batch {
        Some(batch) => forward_order(&model.valid(), batch, &layers).map(|_| ()),
        None if config.method.needs_calibration() => Err(SparseError::method(
            config.method.name(),
            "needs calibration data (the activations of each layer); pass at least one calibration batch",
        )),
        None => Ok(()),
    }
}

fn paths(layers: &[SparseLayer]) -> Vec<String> {
    layers.iter().map(|l| l.path.clone()).collect()
}

fn global_needs_data(config: &OneShotConfig) -> bool {
    config.distribution == Distribution::Global && config.method != OneShotMethod::Magnitude
}

/// Checks the settings that do not depend on the model's layers: the sparsity,
/// a pattern one-shot pruning keeps (unstructured, or N:M at its sparsity
/// `1 − N/M` under a per-layer distribution), and SparseGPT's block size and
/// dampening (a block size a multiple of M under N:M). A recipe checks a
/// stage's pruning with it when its config is read.
pub fn check_settings(config: &OneShotConfig) -> Result<()> {
    check_sparsity(config.sparsity)?;
    match config.pattern {
        Pattern::Unstructured => {}
        Pattern::NM { n, m } => {
            if config.distribution == Distribution::Global {
                return Err(SparseError::InvalidConfig(format!(
                    "the global distribution cannot keep the {n}:{m} pattern; use the uniform distribution with N:M"
                )));
            }
            let fixed = 1.0 - n as f64 / m as f64;
            if (config.sparsity - fixed).abs() > 1e-9 {
                return Err(SparseError::InvalidConfig(format!(
                    "pattern {n}:{m} fixes the sparsity at {fixed}, but the target is {}; set the sparsity to {fixed}",
                    config.sparsity
                )));
            }
        }
        ref other => {
            return Err(SparseError::InvalidConfig(format!(
                "one-shot pruning supports the unstructured and N:M patterns, not {other}; use unstructured or e.g. 2:4"
            )));
        }
    }
    if config.method == OneShotMethod::SparseGpt {
        let target = target_of_pattern(config).unwrap_or(Target::Sparsity(config.sparsity));
        // a fan-in of M (or 1) passes the layer check: only the settings are checked here
        let fan_in = match target {
            Target::NM { m, .. } => m,
            Target::Sparsity(_) => 1,
        };
        config.sparsegpt().check(fan_in, target)?;
    }
    Ok(())
}

fn check_config(config: &OneShotConfig, layers: &[SparseLayer]) -> Result<()> {
    // a layer N:M does not fit is named first (it is what the user can change)
    if let Pattern::NM { .. } = config.pattern {
        for layer in layers {
            config.pattern.check(layer)?;
        }
    }
    check_settings(config)?;
    if config.method == OneShotMethod::SparseGpt {
        let target = target_of_pattern(config).unwrap_or(Target::Sparsity(config.sparsity));
        for layer in layers {
            config.sparsegpt().check(layer.fan_in(), target)?;
        }
    }
    Ok(())
}

fn target_of_pattern(config: &OneShotConfig) -> Option<Target> {
    match config.pattern {
        Pattern::NM { n, m } => Some(Target::NM { n, m }),
        _ => None,
    }
}

/// The sparse layers in the order the forward pass reaches them; errors if the model's
/// `forward_capture` skips one.
fn forward_order<M: CaptureInputs>(model: &M, batch: &M::Batch, layers: &[SparseLayer]) -> Result<Vec<SparseLayer>> {
    let mut probe = StatsSink::new(std::iter::empty(), false, false);
    probe.run(model, batch.clone())?;
    let order = probe.order();
    if let Some(missing) = layers.iter().find(|l| !order.contains(&l.path)) {
        return Err(SparseError::InvalidConfig(format!(
            "layer `{}` is not reported by the model's `CaptureInputs::forward_capture` (it reported: {}); run it through `Capture` under that weight path, or exclude it with the layer filter",
            missing.path,
            order.join(", ")
        )));
    }
    Ok(order
        .iter()
        .filter_map(|p| layers.iter().find(|l| &l.path == p).cloned())
        .collect())
}

/// Each layer's target under the pattern and distribution.
fn layer_targets<M: Module>(
    model: &M,
    layers: &[SparseLayer],
    config: &OneShotConfig,
    dense: Option<&BTreeMap<String, LayerStats>>,
) -> Result<Vec<Target>> {
    if let Some(t) = target_of_pattern(config) {
        return Ok(vec![t; layers.len()]);
    }
    let s = config.sparsity;
    let kept = match &config.distribution {
        Distribution::Uniform { dense_first_layer } => {
            return Ok(layers
                .iter()
                .map(|l| Target::Sparsity(if *dense_first_layer && l.roles.first { 0.0 } else { s }))
                .collect());
        }
        Distribution::Global => global_counts(model, layers, config, dense)?,
        other => match other.allocate(layers, s)? {
            Allocation::PerLayer(counts) => counts,
            Allocation::Global(_) => unreachable!("only Distribution::Global allocates globally"),
        },
    };
    Ok(layers
        .iter()
        .zip(kept)
        .map(|(l, k)| Target::Sparsity(1.0 - k as f64 / l.numel() as f64))
        .collect())
}

/// Kept weights per layer from one ranking of every weight by `|W|` (magnitude) or
/// `|W_ij| · RMS_t(X_tj)` (Wanda, SparseGPT) over all layers.
fn global_counts<M: Module>(
    model: &M,
    layers: &[SparseLayer],
    config: &OneShotConfig,
    dense: Option<&BTreeMap<String, LayerStats>>,
) -> Result<Vec<usize>> {
    let mut scores = Vec::with_capacity(layers.len());
    for layer in layers {
        let w = read_weight(model, &layer.path)?;
        let mut s: Vec<f32> = w.iter().map(|v| v.abs()).collect();
        if let Some(stats) = dense.and_then(|d| d.get(&layer.path))
            && config.method != OneShotMethod::Magnitude
        {
            let per = layer.neurons() / stats.groups.max(1);
            let tokens = stats.tokens.max(1) as f64;
            for o in 0..layer.neurons() {
                let sq = &stats.feature_sq[(o / per.max(1)).min(stats.groups - 1)];
                for (j, v) in sq.iter().enumerate() {
                    s[layer.flat(o, j)] *= (v / tokens).sqrt() as f32;
                }
            }
        }
        scores.push(s);
    }
    let plan = Plan::new(
        layers.to_vec(),
        SparsityConfig::new()
            .with_sparsity(config.sparsity)
            .with_distribution(Distribution::Global)
            .with_pattern(Pattern::Unstructured),
    )?;
    Ok(plan
        .select(&scores, config.sparsity)?
        .iter()
        .map(Mask::count_ones)
        .collect())
}

/// Prunes one layer from its weights and (optional) input statistics.
fn prune_layer(
    layer: &SparseLayer,
    flat: Vec<f32>,
    stats: Option<&LayerStats>,
    target: Target,
    config: &OneShotConfig,
) -> Result<LayerReport> {
    let in_layer = |e: SparseError| SparseError::method(config.method.name(), format!("layer `{}`: {e}", layer.path));
    if flat.iter().any(|v| !v.is_finite()) {
        return Err(in_layer(SparseError::InvalidConfig(
            "the weight contains NaN or infinity; load a valid model".into(),
        )));
    }
    let (neurons, fan_in) = (layer.neurons(), layer.fan_in());
    let groups = stats.map_or(1, |s| s.groups);
    if let Some(s) = stats
        && (s.fan_in != fan_in || groups == 0 || !neurons.is_multiple_of(groups))
    {
        return Err(in_layer(SparseError::InvalidConfig(format!(
            "captured inputs have {} groups of {} features, but the weight {:?} has fan-in {fan_in} and {neurons} neurons; the model's `forward_capture` passes the wrong input or path",
            s.groups, s.fan_in, layer.shape
        ))));
    }
    let per = neurons / groups;
    let w0 = to_rows(layer, &flat, 0..neurons);
    let mut w1 = w0.clone();
    let mut keep = vec![true; neurons * fan_in];
    let rows_of = |g: usize| g * per..(g + 1) * per;
    match config.method {
        OneShotMethod::Magnitude => keep = magnitude_keep(&w0, target),
        OneShotMethod::Wanda => {
            let stats = stats.ok_or_else(|| in_layer(no_stats()))?;
            for g in 0..groups {
                let k = wanda_keep(&w0.block(rows_of(g), 0..fan_in), &stats.feature_sq[g], target);
                keep[g * per * fan_in..(g + 1) * per * fan_in].copy_from_slice(&k);
            }
        }
        OneShotMethod::SparseGpt => {
            let grams = stats
                .and_then(|s| s.gram.as_ref())
                .ok_or_else(|| in_layer(no_stats()))?;
            for (g, gram) in grams.iter().enumerate() {
                let mut wg = w0.block(rows_of(g), 0..fan_in);
                let k = sparsegpt_prune(&mut wg, gram, target, config.sparsegpt()).map_err(in_layer)?;
                keep[g * per * fan_in..(g + 1) * per * fan_in].copy_from_slice(&k);
                for (r, o) in rows_of(g).enumerate() {
                    w1.row_mut(o).copy_from_slice(wg.row(r));
                }
            }
        }
    }
    for (v, k) in w1.data_mut().iter_mut().zip(&keep) {
        if !k {
            *v = 0.0;
        }
    }
    let (error, output) = match stats.and_then(|s| s.gram.as_ref()) {
        Some(grams) => {
            let (mut e, mut o) = (0.0, 0.0);
            for (g, gram) in grams.iter().enumerate() {
                let (a, b) = (w0.block(rows_of(g), 0..fan_in), w1.block(rows_of(g), 0..fan_in));
                e += reconstruction_error(&a, &b, gram);
                o += output_energy(&a, gram);
            }
            (Some(e), Some(o))
        }
        None => (None, None),
    };
    let mut weights = flat;
    from_rows(layer, &w1, 0..neurons, &mut weights);
    let mut mask = Mask::ones(layer.numel());
    for o in 0..neurons {
        for j in 0..fan_in {
            if !keep[o * fan_in + j] {
                mask.set(layer.flat(o, j), false);
            }
        }
    }
    Ok(LayerReport {
        path: layer.path.clone(),
        shape: layer.shape.clone(),
        mask,
        weights,
        target_sparsity: match target {
            Target::Sparsity(s) => s,
            Target::NM { n, m } => 1.0 - n as f64 / m as f64,
        },
        tokens: stats.map_or(0, |s| s.tokens),
        error,
        output_energy: output,
    })
}

fn no_stats() -> SparseError {
    SparseError::InvalidConfig("no calibration statistics were captured for this layer".into())
}
