//! A training step in sparse execution: a model whose sparse layers are
//! [`CompactLinear`]s takes the optimizer step on its active values, and the
//! topology update runs one of two ways. Where the method offers a
//! [`CompactRule`] (SET, RigL with its defaults) that applies to the model,
//! each layer's exchange is computed on the layer itself (drop over the
//! active values, growth by random scores or by the tiled top-`k` of
//! `|Xᵀ·dY|` from output probes) and the [`Sparsifier`] checks and keeps the
//! masks; otherwise the [`Sparsifier`] runs the method on host copies of the
//! weights (and, on the steps the method reads them, the dense gradients
//! from the layers' probes). Changed layers then re-align their values and
//! optimizer state. The same decisions and the same f32 updates on active
//! positions as [`Sparsifier::step`] on the masked-dense model.

use std::collections::HashMap;

use burn::module::Module;
use burn::optim::GradientsParams;
use sparse_core::{CompactRule, Growth, LayerKind, Sparsifier};

use super::compact_linear::CompactLinear;
use super::compact_update::{GrowthTrace, UpdateAt, exchange};
use super::growth::GROWTH_TILE;
use crate::error::{KernelError, Result};

/// A model with layers in sparse execution.
pub trait CompactModel: Module + Sized {
    /// The layers in sparse execution, in a fixed order.
    fn compact_layers(&self) -> Vec<&CompactLinear>;

    /// The model with the layer at index `i` (of [`CompactModel::compact_layers`])
    /// replaced by `f(i, layer)`.
    fn try_map_compact(self, f: &mut dyn FnMut(usize, CompactLinear) -> Result<CompactLinear>) -> Result<Self>;
}

/// `layers` with the layer at index `i` replaced by `f(i, layer)`: the body of
/// [`CompactModel::try_map_compact`] for a model that keeps its layers in a `Vec`.
pub fn try_map_layers(
    layers: Vec<CompactLinear>,
    f: &mut dyn FnMut(usize, CompactLinear) -> Result<CompactLinear>,
) -> Result<Vec<CompactLinear>> {
    layers.into_iter().enumerate().map(|(i, l)| f(i, l)).collect()
}

/// Prepares `model` for the forward pass of the step `sparse` is at, on a
/// batch of `batch` rows (`None`: unknown, or gradients summed over several
/// batches). On a step where the method reads dense gradients, every sparse
/// layer gets either an output probe, when the method's update runs by its
/// [`CompactRule`] on this model (RigL's growth from `X` and `dY`, no tensor
/// of the weight's shape; needs `batch`), or else its dense probe (see
/// [`CompactLinear`]). An output probe expects one forward pass of `batch`
/// rows before the backward pass: a layer records only the input of its last
/// forward pass, so a step with several passes must pass `None`.
pub fn compact_prepare<M: CompactModel>(model: M, sparse: &Sparsifier, batch: Option<usize>) -> Result<M> {
    let needs = sparse.needs();
    if !needs.grads {
        return Ok(model);
    }
    let index = plan_index(&model, sparse)?;
    // output probes only where `rule_step` takes them off again: an update step
    let rows = batch.filter(|_| needs.update && rule_of(sparse, &index).is_some());
    model.try_map_compact(&mut |i, layer| match (index[i], rows) {
        (Some(_), Some(rows)) => Ok(layer.with_output_probe(rows)),
        (Some(_), None) => layer.with_probe(),
        (None, _) => Ok(layer),
    })
}

/// The method's [`CompactRule`] when it applies to this model: the
/// `Sparsifier` offers one, every plan layer is a layer of the model, and,
/// for a gradient growth, every plan layer is linear (a convolution's
/// gradient growth takes the dense probe; a random growth grows any layer).
fn rule_of(sparse: &Sparsifier, index: &[Option<usize>]) -> Option<CompactRule> {
    let rule = sparse.compact_rule()?;
    let linear = sparse.layers().iter().all(|l| l.kind == LayerKind::Linear);
    let present = index.iter().flatten().count() == sparse.layers().len();
    (present && (linear || rule.growth == Growth::Random)).then_some(rule)
}

/// One training step of `model` in sparse execution with the gradients
/// `grads` of its loss (call after `backward`, instead of
/// [`Sparsifier::step`]): the optimizer step on the values (unless the
/// method skips it on this step), the topology update (by the method's
/// [`CompactRule`] on the layers where it applies and the layers carry no
/// dense probe, else through the `Sparsifier`), and the re-alignment of
/// changed layers.
pub fn compact_step<M: CompactModel>(
    model: M,
    sparse: &mut Sparsifier,
    mut grads: GradientsParams,
    lr: f64,
) -> Result<M> {
    let needs = sparse.needs();
    let index = plan_index(&model, sparse)?;
    let probed = model.compact_layers().iter().any(|l| l.probe.is_some());
    if let Some(rule) = rule_of(sparse, &index).filter(|_| needs.update && !probed) {
        return rule_step(model, sparse, rule, &index, grads, lr);
    }
    let n = sparse.layers().len();
    let mut dense_grads: Vec<Option<Vec<f32>>> = vec![None; n];
    let mut model = model.try_map_compact(&mut |i, layer| {
        let (layer, grad) = layer.take_probe_grad(&mut grads)?;
        if let (Some(l), Some(g)) = (index[i], grad) {
            dense_grads[l] = Some(g);
        }
        Ok(layer)
    })?;
    let dense_grads = needs
        .grads
        .then(|| all_layers(sparse, dense_grads, "dense gradient"))
        .transpose()?;
    if !(needs.update && needs.skip_optimizer) {
        model = sparse.optimizer_mut().step(lr, model, grads, &HashMap::new());
    }
    let mut weights = if needs.update {
        let mut w: Vec<Option<Vec<f32>>> = vec![None; n];
        for (i, layer) in model.compact_layers().into_iter().enumerate() {
            if let Some(l) = index[i] {
                w[l] = Some(layer.dense_weight()?);
            }
        }
        Some(all_layers(sparse, w, "weights")?)
    } else {
        None
    };
    let changed = sparse.compact_step(weights.as_deref_mut(), dense_grads.as_deref())?;
    if changed.is_empty() {
        return Ok(model);
    }
    let Some(weights) = weights else {
        return Err(KernelError::InvalidConfig(format!(
            "the method `{}` changed masks at a step where it asked for no weights; a method must ask for them (`Needs::update`) on the steps it changes masks",
            sparse.method().name()
        )));
    };
    let masks = sparse.masks().to_vec();
    let optimizer = sparse.optimizer_mut();
    model.try_map_compact(&mut |i, layer| match index[i] {
        Some(l) if changed.contains(&l) => {
            let (layer, map) = layer.with_mask(masks[l].clone(), &weights[l])?;
            optimizer.realign(layer.values.id, &layer.values_path(), &map);
            Ok(layer)
        }
        _ => Ok(layer),
    })
}

/// [`compact_step`] at an update step whose topology update runs by the
/// method's `rule` on the model's own layers: the traces from the output
/// probes, the optimizer step (unless skipped), each layer's exchange, and
/// the re-alignment of changed layers.
fn rule_step<M: CompactModel>(
    model: M,
    sparse: &mut Sparsifier,
    rule: CompactRule,
    index: &[Option<usize>],
    mut grads: GradientsParams,
    lr: f64,
) -> Result<M> {
    let (needs, step) = (sparse.needs(), sparse.step_count());
    let mut traces: Vec<Option<GrowthTrace>> = vec![None; sparse.layers().len()];
    let mut model = model.try_map_compact(&mut |i, mut layer| {
        if let Some(l) = index[i] {
            traces[l] = layer.take_trace(&mut grads)?;
        }
        Ok(layer)
    })?;
    if !needs.skip_optimizer {
        model = sparse.optimizer_mut().step(lr, model, grads, &HashMap::new());
    }
    let at = UpdateAt {
        seed: sparse.plan().config().seed,
        step,
        fraction: sparse.method().drop_fraction(step).unwrap_or(0.0),
        tile: GROWTH_TILE,
    };
    let mut masks = sparse.masks().to_vec();
    for (i, layer) in model.compact_layers().into_iter().enumerate() {
        if let Some(l) = index[i] {
            let values = layer.values_host()?;
            let place = (layer.layer(), layer.mask());
            masks[l] = exchange(&rule, &at, place, (&values, &layer.positions()), traces[l].as_ref())?;
        }
    }
    let changed = sparse.compact_rule_step(Some(masks))?;
    let masks = sparse.masks().to_vec();
    let optimizer = sparse.optimizer_mut();
    model.try_map_compact(&mut |i, layer| match index[i] {
        Some(l) if changed.contains(&l) => {
            let (layer, map) = layer.with_kept_values(masks[l].clone())?;
            optimizer.realign(layer.values.id, &layer.values_path(), &map);
            Ok(layer)
        }
        _ => Ok(layer),
    })
}

/// The plan layer of every compact layer (by path; `None` for a compact layer
/// the plan does not manage, which keeps its full mask).
fn plan_index<M: CompactModel>(model: &M, sparse: &Sparsifier) -> Result<Vec<Option<usize>>> {
    let by_path: HashMap<&str, usize> = sparse
        .layers()
        .iter()
        .enumerate()
        .map(|(i, l)| (l.path.as_str(), i))
        .collect();
    Ok(model
        .compact_layers()
        .iter()
        .map(|l| by_path.get(l.layer().path.as_str()).copied())
        .collect())
}

/// `per_layer` with every plan layer present, or an error naming the first missing one.
fn all_layers(sparse: &Sparsifier, per_layer: Vec<Option<Vec<f32>>>, what: &str) -> Result<Vec<Vec<f32>>> {
    per_layer
        .into_iter()
        .zip(sparse.layers())
        .map(|(v, layer)| {
            v.ok_or_else(|| {
                KernelError::shape(
                    &layer.path,
                    format!("the method needs its {what}, but the model in sparse execution has no such layer; every sparse layer must be a `CompactLinear`"),
                )
            })
        })
        .collect()
}
