//! Moving tensors between a device and host vectors.

use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{Result, SparseError};

/// Reads a float tensor into a flat host vector (row-major).
pub fn to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    let data = t
        .try_into_data()
        .map_err(|e| SparseError::TensorRead(format!("{e:?}")))?;
    let data = data.convert::<f32>();
    data.try_into_vec::<f32>()
        .map_err(|e| SparseError::TensorRead(format!("{e:?}")))
}

/// Builds a tensor of `dims` on `device` from a flat host vector.
pub fn from_vec<const D: usize>(values: Vec<f32>, dims: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, dims), device)
}
