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
