//! Reading and writing a model's weights by path, and the `neurons × fan-in` row view
//! of a layer ([`SparseLayer::flat`] order) that the one-shot algorithms work on.

use std::collections::BTreeMap;
use std::ops::Range;

use burn::module::{Module, Param};
use burn::tensor::{Tensor, TensorData};
use sparse_core::walk::{self, ParamPath, PathMapper, PathVisitor};
use sparse_core::{Result, SparseError, SparseLayer, host};

use super::matrix::Matrix;

struct Reader<'a> {
    path: &'a str,
    found: Option<Result<Vec<f32>>>,
}

impl PathVisitor for Reader<'_> {
    fn visit<const D: usize>(&mut self, path: &ParamPath, param: &Param<Tensor<D>>) {
        if self.found.is_none() && path.dotted() == self.path {
            self.found = Some(host::to_vec(param.val().detach()));
        }
    }
}

/// The values of the float parameter at `path` (row-major).
pub(crate) fn read_weight<M: Module>(model: &M, path: &str) -> Result<Vec<f32>> {
    let mut reader = Reader { path, found: None };
    walk::visit(model, &mut reader);
    reader.found.unwrap_or_else(|| {
        Err(SparseError::InvalidConfig(format!(
            "the model has no parameter `{path}`; prune and apply with the same architecture"
        )))
    })
}

struct Writer<'a> {
    values: &'a BTreeMap<String, Vec<f32>>,
    written: usize,
}

impl PathMapper for Writer<'_> {
    fn map<const D: usize>(&mut self, path: &ParamPath, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(values) = self.values.get(&path.dotted()) else {
            return param;
        };
        if param.lazy_shape().num_elements() != values.len() {
            return param; // counted as not written; the caller reports it
        }
        self.written += 1;
        let id = param.id;
        param.map(|t| {
            let (dims, device) = (t.dims(), t.device().inner());
            let value = Tensor::<D>::from_data(TensorData::new(values.clone(), dims), &device);
            if !t.is_autodiff() {
                return value;
            }
            // Burn asks the distributed flag of autodiff tensors only.
            let (require_grad, distributed) = (t.is_require_grad(), t.is_distributed());
            let mut out = Tensor::from_inner(value);
            if let Some(s) = t.gradient_checkpointing_strategy() {
                out = out.with_gradient_checkpointing_strategy(s);
            }
            if require_grad {
                out = out.require_grad();
            }
            if distributed {
                out = out.set_distributed(id);
            }
            out
        })
    }
}

/// Replaces the float parameters named in `values` (same parameter ids, same
/// autodiff and training settings). Errors if one is missing or has another size.
pub(crate) fn write_weights<M: Module>(model: M, values: &BTreeMap<String, Vec<f32>>) -> Result<M> {
    let mut writer = Writer { values, written: 0 };
    let model = walk::map(model, &mut writer);
    if writer.written != values.len() {
        return Err(SparseError::InvalidConfig(format!(
            "only {} of {} pruned weights fit a parameter of this model (same path and size); apply the result to the model it was computed on",
            writer.written,
            values.len()
        )));
    }
    Ok(model)
}

/// Neurons `rows` of `layer` as a `rows.len() × fan-in` matrix.
pub(crate) fn to_rows(layer: &SparseLayer, flat: &[f32], rows: Range<usize>) -> Matrix {
    let r0 = rows.start;
    Matrix::from_fn(rows.len(), layer.fan_in(), |r, j| {
        f64::from(flat[layer.flat(r0 + r, j)])
    })
}

/// Writes a `rows.len() × fan-in` matrix back into the flat weight.
pub(crate) fn from_rows(layer: &SparseLayer, m: &Matrix, rows: Range<usize>, flat: &mut [f32]) {
    for (r, o) in rows.enumerate() {
        for (j, v) in m.row(r).iter().enumerate() {
            flat[layer.flat(o, j)] = *v as f32;
        }
    }
}
