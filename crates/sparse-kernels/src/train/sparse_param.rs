//! [`SparseParam`]: one sparse layer trained in sparse execution. Its weight
//! is the vector of active values in the CSR order of its plan; its optimizer
//! state is vectors aligned with those values; nothing dense is kept.

use burn::tensor::{Device, Int, Tensor, TensorData};
use sparse_core::optim::update_values;
use sparse_core::{Mask, OptimizerConfig, SparseLayer};

use super::pattern::{csr_plan, entry_map};
use crate::error::{KernelError, Result};
use crate::modules::host;
use crate::plan::{OpKind, SparsePlan};

/// A sparse layer's structure, values and optimizer state.
///
/// * structure: the host [`Mask`] (source of truth) and the CSR [`SparsePlan`]
///   built from it ([`csr_plan`]);
/// * `values`: the active weights, one device vector in the plan's order,
///   held detached from autodiff ([`SparseParam::tracked`] gives the copy a
///   forward pass differentiates);
/// * optimizer state: `slots` (SGD's velocity, Adam's two moments), each a
///   vector aligned with `values`, created at the first step, and `time`,
///   the steps taken, one per layer as [`sparse_core::MaskedOptimizer`]
///   keeps it per parameter.
#[derive(Clone, Debug)]
pub struct SparseParam {
    layer: SparseLayer,
    op: OpKind,
    mask: Mask,
    plan: SparsePlan,
    values: Tensor<1>,
    slots: Vec<Tensor<1>>,
    time: u64,
    autodiff: bool,
}

impl SparseParam {
    /// The active weights of `weights` (the layer's dense tensor in its Burn
    /// layout, e.g. `[d_in, d_out]` for a `Linear`) under `mask`, on `device`
    /// (values are lifted to autodiff by [`SparseParam::tracked`] when
    /// `device` is an autodiff device). The dense weights are read once here,
    /// to start from a dense model; no dense copy is kept.
    pub fn from_dense(layer: SparseLayer, op: OpKind, mask: Mask, weights: &[f32], device: &Device) -> Result<Self> {
        if weights.len() != layer.numel() {
            return Err(KernelError::shape(
                &layer.path,
                format!(
                    "{} weights given, the layer {:?} has {}",
                    weights.len(),
                    layer.shape,
                    layer.numel()
                ),
            ));
        }
        let plan = csr_plan(&layer, op, &mask)?;
        let gathered: Vec<f32> = flat_positions(&layer, &plan).into_iter().map(|f| weights[f]).collect();
        let n = gathered.len();
        let probe: Tensor<1> = Tensor::from_data(TensorData::new(gathered, [n]), device);
        let autodiff = probe.is_autodiff();
        let values = if autodiff { probe.inner() } else { probe };
        Ok(Self {
            layer,
            op,
            mask,
            plan,
            values,
            slots: Vec::new(),
            time: 0,
            autodiff,
        })
    }

    /// The layer.
    pub fn layer(&self) -> &SparseLayer {
        &self.layer
    }

    /// The mask the structure follows.
    pub fn mask(&self) -> &Mask {
        &self.mask
    }

    /// The CSR plan the values follow (for [`crate::ops::sparse_linear`]).
    pub fn plan(&self) -> &SparsePlan {
        &self.plan
    }

    /// Number of stored values (the mask's active count).
    pub fn nnz(&self) -> usize {
        self.plan.n_values
    }

    /// The values, detached (not tracked by autodiff).
    pub fn values(&self) -> Tensor<1> {
        self.values.clone()
    }

    /// The values as a leaf that requires a gradient, on the autodiff device
    /// when the parameter was made on one: the input of a training forward pass.
    pub fn tracked(&self) -> Tensor<1> {
        if self.autodiff {
            Tensor::from_inner(self.values.clone()).require_grad()
        } else {
            self.values.clone()
        }
    }

    /// The optimizer state vectors, aligned with the values (empty before the first step).
    pub fn slots(&self) -> &[Tensor<1>] {
        &self.slots
    }

    /// Optimizer steps taken.
    pub fn time(&self) -> u64 {
        self.time
    }

    /// One optimizer step with `config`'s rule on the values, given their
    /// gradient `grad` (the SDDMM output of the backward pass, one entry per
    /// value): the same operations as [`sparse_core::MaskedOptimizer`] does on
    /// the active positions of the dense weight
    /// ([`sparse_core::optim::update_values`]). The method-specific decay
    /// overrides of `MaskedOptimizer` (a reparameterization's extra
    /// parameters) do not apply: such methods do not run sparse.
    pub fn step(&mut self, config: &OptimizerConfig, lr: f64, grad: Tensor<1>) -> Result<()> {
        let grad = if grad.is_autodiff() { grad.inner() } else { grad };
        if grad.dims()[0] != self.nnz() {
            return Err(KernelError::shape(
                &self.layer.path,
                format!(
                    "the gradient has {} entries, the layer stores {} values; pass the gradient of `tracked()`",
                    grad.dims()[0],
                    self.nnz()
                ),
            ));
        }
        let device = self.values.device();
        let grad = if grad.device() == device {
            grad
        } else {
            grad.to_device(&device)
        };
        // moved out, not cloned, so the backend may update the buffer in place
        let values = std::mem::replace(&mut self.values, Tensor::zeros([0], &device));
        self.values = update_values(config, lr, None, values, grad, &mut self.slots, self.time);
        self.time += 1;
        Ok(())
    }

    /// Re-aligns the values and the optimizer state to `mask` (a topology
    /// update): a position active before and now keeps its value and moments,
    /// a newly active (grown) one starts at value 0 with moments 0, a
    /// dropped one is gone. `time` is kept. This is the state the
    /// masked-dense path holds after `MaskedOptimizer::reset_inactive`,
    /// restricted to the active positions.
    pub fn rebuild(&mut self, mask: Mask) -> Result<()> {
        let plan = csr_plan(&self.layer, self.op, &mask)?;
        let map = entry_map(&self.plan, &plan);
        let zero_slot = self.nnz() as i32;
        let index: Vec<i32> = map.iter().map(|m| m.map_or(zero_slot, |i| i as i32)).collect();
        let device = self.values.device();
        let index: Tensor<1, Int> = Tensor::from_data(TensorData::new(index, [map.len()]), &device);
        self.values = gather_or_zero(self.values.clone(), &index);
        self.slots = std::mem::take(&mut self.slots)
            .into_iter()
            .map(|s| gather_or_zero(s, &index))
            .collect();
        self.mask = mask;
        self.plan = plan;
        Ok(())
    }

    /// `aligned` (the values or a state vector) scattered into the layer's
    /// dense Burn layout, zeros elsewhere: for tests, checkpoints and export.
    pub fn to_dense(&self, aligned: Tensor<1>) -> Result<Vec<f32>> {
        let aligned = if aligned.is_autodiff() {
            aligned.inner()
        } else {
            aligned
        };
        let host_values = host(aligned)?;
        if host_values.len() != self.nnz() {
            return Err(KernelError::shape(
                &self.layer.path,
                format!("{} values given, the layer stores {}", host_values.len(), self.nnz()),
            ));
        }
        let mut dense = vec![0.0f32; self.layer.numel()];
        for (v, f) in host_values.iter().zip(self.flat_positions()) {
            dense[f] = *v;
        }
        Ok(dense)
    }

    /// The flat position (in the layer's Burn layout) of every stored value.
    pub fn flat_positions(&self) -> Vec<usize> {
        flat_positions(&self.layer, &self.plan)
    }
}

/// `t[index[i]]` for every `i`, 0 where `index[i] == t.len()` (a grown entry).
fn gather_or_zero(t: Tensor<1>, index: &Tensor<1, Int>) -> Tensor<1> {
    let zero = Tensor::zeros([1], &t.device());
    Tensor::cat(vec![t, zero], 0).select(0, index.clone())
}

/// The flat position in `layer`'s Burn layout of every value of `plan` (a
/// CSR plan with identity value order, as [`csr_plan`] builds it). Walks the
/// rows in `usize`, so layers above 2³¹ weights are fine (the plan's `i32`
/// `dense_positions` are not).
pub(crate) fn flat_positions(layer: &SparseLayer, plan: &SparsePlan) -> Vec<usize> {
    let csr = plan.csr();
    let mut out = Vec::with_capacity(csr.nnz());
    for r in 0..plan.rows {
        for e in csr.row_ptr[r] as usize..csr.row_ptr[r + 1] as usize {
            out.push(layer.flat(r, csr.col.get(e)));
        }
    }
    out
}
