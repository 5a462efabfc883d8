//! flex: the host kernels of [`crate::cpu`] on flex's buffers, without copies
//! for contiguous f32 inputs. Other dtypes take the primitive bodies.

use burn::backend::Flex;
use burn::backend::TensorMetadata;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, TensorData};

use super::shape::conv_shape;
use crate::activation::Activation;
use crate::cpu;
use crate::norm::{NormOps, fallback_batch_norm, fallback_batch_norm_backward};
use crate::ops::{SparseOps, conv_weight, fallback_conv2d, fallback_conv2d_values_grad, fallback_linear};
use crate::plan::SparsePlan;

fn all_f32(ts: &[&FlexTensor]) -> bool {
    ts.iter().all(|t| t.dtype() == DType::F32)
}

fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("a contiguous f32 flex tensor")
}

fn check(what: &str, got: usize, want: usize, plan: &SparsePlan) {
    assert!(
        got == want,
        "sparse op: {what} is {got}, the sparse weight {plan:?} needs {want}"
    );
}

impl SparseOps for Flex {
    fn sparse_linear(
        x: FlexTensor,
        values: FlexTensor,
        bias: FlexTensor,
        plan: SparsePlan,
        act: Activation,
    ) -> FlexTensor {
        if !all_f32(&[&x, &values, &bias]) {
            return fallback_linear::<Flex>(x, values, bias, &plan, act);
        }
        let (x, values, bias) = (x.to_contiguous(), values.to_contiguous(), bias.to_contiguous());
        let shape = x.shape();
        check("the input width", shape[1], plan.cols, &plan);
        check("the number of values", values.shape()[0], plan.n_values, &plan);
        check("the bias length", bias.shape()[0], plan.rows, &plan);
        let batch = shape[0];
        let mut out = vec![0.0f32; batch * plan.rows];
        cpu::linear_forward(&plan, slice(&values), slice(&x), batch, slice(&bias), act, &mut out);
        FlexTensor::from_data(TensorData::new(out, [batch, plan.rows]))
    }

    fn sparse_linear_t(dy: FlexTensor, values: FlexTensor, plan: SparsePlan) -> FlexTensor {
        let (dy, values) = (dy.to_contiguous(), values.to_contiguous());
        let batch = dy.shape()[0];
        check("the output-gradient width", dy.shape()[1], plan.rows, &plan);
        let dx = cpu::backward::transposed(&plan, slice(&values), slice(&dy), batch);
        FlexTensor::from_data(TensorData::new(dx, [batch, plan.cols]))
    }

    fn sparse_sddmm(dy: FlexTensor, x: FlexTensor, plan: SparsePlan) -> FlexTensor {
        let (dy, x) = (dy.to_contiguous(), x.to_contiguous());
        let batch = dy.shape()[0];
        check("the input width", x.shape()[1], plan.cols, &plan);
        let dv = cpu::backward::sddmm(&plan, slice(&dy), slice(&x), batch);
        FlexTensor::from_data(TensorData::new(dv, [plan.n_values]))
    }

    fn sparse_conv2d(
        x: FlexTensor,
        values: FlexTensor,
        bias: FlexTensor,
        plan: SparsePlan,
        options: ConvOptions<2>,
        act: Activation,
    ) -> FlexTensor {
        if !all_f32(&[&x, &values, &bias]) {
            return fallback_conv2d::<Flex>(x, values, bias, &plan, options, act);
        }
        let (x, values, bias) = (x.to_contiguous(), values.to_contiguous(), bias.to_contiguous());
        let shape = conv_shape(&x.shape(), &plan, &options);
        let mut out = vec![0.0f32; shape.n * shape.o * shape.out_hw[0] * shape.out_hw[1]];
        cpu::conv::forward(&plan, slice(&values), slice(&x), shape, slice(&bias), act, &mut out);
        FlexTensor::from_data(TensorData::new(
            out,
            [shape.n, shape.o, shape.out_hw[0], shape.out_hw[1]],
        ))
    }

    fn sparse_conv2d_x_grad(
        x: FlexTensor,
        values: FlexTensor,
        dy: FlexTensor,
        plan: SparsePlan,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        if !all_f32(&[&x, &values, &dy]) {
            return Flex::conv2d_x_backward(x, conv_weight::<Flex>(&plan, values), dy, options);
        }
        let dims = x.shape().to_vec();
        let dx = conv_grad(x, values, dy, &plan, &options, cpu::conv_backward::input_grad);
        FlexTensor::from_data(TensorData::new(dx, dims))
    }

    fn sparse_conv2d_values_grad(
        x: FlexTensor,
        values: FlexTensor,
        dy: FlexTensor,
        plan: SparsePlan,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        if !all_f32(&[&x, &values, &dy]) {
            return fallback_conv2d_values_grad::<Flex>(x, values, dy, &plan, options);
        }
        let dv = conv_grad(x, values, dy, &plan, &options, cpu::conv_backward::values_grad);
        FlexTensor::from_data(TensorData::new(dv, [plan.n_values]))
    }
}

/// A gradient kernel of the sparse convolution on contiguous f32 inputs;
/// panics with a clear message when `dy` is not the convolution's output shape.
fn conv_grad(
    x: FlexTensor,
    values: FlexTensor,
    dy: FlexTensor,
    plan: &SparsePlan,
    options: &ConvOptions<2>,
    kernel: cpu::conv_backward::GradKernel,
) -> Vec<f32> {
    let (x, values, dy) = (x.to_contiguous(), values.to_contiguous(), dy.to_contiguous());
    let s = conv_shape(&x.shape(), plan, options);
    let want = [s.n, s.o, s.out_hw[0], s.out_hw[1]];
    assert!(
        dy.shape().to_vec() == want,
        "sparse conv gradient: the output gradient is {:?}, the convolution {plan:?} gives {want:?}",
        dy.shape()
    );
    kernel(plan, slice(&values), slice(&x), slice(&dy), s)
}

/// The `[n, c, s]` layout of a batch norm input of rank ≥ 2 (`None` below).
fn norm_layout(x: &FlexTensor) -> Option<cpu::batch_norm::Layout> {
    let dims = x.shape().to_vec();
    (dims.len() >= 2).then(|| cpu::batch_norm::Layout {
        n: dims[0],
        c: dims[1],
        s: dims[2..].iter().product(),
    })
}

fn channels(v: Vec<f32>) -> FlexTensor {
    let c = v.len();
    FlexTensor::from_data(TensorData::new(v, [c]))
}

impl NormOps for Flex {
    fn fused_batch_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
        act: Activation,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let Some(layout) = norm_layout(&x).filter(|_| all_f32(&[&x, &gamma, &beta])) else {
            return fallback_batch_norm::<Flex>(x, gamma, beta, epsilon, act);
        };
        let dims = x.shape().to_vec();
        let (x, gamma, beta) = (x.to_contiguous(), gamma.to_contiguous(), beta.to_contiguous());
        let f = cpu::batch_norm::forward(slice(&x), layout, slice(&gamma), slice(&beta), epsilon, act);
        (
            FlexTensor::from_data(TensorData::new(f.y, dims)),
            channels(f.mean),
            channels(f.var),
        )
    }

    fn fused_batch_norm_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        variance: FlexTensor,
        epsilon: f64,
        act: Activation,
        dy: FlexTensor,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let f32s = all_f32(&[&x, &gamma, &beta, &mean, &variance, &dy]);
        let Some(layout) = norm_layout(&x).filter(|_| f32s) else {
            return fallback_batch_norm_backward::<Flex>(x, gamma, beta, mean, variance, epsilon, act, dy);
        };
        let dims = x.shape().to_vec();
        let [x, gamma, beta, mean, variance, dy] = [x, gamma, beta, mean, variance, dy].map(|t| t.to_contiguous());
        let saved = cpu::batch_norm::Saved {
            gamma: slice(&gamma),
            beta: slice(&beta),
            mean: slice(&mean),
            var: slice(&variance),
            eps: epsilon,
            act,
        };
        let b = cpu::batch_norm::backward(slice(&x), slice(&dy), layout, saved);
        (
            FlexTensor::from_data(TensorData::new(b.dx, dims)),
            channels(b.dgamma),
            channels(b.dbeta),
        )
    }
}
