//! [`CompactLinear`]: a linear layer in sparse execution, as a Burn module.
//! Its trainable weight is the vector of its active values (in the CSR order
//! of its plan), so Burn's autodiff, `GradientsParams`, the optimizer and the
//! module records see only the nonzeros; the forward pass and its handwritten
//! backward are the kernels of [`crate::ops::sparse_linear`].

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use sparse_core::{LayerKind, Mask, SparseLayer};

use super::compact_update::GrowthTrace;
use super::pattern::{csr_plan, entry_map, flat_positions};
use crate::activation::Activation;
use crate::error::{KernelError, Result};
use crate::modules::host;
use crate::plan::{OpKind, SparsePlan};

/// A linear layer `act(x·W + b)` whose weight `W` (`[d_in, d_out]`, Burn's
/// layout) is stored as its active values only. It also holds the weight of
/// a [`super::CompactConv2d`] (a linear map of the convolution's patches,
/// `[c_out, fan-in]`), whose forward pass is the convolution's.
///
/// A layer too dense for the sparse kernels to pay can multiply densely
/// instead ([`CompactLinear::with_dense_product`]): each forward pass
/// scatters the values into the dense weight and multiplies with Burn's
/// matmul; the weight, its gradient and its moments are still the values
/// only between steps.
///
/// On a step where the method reads the dense gradient (RigL's growth), the
/// layer carries a `probe`: its weight as a dense parameter, used by that
/// step's forward pass instead of the values, so that the backward pass gives
/// the dense gradient `Xᵀ·dY`; [`CompactLinear::take_probe_grad`] hands it to
/// the method and registers its active entries as the values' gradient. Every
/// other step has no dense tensor of the layer's shape.
#[derive(Module, Debug)]
pub struct CompactLinear {
    /// The active weights, in the CSR order of the plan (rows: outputs).
    pub values: Param<Tensor<1>>,
    /// The bias `[d_out]` (none for a convolution without one).
    pub bias: Option<Param<Tensor<1>>>,
    /// The dense weight of a step that reads the dense gradient (else none),
    /// as `[shape[0], numel / shape[0]]` of the layer's Burn shape.
    pub probe: Option<Param<Tensor<2>>>,
    /// Zeros `[batch, d_out]` added to the output before the activation on a
    /// step that grows by the gradient without the dense weight: its
    /// gradient is `dY` (see [`CompactLinear::with_output_probe`]).
    pub output_probe: Option<Param<Tensor<2>>>,
    /// Where the forward pass leaves the layer's input on a step with an
    /// output probe (for the [`GrowthTrace`] of a gradient growth).
    #[module(skip)]
    input_record: Option<InputRecord>,
    #[module(skip)]
    layer: SparseLayer,
    #[module(skip)]
    mask: Mask,
    #[module(skip)]
    plan: SparsePlan,
    /// Multiplying densely: each value's flat position in the dense weight,
    /// on the values' device (built when the plan changes, not per step).
    #[module(skip)]
    dense_positions: Option<Tensor<1, Int>>,
}

impl CompactLinear {
    /// The layer `layer` (path and shape `[d_in, d_out]`) under `mask`, with
    /// the active entries of `weight` (dense, Burn's layout, read once here)
    /// and `bias`, on `device` (trainable when it is an autodiff device).
    pub fn new(layer: SparseLayer, mask: Mask, weight: &[f32], bias: Vec<f32>, device: &Device) -> Result<Self> {
        check_len(&layer, "weights", weight.len(), layer.numel())?;
        check_len(&layer, "bias entries", bias.len(), layer.neurons())?;
        let plan = csr_plan(&layer, op_of(&layer), &mask)?;
        let values = gather(weight, &flat_positions(&layer, &plan));
        Self::from_plan(layer, mask, plan, values, bias, device)
    }

    /// The layer `layer` under `mask` with its active values `values` given
    /// in the plan's order (row = output neuron, then fan-in index: the order
    /// of [`CompactLinear::positions`]) and `bias`: no dense weight is read
    /// or built, so a layer of billions of positions starts in `O(nnz)`.
    pub fn from_values(
        layer: SparseLayer,
        mask: Mask,
        values: Vec<f32>,
        bias: Vec<f32>,
        device: &Device,
    ) -> Result<Self> {
        check_len(&layer, "bias entries", bias.len(), layer.neurons())?;
        let plan = csr_plan(&layer, op_of(&layer), &mask)?;
        check_len(&layer, "values", values.len(), plan.n_values)?;
        Self::from_plan(layer, mask, plan, values, bias, device)
    }

    fn from_plan(
        layer: SparseLayer,
        mask: Mask,
        plan: SparsePlan,
        values: Vec<f32>,
        bias: Vec<f32>,
        device: &Device,
    ) -> Result<Self> {
        let n = bias.len();
        Ok(Self {
            values: Param::from_tensor(vector(values, device)),
            bias: Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(bias, [n]),
                device,
            ))),
            probe: None,
            output_probe: None,
            input_record: None,
            layer,
            mask,
            plan,
            dense_positions: None,
        })
    }

    /// The layer without a bias (a convolution without one: its output is
    /// `conv(x, W)` and no bias parameter trains).
    pub fn without_bias(mut self) -> Self {
        self.bias = None;
        self
    }

    /// The bias, or zeros `[d_out]` for a layer without one (not a parameter).
    pub fn bias_or_zeros(&self) -> Tensor<1> {
        match &self.bias {
            Some(b) => b.val(),
            None => Tensor::zeros([self.layer.neurons()], &self.values.val().device()),
        }
    }

    /// The layer multiplying densely (`true`) or with the sparse kernels.
    pub fn with_dense_product(mut self, dense: bool) -> Self {
        self.dense_positions = dense.then(|| self.position_index());
        self
    }

    /// Whether the layer multiplies densely (see the type's docs).
    pub fn dense_product(&self) -> bool {
        self.dense_positions.is_some()
    }

    /// Each value's flat position in the dense weight, on the values' device.
    fn position_index(&self) -> Tensor<1, Int> {
        let positions: Vec<i64> = flat_positions(&self.layer, &self.plan)
            .into_iter()
            .map(|f| f as i64)
            .collect();
        let n = positions.len();
        Tensor::from_data(TensorData::new(positions, [n]), &self.values.val().device())
    }

    /// `act(x·W + b)` for `x: [batch, d_in]` (with an output probe:
    /// `act(x·W + b + probe)`; the probe's rows must be the batch's).
    pub fn forward(&self, x: Tensor<2>, act: Activation) -> Tensor<2> {
        match &self.output_probe {
            // a probe of another batch size would broadcast or fail: the step
            // then has no trace, and the update says what was missing
            Some(probe) if probe.val().dims()[0] == x.dims()[0] => {
                if let Some(record) = &self.input_record {
                    *record.lock() = Some(x.clone().detach());
                }
                apply(self.product(x, Activation::None) + probe.val(), act)
            }
            _ => self.product(x, act),
        }
    }

    /// `act(x·W + b)` through the dense probe, the dense product or the kernels.
    fn product(&self, x: Tensor<2>, act: Activation) -> Tensor<2> {
        let bias = self.bias_or_zeros();
        match self.dense_weight_tensor() {
            Some(w) => apply(x.matmul(w) + bias.unsqueeze(), act),
            None => crate::ops::sparse_linear(x, self.values.val(), bias, &self.plan, act),
        }
    }

    /// The weight as a dense tensor `[shape[0], numel / shape[0]]` of the
    /// layer's Burn shape when this step multiplies densely (the probe, or
    /// the values scattered for the dense product); `None` when it runs the
    /// sparse kernels.
    pub fn dense_weight_tensor(&self) -> Option<Tensor<2>> {
        match (&self.probe, &self.dense_positions) {
            (Some(probe), _) => Some(probe.val()),
            (None, Some(index)) => Some(self.scattered_weight(index.clone())),
            (None, None) => None,
        }
    }

    /// `[shape[0], numel / shape[0]]`: the 2-D view of the layer's Burn shape.
    fn matrix_dims(&self) -> [usize; 2] {
        let lead = self.layer.shape[0];
        [lead, self.layer.numel() / lead]
    }

    /// The values scattered into the dense weight on the device,
    /// differentiable (the values' gradient is the dense gradient's active
    /// entries).
    fn scattered_weight(&self, index: Tensor<1, Int>) -> Tensor<2> {
        let values = self.values.val();
        let device = values.device();
        Tensor::<1>::zeros([self.layer.numel()], &device)
            .select_assign(0, index, values, burn::tensor::IndexingUpdateOp::Add)
            .reshape(self.matrix_dims())
    }

    /// The plan of the stored values (rows: outputs; columns: the fan-in).
    pub fn plan(&self) -> &SparsePlan {
        &self.plan
    }

    /// The layer (its path and shape).
    pub fn layer(&self) -> &SparseLayer {
        &self.layer
    }

    /// The mask its values follow.
    pub fn mask(&self) -> &Mask {
        &self.mask
    }

    /// Stored values (the mask's active count).
    pub fn nnz(&self) -> usize {
        self.plan.n_values
    }

    /// The weight in the dense Burn layout, zeros at inactive positions, on
    /// the host (for topology updates, checkpoints and export).
    pub fn dense_weight(&self) -> Result<Vec<f32>> {
        self.scatter(&host(self.values.val())?)
    }

    /// The active values on the host, in the plan's order.
    pub fn values_host(&self) -> Result<Vec<f32>> {
        host(self.values.val())
    }

    /// The flat position (Burn layout `[d_in, d_out]`) of every value, in
    /// the plan's order.
    pub fn positions(&self) -> Vec<usize> {
        flat_positions(&self.layer, &self.plan)
    }

    /// The layer with an output probe of `batch` rows for the next forward
    /// pass: `forward` adds it (zeros) to `x·W + b` before the activation, so
    /// the backward pass gives the gradient `dY` of the pre-activation output,
    /// and records its input `X`; the two give `|Xᵀ·dY|` for the gradient
    /// growth ([`super::growth::grow_top_k`]) without any tensor of the
    /// weight's shape ([`CompactLinear::take_trace`]).
    pub fn with_output_probe(mut self, batch: usize) -> Self {
        self.input_record = Some(InputRecord::default());
        let device = self.values.val().device();
        let zeros = Tensor::zeros([batch, self.layer.neurons()], &device);
        self.output_probe = Some(Param::from_tensor(zeros));
        self
    }

    /// Removes the output probe and its gradient from `grads` and returns
    /// that gradient (`dY`, `[batch, d_out]` row-major) on the host (`None`
    /// without a probe or a gradient).
    pub fn take_output_grad(&mut self, grads: &mut GradientsParams) -> Result<Option<Vec<f32>>> {
        let Some(probe) = self.output_probe.take() else {
            return Ok(None);
        };
        grads.remove::<2>(probe.id).map(host).transpose()
    }

    /// Removes the output probe and its gradient from `grads` and returns
    /// them with the input the forward pass recorded as the layer's
    /// [`GrowthTrace`] (`None` for a layer without a probe or a gradient).
    pub fn take_trace(&mut self, grads: &mut GradientsParams) -> Result<Option<GrowthTrace>> {
        let record = self.input_record.take();
        let Some(dy) = self.take_output_grad(grads)? else {
            return Ok(None);
        };
        let Some(x) = record.and_then(|r| r.lock().take()) else {
            return Err(KernelError::shape(
                &self.layer.path,
                "the output probe has a gradient but the layer recorded no input: run the forward pass through `CompactLinear::forward` after `with_output_probe`",
            ));
        };
        let batch = dy.len() / self.layer.neurons().max(1);
        Ok(Some(GrowthTrace { x: host(x)?, dy, batch }))
    }

    /// The bias on the host (`None` for a layer without one).
    pub fn bias_values(&self) -> Result<Option<Vec<f32>>> {
        self.bias.as_ref().map(|b| host(b.val())).transpose()
    }

    /// `aligned` (one entry per stored value) scattered into the dense Burn
    /// layout, zeros elsewhere.
    pub fn scatter(&self, aligned: &[f32]) -> Result<Vec<f32>> {
        check_len(&self.layer, "values", aligned.len(), self.nnz())?;
        let mut dense = vec![0.0f32; self.layer.numel()];
        for (v, f) in aligned.iter().zip(flat_positions(&self.layer, &self.plan)) {
            dense[f] = *v;
        }
        Ok(dense)
    }

    /// The active entries of `dense` (the dense Burn layout), in value order.
    pub fn gather(&self, dense: &[f32]) -> Result<Vec<f32>> {
        check_len(&self.layer, "weights", dense.len(), self.layer.numel())?;
        Ok(gather(dense, &flat_positions(&self.layer, &self.plan)))
    }

    /// The layer with its dense weight as a probe (see the type's docs).
    pub fn with_probe(mut self) -> Result<Self> {
        let dense = self.dense_weight()?;
        let device = self.values.val().device();
        let w = Tensor::from_data(TensorData::new(dense, self.matrix_dims()), &device);
        self.probe = Some(Param::from_tensor(w));
        Ok(self)
    }

    /// Removes the probe and its gradient from `grads`, registers the
    /// gradient's active entries as the values' gradient, and returns the
    /// dense gradient on the host (`None` when the layer had no probe or the
    /// probe no gradient).
    pub fn take_probe_grad(mut self, grads: &mut GradientsParams) -> Result<(Self, Option<Vec<f32>>)> {
        let Some(probe) = self.probe.take() else {
            return Ok((self, None));
        };
        let Some(dense) = grads.remove::<2>(probe.id) else {
            return Ok((self, None));
        };
        let index = self.dense_positions.clone().unwrap_or_else(|| self.position_index());
        let flat = dense.reshape([self.layer.numel()]);
        grads.register(self.values.id, flat.clone().select(0, index));
        Ok((self, Some(host(flat)?)))
    }

    /// The layer under a new `mask` (a topology update), its values the
    /// active entries of `weight` (the dense weight after the method's
    /// update: a kept position keeps its value, a grown one has what the
    /// method wrote there, 0 unless it wrote something). Returns the map from
    /// each new entry to its old one (`None`: grown), to re-align the
    /// optimizer state ([`sparse_core::MaskedOptimizer::realign`]). The values
    /// keep their parameter id.
    pub fn with_mask(self, mask: Mask, weight: &[f32]) -> Result<(Self, Vec<Option<u32>>)> {
        check_len(&self.layer, "weights", weight.len(), self.layer.numel())?;
        self.remask(mask, |layer, plan, _| Ok(gather(weight, &flat_positions(layer, plan))))
    }

    /// The layer under a new `mask` (a topology update computed on the
    /// compact layer, [`super::compact_update`]): a kept position keeps its
    /// value, a grown one starts at 0. Returns the entry map as
    /// [`CompactLinear::with_mask`] does; no dense weight is built.
    pub fn with_kept_values(self, mask: Mask) -> Result<(Self, Vec<Option<u32>>)> {
        let old = self.values_host()?;
        self.remask(mask, |_, _, map| {
            Ok(map.iter().map(|e| e.map_or(0.0, |o| old[o as usize])).collect())
        })
    }

    fn remask(
        self,
        mask: Mask,
        values_of: impl FnOnce(&SparseLayer, &SparsePlan, &[Option<u32>]) -> Result<Vec<f32>>,
    ) -> Result<(Self, Vec<Option<u32>>)> {
        let plan = csr_plan(&self.layer, op_of(&self.layer), &mask)?;
        let map = entry_map(&self.plan, &plan);
        let values = values_of(&self.layer, &plan, &map)?;
        let Self {
            values: param,
            bias,
            layer,
            dense_positions,
            ..
        } = self;
        let values = param.map(|old| {
            let new = vector(values, &old.device());
            if old.is_require_grad() { new.require_grad() } else { new }
        });
        let layer = Self {
            values,
            bias,
            probe: None,
            output_probe: None,
            input_record: None,
            layer,
            mask,
            plan,
            dense_positions: None,
        };
        Ok((layer.with_dense_product(dense_positions.is_some()), map))
    }

    /// The dotted path of the bias in this model and in the masked-dense
    /// model, `(compact, dense)`: the same for a linear layer; for a
    /// convolution `conv.weight.bias` (the field of its [`super::CompactConv2d`])
    /// against the dense `Conv2d`'s `conv.bias`.
    pub fn bias_paths(&self) -> (String, String) {
        let path = &self.layer.path;
        let dense = match path.strip_suffix("weight") {
            Some(prefix) => format!("{prefix}bias"),
            None => format!("{path}.bias"),
        };
        match self.layer.kind {
            LayerKind::Conv => (format!("{path}.bias"), dense),
            LayerKind::Linear => (dense.clone(), dense),
        }
    }

    /// The dotted path of the values parameter, as the optimizer state is
    /// keyed: for a linear layer the weight's path with `values` for
    /// `weight`; for a convolution, whose [`super::CompactConv2d`] holds this
    /// layer in its field `weight`, the weight's path then `.values`.
    pub fn values_path(&self) -> String {
        let path = &self.layer.path;
        if self.layer.kind == LayerKind::Conv {
            return format!("{path}.values");
        }
        match path.strip_suffix("weight") {
            Some(prefix) => format!("{prefix}values"),
            None => format!("{path}.values"),
        }
    }
}

/// The operator a layer's plan multiplies: a linear layer's input, or a
/// convolution's patches (one group: grouped convolutions stay dense).
fn op_of(layer: &SparseLayer) -> OpKind {
    match layer.kind {
        LayerKind::Linear => OpKind::Linear,
        LayerKind::Conv => OpKind::Conv {
            cin_g: layer.shape[1],
            kernel: [layer.shape[2], layer.shape[3]],
            groups: 1,
        },
    }
}

fn apply(y: Tensor<2>, act: Activation) -> Tensor<2> {
    match act {
        Activation::None => y,
        Activation::Relu => burn::tensor::activation::relu(y),
    }
}

fn gather(dense: &[f32], positions: &[usize]) -> Vec<f32> {
    positions.iter().map(|&f| dense[f]).collect()
}

fn vector(values: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), device)
}

fn check_len(layer: &SparseLayer, what: &str, got: usize, want: usize) -> Result<()> {
    if got == want {
        return Ok(());
    }
    Err(KernelError::shape(
        &layer.path,
        format!("{got} {what} given, the layer {:?} has {want}", layer.shape),
    ))
}
/// A slot the forward pass writes the layer's input into (shared by the
/// clones of a layer, so the model that ran the forward pass and the one
/// that reads the trace need not be the same value).
#[derive(Clone, Debug, Default)]
struct InputRecord(Arc<Mutex<Option<Tensor<2>>>>);

impl InputRecord {
    fn lock(&self) -> MutexGuard<'_, Option<Tensor<2>>> {
        // a poisoned slot still holds a whole tensor or none
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
