//! Reading and writing a model's weights by path, and the `neurons × fan-in` row view
//! of a layer ([`SparseLayer::flat`] order) that the one-shot algorithms work on.

use std::collections::BTreeMap;
use std::ops::Range;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};
use sparse_core::{Result, SparseError, SparseLayer, host};

use super::matrix::Matrix;

struct Reader<'a> {
    path: &'a str,
    stack: Vec<String>,
    found: Option<Result<Vec<f32>>>,
}

impl ModuleVisitor for Reader<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.stack.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.stack.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.found.is_none() && self.stack.join(".") == self.path {
            self.found = Some(host::to_vec(param.val().detach()));
        }
    }
}

/// The values of the float parameter at `path` (row-major).
pub(crate) fn read_weight<M: Module>(model: &M, path: &str) -> Result<Vec<f32>> {
    let mut reader = Reader {
        path,
        stack: Vec::new(),
        found: None,
    };
    model.visit(&mut reader);
    reader.found.unwrap_or_else(|| {
        Err(SparseError::InvalidConfig(format!(
            "the model has no parameter `{path}`; prune and apply with the same architecture"
        )))
    })
}

struct Writer<'a> {
    values: &'a BTreeMap<String, Vec<f32>>,
    stack: Vec<String>,
    written: usize,
}

impl ModuleMapper for Writer<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.stack.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.stack.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(values) = self.values.get(&self.stack.join(".")) else {
            return param;
        };
        if param.lazy_shape().num_elements() != values.len() {
            return param; // counted as not written; the caller reports it
        }
        self.written += 1;
        let id = param.id;
        param.map(|t| {
            let (autodiff, require_grad, distributed) = (t.is_autodiff(), t.is_require_grad(), t.is_distributed());
            let checkpointing = t.gradient_checkpointing_strategy();
            let (dims, device) = (t.dims(), t.device().inner());
            let value = Tensor::<D>::from_data(TensorData::new(values.clone(), dims), &device);
            if !autodiff {
                return value;
            }
            let mut t = Tensor::from_inner(value);
            if let Some(s) = checkpointing {
                t = t.with_gradient_checkpointing_strategy(s);
            }
            if require_grad {
                t = t.require_grad();
            }
            if distributed {
                t = t.set_distributed(id);
            }
            t
        })
    }
}

/// Replaces the float parameters named in `values` (same parameter ids, same
/// autodiff and training settings). Errors if one is missing or has another size.
pub(crate) fn write_weights<M: Module>(model: M, values: &BTreeMap<String, Vec<f32>>) -> Result<M> {
    let mut writer = Writer {
        values,
        stack: Vec::new(),
        written: 0,
    };
    let model = model.map(&mut writer);
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
    Matrix::from_fn(rows.len(), layer.fan_in(), |r, j| f64::from(flat[layer.flat(r0 + r, j)]))
}

/// Writes a `rows.len() × fan-in` matrix back into the flat weight.
pub(crate) fn from_rows(layer: &SparseLayer, m: &Matrix, rows: Range<usize>, flat: &mut [f32]) {
    for (r, o) in rows.enumerate() {
        for (j, v) in m.row(r).iter().enumerate() {
            flat[layer.flat(o, j)] = *v as f32;
        }
    }
}
