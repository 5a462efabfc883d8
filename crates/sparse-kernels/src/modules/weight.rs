//! The device half of a sparse weight: its values as a parameter, next to the
//! host [`SparsePlan`] the kernels index with.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};

use crate::formats::Built;
use crate::plan::SparsePlan;

/// Values (trainable) and plan (host indices, not saved by Burn's records:
/// use the sparse model's own serialisation).
#[derive(Module, Debug)]
pub struct SparseWeight {
    /// The stored values, in the plan's storage order.
    pub values: Param<Tensor<1>>,
    /// Indices and geometry.
    #[module(skip)]
    pub plan: SparsePlan,
}

impl SparseWeight {
    /// Uploads `built` to `device`.
    pub fn new(built: Built, device: &Device) -> Self {
        let n = built.values.len();
        Self {
            values: Param::from_tensor(Tensor::from_data(TensorData::new(built.values, [n]), device)),
            plan: built.plan,
        }
    }
}
