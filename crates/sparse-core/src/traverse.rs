//! Module visitors and mappers the hook uses to read and write sparse weights
//! by parameter id. All reads are detached from the autodiff tape.

use std::collections::HashMap;
use std::sync::Arc;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};

use crate::error::Result;
use crate::grad_term::GradTerm;
use crate::host;
use crate::layer::SparseLayer;
use crate::param_value::{ParamContext, detached, on_device};
use crate::walk::{self, ParamPath, PathVisitor};

/// Every float parameter: path, id, element count, device (inner).
#[derive(Clone, Debug)]
pub(crate) struct ParamInfo {
    pub path: String,
    pub id: ParamId,
    pub shape: Vec<usize>,
    pub device: Device,
}

#[derive(Default)]
struct ParamLister {
    out: Vec<ParamInfo>,
}

impl PathVisitor for ParamLister {
    fn visit<const D: usize>(&mut self, path: &ParamPath, param: &Param<Tensor<D>>) {
        self.out.push(ParamInfo {
            path: path.dotted(),
            id: param.id,
            shape: param.lazy_shape().to_vec(),
            device: param.lazy_device().inner(),
        });
    }
}

/// All float parameters of `model` in visit order.
pub(crate) fn params<M: Module>(model: &M) -> Vec<ParamInfo> {
    let mut lister = ParamLister::default();
    walk::visit(model, &mut lister);
    lister.out
}

struct CountIds<'a> {
    ids: &'a HashMap<ParamId, usize>,
    found: usize,
}

impl ModuleVisitor for CountIds<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.ids.contains_key(&param.id) {
            self.found += 1;
        }
    }
}

/// How many of `ids` are float parameters of `model`.
pub(crate) fn count_ids<M: Module>(model: &M, ids: &HashMap<ParamId, usize>) -> usize {
    let mut v = CountIds { ids, found: 0 };
    model.visit(&mut v);
    v.found
}

struct ReadWeights<'a> {
    ids: &'a HashMap<ParamId, usize>,
    out: Vec<Option<Result<Vec<f32>>>>,
}

impl ModuleVisitor for ReadWeights<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(&i) = self.ids.get(&param.id) {
            self.out[i] = Some(host::to_vec(detached(param.val())));
        }
    }
}

/// Host copies of the weights in `ids` (layer index order).
pub(crate) fn read_weights<M: Module>(model: &M, ids: &HashMap<ParamId, usize>, n: usize) -> Result<Vec<Vec<f32>>> {
    let mut v = ReadWeights {
        ids,
        out: (0..n).map(|_| None).collect(),
    };
    model.visit(&mut v);
    collect(v.out)
}

/// Per-layer results in layer order; a layer the model did not visit is an error.
fn collect(out: Vec<Option<Result<Vec<f32>>>>) -> Result<Vec<Vec<f32>>> {
    out.into_iter()
        .enumerate()
        .map(|(l, o)| {
            o.unwrap_or_else(|| {
                Err(crate::error::SparseError::InvalidConfig(format!(
                    "sparse layer {l} is not a parameter of this model instance; the model changed since the sparsifier was bound"
                )))
            })
        })
        .collect()
}

struct ReadGrads<'a> {
    ids: &'a HashMap<ParamId, usize>,
    grads: &'a GradientsParams,
    out: Vec<Option<Result<Vec<f32>>>>,
}

impl ModuleVisitor for ReadGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(&i) = self.ids.get(&param.id) {
            let numel = param.lazy_shape().num_elements();
            self.out[i] = Some(match self.grads.get::<D>(param.id) {
                Some(g) => host::to_vec(g),
                None => Ok(vec![0.0; numel]), // no gradient: the weight did not affect the loss
            });
        }
    }
}

/// Host copies of the gradients of the weights in `ids` (zeros where absent).
pub(crate) fn read_grads<M: Module>(
    model: &M,
    grads: &GradientsParams,
    ids: &HashMap<ParamId, usize>,
    n: usize,
) -> Result<Vec<Vec<f32>>> {
    let mut v = ReadGrads {
        ids,
        grads,
        out: (0..n).map(|_| None).collect(),
    };
    model.visit(&mut v);
    collect(v.out)
}

struct WriteWeights<'a> {
    ids: &'a HashMap<ParamId, usize>,
    values: &'a [Vec<f32>],
}

impl ModuleMapper for WriteWeights<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(&i) = self.ids.get(&param.id) else {
            return param;
        };
        let id = param.id;
        let values = self.values[i].clone();
        param.map(|t| {
            let context = ParamContext::capture(&t);
            let (dims, device) = (t.dims(), t.device().inner());
            context.restore(host::from_vec(values, dims, &device), id)
        })
    }
}

/// Replaces the weights in `ids` by host values (layer index order).
pub(crate) fn write_weights<M: Module>(model: M, ids: &HashMap<ParamId, usize>, values: &[Vec<f32>]) -> M {
    model.map(&mut WriteWeights { ids, values })
}

struct ApplyMasks<'a> {
    keep: &'a HashMap<ParamId, Tensor<1>>,
}

impl ModuleMapper for ApplyMasks<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(mask) = self.keep.get(&param.id).cloned() else {
            return param;
        };
        let id = param.id;
        param.map(|t| {
            let context = ParamContext::capture(&t);
            let w = detached(t);
            let mask = on_device(mask, &w.device()).reshape(w.dims());
            context.restore(w * mask, id)
        })
    }
}

/// Zeroes every pruned weight.
pub(crate) fn apply_masks<M: Module>(model: M, keep: &HashMap<ParamId, Tensor<1>>) -> M {
    model.map(&mut ApplyMasks { keep })
}

struct MaskGrads<'a> {
    keep: &'a HashMap<ParamId, Tensor<1>>,
    grads: &'a mut GradientsParams,
}

impl ModuleVisitor for MaskGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(mask) = self.keep.get(&param.id) else {
            return;
        };
        if let Some(g) = self.grads.remove::<D>(param.id) {
            let mask = on_device(mask.clone(), &g.device()).reshape(g.dims());
            self.grads.register::<D>(param.id, g * mask);
        }
    }
}

/// Zeroes the gradients of every pruned weight.
pub(crate) fn mask_grads<M: Module>(
    model: &M,
    mut grads: GradientsParams,
    keep: &HashMap<ParamId, Tensor<1>>,
) -> GradientsParams {
    model.visit(&mut MaskGrads {
        keep,
        grads: &mut grads,
    });
    grads
}

struct MergeMulti {
    multi: burn::optim::MultiGradientsParams,
    out: GradientsParams,
}

impl ModuleVisitor for MergeMulti {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some((g, _)) = self.multi.remove::<D>(param.id) {
            let device = param.lazy_device().inner();
            self.out.register::<D>(param.id, g.to_device(&device));
        }
    }
}

/// Sums multi-device gradients into one set on each weight's device.
pub(crate) fn merge_multi<M: Module>(model: &M, multi: burn::optim::MultiGradientsParams) -> GradientsParams {
    let mut v = MergeMulti {
        multi,
        out: GradientsParams::new(),
    };
    model.visit(&mut v);
    v.out
}

struct ReadExtra {
    prefixes: Vec<String>,
    out: Vec<Vec<Result<Vec<f32>>>>,
}

impl PathVisitor for ReadExtra {
    fn visit<const D: usize>(&mut self, path: &ParamPath, param: &Param<Tensor<D>>) {
        let path = path.dotted();
        if let Some(l) = self.prefixes.iter().position(|p| path.starts_with(p.as_str())) {
            self.out[l].push(host::to_vec(detached(param.val())));
        }
    }
}

/// Host values of the method's extra parameters of every sparse layer, in layer
/// order, each layer's in declaration order.
pub(crate) fn read_extra<M: Module>(model: &M, layers: &[SparseLayer]) -> Result<Vec<Vec<Vec<f32>>>> {
    let mut v = ReadExtra {
        prefixes: layers
            .iter()
            .map(|l| format!("{}.{}.extra.", l.path, crate::reparam::NAME))
            .collect(),
        out: layers.iter().map(|_| Vec::new()).collect(),
    };
    walk::visit(model, &mut v);
    v.out.into_iter().map(|values| values.into_iter().collect()).collect()
}

struct AddGradTerms<'a> {
    ids: &'a HashMap<ParamId, usize>,
    layers: &'a [SparseLayer],
    terms: &'a [Arc<dyn GradTerm>],
    step: u64,
    grads: &'a mut GradientsParams,
}

impl ModuleVisitor for AddGradTerms<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(&l) = self.ids.get(&param.id) else {
            return;
        };
        let Some(mut g) = self.grads.remove::<D>(param.id) else {
            return;
        };
        let w = detached(param.val());
        let dims = w.dims();
        let layer = &self.layers[l];
        for term in self.terms {
            if let Some(t) = term.term(self.step, layer, w.clone().reshape([layer.numel()])) {
                g = g + t.reshape(dims);
            }
        }
        self.grads.register::<D>(param.id, g);
    }
}

/// Adds the gradient terms (in order) to the sparse weights' gradients.
pub(crate) fn add_grad_terms<M: Module>(
    model: &M,
    mut grads: GradientsParams,
    ids: &HashMap<ParamId, usize>,
    layers: &[SparseLayer],
    terms: &[Arc<dyn GradTerm>],
    step: u64,
) -> GradientsParams {
    if terms.is_empty() {
        return grads;
    }
    model.visit(&mut AddGradTerms {
        ids,
        layers,
        terms,
        step,
        grads: &mut grads,
    });
    grads
}
