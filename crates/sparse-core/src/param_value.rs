//! A parameter's tensor and what it carries besides its value: detaching it
//! from the autodiff tape and restoring its flags after an update.

use burn::module::ParamId;
use burn::tensor::{GradientCheckpointingStrategy, Tensor};

/// What a parameter tensor carries besides its value, restored after an update
/// (like Burn's private `ParameterContext`).
pub(crate) struct ParamContext {
    autodiff: bool,
    require_grad: bool,
    distributed: bool,
    checkpointing: Option<GradientCheckpointingStrategy>,
}

impl ParamContext {
    pub(crate) fn capture<const D: usize>(t: &Tensor<D>) -> Self {
        Self {
            autodiff: t.is_autodiff(),
            require_grad: t.is_require_grad(),
            distributed: t.is_distributed(),
            checkpointing: t.gradient_checkpointing_strategy(),
        }
    }

    pub(crate) fn restore<const D: usize>(self, value: Tensor<D>, id: ParamId) -> Tensor<D> {
        if !self.autodiff {
            return value;
        }
        let mut t = Tensor::from_inner(value);
        if let Some(s) = self.checkpointing {
            t = t.with_gradient_checkpointing_strategy(s);
        }
        if self.require_grad {
            t = t.require_grad();
        }
        if self.distributed {
            t = t.set_distributed(id);
        }
        t
    }
}

/// Detached value of a parameter tensor (the inner tensor on autodiff devices).
pub(crate) fn detached<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    if t.is_autodiff() { t.inner() } else { t }
}

/// Moves `t` to `device` unless it is there already.
pub(crate) fn on_device<const D: usize>(t: Tensor<D>, device: &burn::tensor::Device) -> Tensor<D> {
    if &t.device() == device { t } else { t.to_device(device) }
}
