//! Autodiff: handwritten backward passes for the sparse linear product and
//! the sparse convolution.
//!
//! For `y = x·Wᵀ + b`: `dX = dY·W` (the transposed sparse product, gather form
//! over a compressed-column index), `dW = dYᵀ·X` sampled at the stored
//! positions only (SDDMM), `db = Σ_b dY`. For `y = conv(x, W) + b`: `dX`
//! through the transposed sparse convolution, `dW` at the stored positions
//! only, `db = Σ_{n,pixels} dY`. Inputs are kept for the backward (compute
//! bound: never recomputed).

use burn::backend::AutodiffBackend;
use burn::backend::TensorMetadata;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::ops::ActivationOps;
use burn::backend::tensor::FloatTensor;
use burn::tensor::ops::ConvOptions;

use crate::activation::Activation;
use crate::norm::NormOps;
use crate::ops::SparseOps;
use crate::plan::SparsePlan;

#[derive(Debug)]
struct LinearBackward;

impl<B: SparseOps> Backward<B, 3> for LinearBackward {
    /// (checkpointed x, checkpointed values, plan)
    type State = (Option<NodeId>, Option<NodeId>, SparsePlan);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_v, node_b] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_id, v_id, plan) = ops.state;
        if let (Some(node), Some(id)) = (node_x, v_id) {
            let values = checkpointer.retrieve_node_output(id);
            grads.register::<B>(node.id, B::sparse_linear_t(grad.clone(), values, plan.clone()));
        }
        if let (Some(node), Some(id)) = (node_v, x_id) {
            let x = checkpointer.retrieve_node_output(id);
            grads.register::<B>(node.id, B::sparse_sddmm(grad.clone(), x, plan.clone()));
        }
        if let Some(node) = node_b {
            let db = B::float_reshape(B::float_sum_dim(grad, 0), [plan.rows].into());
            grads.register::<B>(node.id, db);
        }
    }
}

#[derive(Debug)]
struct ConvBackward;

impl<B: SparseOps> Backward<B, 3> for ConvBackward {
    /// (checkpointed x, checkpointed values, plan, options)
    type State = (NodeId, NodeId, SparsePlan, ConvOptions<2>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_v, node_b] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_id, v_id, plan, options) = ops.state;
        let x: FloatTensor<B> = checkpointer.retrieve_node_output(x_id);
        let values: FloatTensor<B> = checkpointer.retrieve_node_output(v_id);
        if let Some(node) = node_x {
            let dx = B::sparse_conv2d_x_grad(x.clone(), values.clone(), grad.clone(), plan.clone(), options.clone());
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_v {
            let dv = B::sparse_conv2d_values_grad(x, values, grad.clone(), plan.clone(), options);
            grads.register::<B>(node.id, dv);
        }
        if let Some(node) = node_b {
            let [n, o, h, w] = grad.shape().dims::<4>();
            let per_channel = B::float_reshape(B::float_swap_dims(grad, 0, 1), [o, n * h * w].into());
            let db = B::float_reshape(B::float_sum_dim(per_channel, 1), [o].into());
            grads.register::<B>(node.id, db);
        }
    }
}

impl<B: SparseOps, C: CheckpointStrategy> SparseOps for Autodiff<B, C> {
    fn sparse_conv2d(
        x: FloatTensor<Self>,
        values: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        plan: SparsePlan,
        options: ConvOptions<2>,
        act: Activation,
    ) -> FloatTensor<Self> {
        if act != Activation::None {
            let y = Self::sparse_conv2d(x, values, bias, plan, options, Activation::None);
            return Self::relu(y);
        }
        match ConvBackward
            .prepare::<C>([x.node(), values.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_id = prep.checkpoint(&x);
                let v_id = prep.checkpoint(&values);
                let out = B::sparse_conv2d(
                    x.into_primitive(),
                    values.into_primitive(),
                    bias.into_primitive(),
                    plan.clone(),
                    options.clone(),
                    Activation::None,
                );
                prep.finish((x_id, v_id, plan, options), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::sparse_conv2d(
                x.into_primitive(),
                values.into_primitive(),
                bias.into_primitive(),
                plan,
                options,
                Activation::None,
            )),
        }
    }

    fn sparse_conv2d_x_grad(
        x: FloatTensor<Self>,
        values: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        plan: SparsePlan,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::sparse_conv2d_x_grad(
            Self::inner(x),
            Self::inner(values),
            Self::inner(dy),
            plan,
            options,
        ))
    }

    fn sparse_conv2d_values_grad(
        x: FloatTensor<Self>,
        values: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        plan: SparsePlan,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::sparse_conv2d_values_grad(
            Self::inner(x),
            Self::inner(values),
            Self::inner(dy),
            plan,
            options,
        ))
    }

    fn sparse_linear(
        x: FloatTensor<Self>,
        values: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        plan: SparsePlan,
        act: Activation,
    ) -> FloatTensor<Self> {
        if act != Activation::None {
            let y = Self::sparse_linear(x, values, bias, plan, Activation::None);
            return Self::relu(y);
        }
        let (x_tracked, v_tracked) = (x.is_tracked(), values.is_tracked());
        match LinearBackward
            .prepare::<C>([x.node(), values.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let v_id = x_tracked.then(|| prep.checkpoint(&values));
                let x_id = v_tracked.then(|| prep.checkpoint(&x));
                let out = B::sparse_linear(
                    x.into_primitive(),
                    values.into_primitive(),
                    bias.into_primitive(),
                    plan.clone(),
                    Activation::None,
                );
                prep.finish((x_id, v_id, plan), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::sparse_linear(
                x.into_primitive(),
                values.into_primitive(),
                bias.into_primitive(),
                plan,
                Activation::None,
            )),
        }
    }

    fn sparse_linear_t(dy: FloatTensor<Self>, values: FloatTensor<Self>, plan: SparsePlan) -> FloatTensor<Self> {
        Self::from_inner(B::sparse_linear_t(Self::inner(dy), Self::inner(values), plan))
    }

    fn sparse_sddmm(dy: FloatTensor<Self>, x: FloatTensor<Self>, plan: SparsePlan) -> FloatTensor<Self> {
        Self::from_inner(B::sparse_sddmm(Self::inner(dy), Self::inner(x), plan))
    }
}

#[derive(Debug)]
struct BatchNormBackward;

impl<B: NormOps> Backward<B, 3> for BatchNormBackward {
    /// (checkpointed x, γ and β; the batch mean and variance; ε; the activation)
    type State = (NodeId, NodeId, NodeId, FloatTensor<B>, FloatTensor<B>, f64, Activation);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_id, gamma_id, beta_id, mean, variance, epsilon, act) = ops.state;
        let x = checkpointer.retrieve_node_output(x_id);
        let gamma = checkpointer.retrieve_node_output(gamma_id);
        let beta = checkpointer.retrieve_node_output(beta_id);
        let (dx, dgamma, dbeta) = B::fused_batch_norm_backward(x, gamma, beta, mean, variance, epsilon, act, grad);
        for (node, g) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

impl<B: NormOps, C: CheckpointStrategy> NormOps for Autodiff<B, C> {
    fn fused_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        act: Activation,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let inner = |x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>| {
            B::fused_batch_norm(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                epsilon,
                act,
            )
        };
        match BatchNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let ids = (prep.checkpoint(&x), prep.checkpoint(&gamma), prep.checkpoint(&beta));
                let (y, mean, var) = inner(x, gamma, beta);
                let state = (ids.0, ids.1, ids.2, mean.clone(), var.clone(), epsilon, act);
                (prep.finish(state, y), Self::from_inner(mean), Self::from_inner(var))
            }
            OpsKind::UnTracked(prep) => {
                let (y, mean, var) = inner(x, gamma, beta);
                (prep.finish(y), Self::from_inner(mean), Self::from_inner(var))
            }
        }
    }

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
        let [x, gamma, beta, mean, variance, dy] = [x, gamma, beta, mean, variance, dy].map(Self::inner);
        let (dx, dgamma, dbeta) = B::fused_batch_norm_backward(x, gamma, beta, mean, variance, epsilon, act, dy);
        (Self::from_inner(dx), Self::from_inner(dgamma), Self::from_inner(dbeta))
    }
}
