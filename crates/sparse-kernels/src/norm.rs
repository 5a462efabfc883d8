//! Batch norm in training mode as one fused operator, for the models of
//! sparse execution: once the convolutions are sparse, Burn's batch norm
//! (a dozen primitive operations and two transposed copies per pass) is
//! the largest cost left in a ResNet's step on flex
//! (`docs/sparse-execution.md`, "Batch norm").
//!
//! [`NormOps`] is a Burn backend extension like [`crate::SparseOps`]: flex
//! runs the host kernels of [`crate::cpu::batch_norm`] (three sweeps over each
//! channel forward, two backward, with the ReLU that follows folded in);
//! every other backend runs Burn's own `batch_norm_train` and its backward
//! (the default bodies below). Under `Autodiff` the backward is handwritten.
//! [`batch_norm`] is the drop-in for `BatchNorm::forward` (and a ReLU after
//! it): the same output, the same running statistics.

// The generated dispatch names `burn::backend::NdArray`, deprecated upstream but
// still the backend CI tests the fallback on.
#![allow(deprecated)]

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::nn::BatchNorm;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;

use crate::activation::Activation;

/// Batch norm in training mode, fused with the activation after it.
#[backend_extension(
    Flex: cfg(feature = "flex"),
    NdArray: cfg(feature = "ndarray"),
    Cube: cfg(any(feature = "wgpu", feature = "cuda")),
    Autodiff,
)]
pub trait NormOps: Backend {
    /// `act(γ·x̂ + β)` for `x: [n, c, ...]` with the batch statistics of each
    /// channel; returns the output, the batch mean and the biased batch
    /// variance (`[c]` each), as Burn's `batch_norm_train`.
    fn fused_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        act: Activation,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        fallback_batch_norm::<Self>(x, gamma, beta, epsilon, act)
    }

    /// The gradients of [`NormOps::fused_batch_norm`] with respect to `x`, γ
    /// and β for the gradient `dy` of its (activated) output, given the
    /// statistics it returned.
    #[allow(clippy::too_many_arguments)]
    fn fused_batch_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        act: Activation,
        dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        fallback_batch_norm_backward::<Self>(x, gamma, beta, mean, variance, epsilon, act, dy)
    }
}

/// The primitive body of [`NormOps::fused_batch_norm`]: Burn's `batch_norm_train`, then the activation.
pub fn fallback_batch_norm<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f64,
    act: Activation,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let r = B::batch_norm_train(x, gamma, beta, epsilon);
    let y = match act {
        Activation::None => r.output,
        Activation::Relu => B::relu(r.output),
    };
    (y, r.mean, r.variance)
}

/// The primitive body of [`NormOps::fused_batch_norm_backward`]: the ReLU's
/// mask from the recomputed normalisation, then Burn's `batch_norm_train_backward`.
#[allow(clippy::too_many_arguments)]
pub fn fallback_batch_norm_backward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    mean: FloatTensor<B>,
    variance: FloatTensor<B>,
    epsilon: f64,
    act: Activation,
    dy: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let dy = match act {
        Activation::None => dy,
        Activation::Relu => {
            let pre = B::batch_norm(x.clone(), gamma.clone(), beta, mean.clone(), variance.clone(), epsilon);
            B::relu_backward(B::relu(pre), dy)
        }
    };
    let r = B::batch_norm_train_backward(x, gamma, mean, variance, epsilon, dy);
    (r.x_grad, r.gamma_grad, r.beta_grad)
}

/// [`NormOps::fused_batch_norm`] on any device: `(output, mean, variance)`.
pub fn fused_batch_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
    act: Activation,
) -> (Tensor<D>, Tensor<1>, Tensor<1>) {
    let (y, mean, var) = Dispatch::fused_batch_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
        act,
    );
    (
        Tensor::from_dispatch(y),
        Tensor::from_dispatch(mean),
        Tensor::from_dispatch(var),
    )
}

/// `act(bn.forward(x))`, with the fused operator where `bn` trains (an
/// autodiff device and its training flag on): the same output and the same
/// update of the running statistics as `BatchNorm::forward`; elsewhere
/// `bn.forward` itself.
pub fn batch_norm<const D: usize>(bn: &BatchNorm, x: Tensor<D>, act: Activation) -> Tensor<D> {
    if !(x.device().is_autodiff() && bn.training.is_enabled()) {
        let y = bn.forward(x);
        return match act {
            Activation::None => y,
            Activation::Relu => relu(y),
        };
    }
    let [channels] = bn.gamma.dims();
    assert!(
        D >= 2 && x.dims()[1] == channels,
        "batch norm: the input {:?} needs {channels} channels on its second axis",
        x.dims()
    );
    let device = x.device();
    let (y, mean, var) = fused_batch_norm(x, bn.gamma.val(), bn.beta.val(), bn.epsilon, act);
    let keep = 1.0 - bn.momentum;
    let running_mean = bn.running_mean.value_sync().to_device(&device);
    let running_var = bn.running_var.value_sync().to_device(&device);
    let running_mean = running_mean.mul_scalar(keep).add(mean.detach().mul_scalar(bn.momentum));
    let running_var = running_var.mul_scalar(keep).add(var.detach().mul_scalar(bn.momentum));
    bn.running_mean.update(running_mean.detach());
    bn.running_var.update(running_var.detach());
    y
}
