//! The sparse operators as a Burn backend extension, and `Tensor` wrappers.
//!
//! [`SparseOps`] has one implementation per backend (see [`crate::backends`]):
//! flex runs the host kernels of [`crate::cpu`], CubeCL (wgpu, cuda) runs the
//! gather-form GPU kernels of `backends/cube.rs`, NdArray (and any backend without its own kernels)
//! runs the default bodies below, built from Burn primitives (the values are
//! scattered into a dense matrix, then a dense matmul / conv2d). Under
//! `Autodiff` the linear product has a handwritten backward (`dX` through the
//! transposed sparse product, `dW` only at the stored positions, an SDDMM);
//! so has the convolution (`dX` through the transposed sparse convolution,
//! `dW` only at the stored positions).

// The generated dispatch names `burn::backend::NdArray`, deprecated upstream but
// still the backend CI tests the fallback on.
#![allow(deprecated)]
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata, backend_extension};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{FloatDType, IndexingUpdateOp, Slice, Tensor, TensorData};

use crate::activation::Activation;
use crate::plan::{OpKind, SparsePlan};

/// Sparse-weight × dense-activation operators.
#[backend_extension(
    Flex: cfg(feature = "flex"),
    NdArray: cfg(feature = "ndarray"),
    Cube: cfg(any(feature = "wgpu", feature = "cuda")),
    Autodiff,
)]
pub trait SparseOps: Backend {
    /// `act(x·Wᵀ + bias)` for `x: [batch, cols]`, `W` the plan's `[rows, cols]`
    /// matrix with `values` in the plan's storage order; returns `[batch, rows]`.
    fn sparse_linear(
        x: FloatTensor<Self>,
        values: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        plan: SparsePlan,
        act: Activation,
    ) -> FloatTensor<Self> {
        fallback_linear::<Self>(x, values, bias, &plan, act)
    }

    /// `dY·W`: `dy: [batch, rows]` to `[batch, cols]` (the input gradient).
    fn sparse_linear_t(dy: FloatTensor<Self>, values: FloatTensor<Self>, plan: SparsePlan) -> FloatTensor<Self> {
        fallback_linear_t::<Self>(dy, values, &plan)
    }

    /// Gradient of every stored value: `Σ_b dy[b, r]·x[b, c]` at each stored `(r, c)`, 0 at padding.
    fn sparse_sddmm(dy: FloatTensor<Self>, x: FloatTensor<Self>, plan: SparsePlan) -> FloatTensor<Self> {
        fallback_sddmm::<Self>(dy, x, &plan)
    }

    /// `act(conv2d(x, W) + bias)` for `x: [n, c, h, w]` with the plan's conv
    /// weight (fan-in in channel-last order); returns `[n, rows, h_out, w_out]`.
    fn sparse_conv2d(
        x: FloatTensor<Self>,
        values: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        plan: SparsePlan,
        options: ConvOptions<2>,
        act: Activation,
    ) -> FloatTensor<Self> {
        fallback_conv2d::<Self>(x, values, bias, &plan, options, act)
    }

    /// The input gradient of [`SparseOps::sparse_conv2d`] (before its
    /// activation) for the output gradient `dy`: the transposed sparse
    /// convolution, `[n, c, h, w]` as `x`.
    fn sparse_conv2d_x_grad(
        x: FloatTensor<Self>,
        values: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        plan: SparsePlan,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_x_backward(x, conv_weight::<Self>(&plan, values), dy, options)
    }

    /// The gradient of every stored value of [`SparseOps::sparse_conv2d`]
    /// (before its activation) for the output gradient `dy`:
    /// `Σ_n Σ_pixels dy[n, o, p]·patch_p[j]` at each stored `(o, j)`.
    fn sparse_conv2d_values_grad(
        x: FloatTensor<Self>,
        values: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        plan: SparsePlan,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        fallback_conv2d_values_grad::<Self>(x, values, dy, &plan, options)
    }
}

/// The primitive body of [`SparseOps::sparse_conv2d_values_grad`]: Burn's
/// dense weight gradient, in the channel-last fan-in order, sampled at the
/// stored positions.
pub fn fallback_conv2d_values_grad<B: Backend>(
    x: FloatTensor<B>,
    values: FloatTensor<B>,
    dy: FloatTensor<B>,
    plan: &SparsePlan,
    options: ConvOptions<2>,
) -> FloatTensor<B> {
    let OpKind::Conv { cin_g, kernel, .. } = plan.op else {
        panic!("sparse_conv2d_values_grad needs a conv plan, got {:?}", plan.op);
    };
    let dw = B::conv2d_weight_backward(x, conv_weight::<B>(plan, values), dy, options);
    let dw = B::float_reshape(dw, [plan.rows, cin_g, kernel[0] * kernel[1]].into());
    sample::<B>(B::float_swap_dims(dw, 1, 2), plan)
}

/// The entries of a dense `[rows, cols]` (any 2- or 3-D view of it) at the
/// plan's stored positions, 0 at padding.
fn sample<B: Backend>(full: FloatTensor<B>, plan: &SparsePlan) -> FloatTensor<B> {
    let device = full.device();
    let flat = B::float_reshape(full, [plan.rows * plan.cols].into());
    let zero = B::float_zeros([1].into(), &device, FloatDType::from(flat.dtype()));
    let flat = B::float_cat(vec![flat, zero], 0);
    B::float_select(flat, 0, positions::<B>(plan, &device))
}

/// The plan's value positions in the dense matrix, as an int tensor on `device`.
fn positions<B: Backend>(plan: &SparsePlan, device: &B::Device) -> burn::backend::tensor::IntTensor<B> {
    let pos = plan.dense_positions().to_vec();
    B::int_from_data(TensorData::new(pos, [plan.n_values]), device)
}

/// The primitive body of [`SparseOps::sparse_linear_t`]: `dY·W` with `W` densified.
pub fn fallback_linear_t<B: Backend>(dy: FloatTensor<B>, values: FloatTensor<B>, plan: &SparsePlan) -> FloatTensor<B> {
    let dense = densify::<B>(plan, values);
    B::float_matmul(dy, dense)
}

/// The primitive body of [`SparseOps::sparse_sddmm`]: the dense `dYᵀ·X`, sampled at the stored positions.
pub fn fallback_sddmm<B: Backend>(dy: FloatTensor<B>, x: FloatTensor<B>, plan: &SparsePlan) -> FloatTensor<B> {
    sample::<B>(B::float_matmul(B::float_transpose(dy), x), plan)
}

/// The dense `[rows, cols]` matrix of `values` (differentiable through `select_assign`).
pub fn densify<B: Backend>(plan: &SparsePlan, values: FloatTensor<B>) -> FloatTensor<B> {
    let device = values.device();
    let n = plan.rows * plan.cols;
    let zeros = B::float_zeros([n + 1].into(), &device, FloatDType::from(values.dtype()));
    let dense = B::float_select_assign(zeros, 0, positions::<B>(plan, &device), values, IndexingUpdateOp::Add);
    let dense = B::float_slice(dense, &[Slice::from(0..n)]);
    B::float_reshape(dense, [plan.rows, plan.cols].into())
}

fn activate<B: Backend>(t: FloatTensor<B>, act: Activation) -> FloatTensor<B> {
    match act {
        Activation::None => t,
        Activation::Relu => B::relu(t),
    }
}

/// The primitive body of [`SparseOps::sparse_linear`].
pub fn fallback_linear<B: Backend>(
    x: FloatTensor<B>,
    values: FloatTensor<B>,
    bias: FloatTensor<B>,
    plan: &SparsePlan,
    act: Activation,
) -> FloatTensor<B> {
    let dense = densify::<B>(plan, values);
    let y = B::float_matmul(x, B::float_transpose(dense));
    let y = B::float_add(y, B::float_reshape(bias, [1, plan.rows].into()));
    activate::<B>(y, act)
}

/// The dense conv weight `[rows, cin_g, kh, kw]` of a conv plan's values.
pub fn conv_weight<B: Backend>(plan: &SparsePlan, values: FloatTensor<B>) -> FloatTensor<B> {
    let OpKind::Conv { cin_g, kernel, .. } = plan.op else {
        panic!("conv_weight needs a conv plan, got {:?}", plan.op);
    };
    let dense = densify::<B>(plan, values);
    let w = B::float_reshape(dense, [plan.rows, kernel[0] * kernel[1], cin_g].into());
    let w = B::float_swap_dims(w, 1, 2);
    B::float_reshape(w, [plan.rows, cin_g, kernel[0], kernel[1]].into())
}

/// The primitive body of [`SparseOps::sparse_conv2d`].
pub fn fallback_conv2d<B: Backend>(
    x: FloatTensor<B>,
    values: FloatTensor<B>,
    bias: FloatTensor<B>,
    plan: &SparsePlan,
    options: ConvOptions<2>,
    act: Activation,
) -> FloatTensor<B> {
    let w = conv_weight::<B>(plan, values);
    activate::<B>(B::conv2d(x, w, Some(bias), options), act)
}

/// `act(x·Wᵀ + bias)` on any device: `x: [batch, cols]` → `[batch, rows]`.
pub fn sparse_linear(
    x: Tensor<2>,
    values: Tensor<1>,
    bias: Tensor<1>,
    plan: &SparsePlan,
    act: Activation,
) -> Tensor<2> {
    Tensor::from_dispatch(Dispatch::sparse_linear(
        x.into_dispatch(),
        values.into_dispatch(),
        bias.into_dispatch(),
        plan.clone(),
        act,
    ))
}

/// `dY·W` on any device: `[batch, rows]` → `[batch, cols]`.
pub fn sparse_linear_t(dy: Tensor<2>, values: Tensor<1>, plan: &SparsePlan) -> Tensor<2> {
    Tensor::from_dispatch(Dispatch::sparse_linear_t(
        dy.into_dispatch(),
        values.into_dispatch(),
        plan.clone(),
    ))
}

/// The gradient of the stored values on any device.
pub fn sparse_sddmm(dy: Tensor<2>, x: Tensor<2>, plan: &SparsePlan) -> Tensor<1> {
    Tensor::from_dispatch(Dispatch::sparse_sddmm(
        dy.into_dispatch(),
        x.into_dispatch(),
        plan.clone(),
    ))
}

/// `act(conv2d(x, W) + bias)` on any device.
pub fn sparse_conv2d(
    x: Tensor<4>,
    values: Tensor<1>,
    bias: Tensor<1>,
    plan: &SparsePlan,
    options: ConvOptions<2>,
    act: Activation,
) -> Tensor<4> {
    Tensor::from_dispatch(Dispatch::sparse_conv2d(
        x.into_dispatch(),
        values.into_dispatch(),
        bias.into_dispatch(),
        plan.clone(),
        options,
        act,
    ))
}

/// The input gradient of [`sparse_conv2d`] (before its activation) on any device.
pub fn sparse_conv2d_x_grad(
    x: Tensor<4>,
    values: Tensor<1>,
    dy: Tensor<4>,
    plan: &SparsePlan,
    options: ConvOptions<2>,
) -> Tensor<4> {
    Tensor::from_dispatch(Dispatch::sparse_conv2d_x_grad(
        x.into_dispatch(),
        values.into_dispatch(),
        dy.into_dispatch(),
        plan.clone(),
        options,
    ))
}

/// The gradient of the stored values of [`sparse_conv2d`] (before its activation) on any device.
pub fn sparse_conv2d_values_grad(
    x: Tensor<4>,
    values: Tensor<1>,
    dy: Tensor<4>,
    plan: &SparsePlan,
    options: ConvOptions<2>,
) -> Tensor<1> {
    Tensor::from_dispatch(Dispatch::sparse_conv2d_values_grad(
        x.into_dispatch(),
        values.into_dispatch(),
        dy.into_dispatch(),
        plan.clone(),
        options,
    ))
}
