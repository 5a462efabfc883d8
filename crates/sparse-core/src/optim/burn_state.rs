//! Zeroing entries of any Burn optimizer's per-parameter state, through its record.
//!
//! Burn 0.22 keeps a `ModuleOptimizer`'s state private: a map from `ParamId` to a
//! type-erased per-parameter state (`DynState`), reachable only through
//! `to_record` / `load_record`. An `OptimizerRecord` is itself opaque, but it
//! serializes to burnpack bytes, and there every state tensor is stored under
//! `"{param_id}.{field}"` *with its parameter id* and in the parameter's shape
//! when it is element-wise (SGD's velocity, Adam's and AdamW's two moments,
//! RMSProp's square average, grad average and momentum buffer, AdaGrad's sum, and
//! the state of any user optimizer derived with `#[derive(RecordState)]`).
//!
//! [`zero_state`] therefore works for every optimizer without knowing its state
//! type: record → burnpack bytes → for each tensor of a listed parameter whose
//! shape equals the parameter's, set the bytes of the listed positions to zero
//! (the all-zero bit pattern is 0 in every float and integer dtype) → bytes →
//! record → `load_record`. Scalars (Adam's step count, ...) and the parameter
//! paths that route a parameter to its group's optimizer go back unchanged;
//! tensors of another shape (Adafactor's factored row and column statistics,
//! L-BFGS's history) have no per-weight entry and are left as they are, as are
//! quantized state tensors.
//!
//! Cost: `to_record` copies the whole optimizer state to the host, the burnpack
//! round trip copies it twice more on the host, and `load_record` uploads it
//! again (on the default device; Burn moves each state to its parameter's device
//! at that parameter's next step). Call it only at topology updates (every ΔT
//! steps), where it is linear in the size of the optimizer state, not per step.

use std::collections::HashMap;

use burn::module::ParamId;
use burn::optim::{ModuleOptimizer, OptimizerRecord};
use burn_pack::{Bytes, DType, Reader, Writer};

use crate::error::{Result, SparseError};
use crate::mask::Mask;

/// One parameter whose state entries are zeroed where `keep` is inactive.
#[derive(Clone, Copy, Debug)]
pub struct StateKeep<'a> {
    /// The parameter.
    pub id: ParamId,
    /// Its shape (only state tensors of exactly this shape are touched).
    pub shape: &'a [usize],
    /// Flattened (row-major) positions whose state is kept; all others become 0.
    pub keep: &'a Mask,
}

/// Zeroes, in `optim`'s state, every entry of each listed parameter where its
/// `keep` mask is inactive, and returns how many state tensors were changed.
/// Leaves `optim` unchanged when that number is 0 or on error.
pub fn zero_state(optim: &mut ModuleOptimizer, params: &[StateKeep<'_>]) -> Result<usize> {
    if params.is_empty() {
        return Ok(0);
    }
    let by_id: HashMap<u64, &StateKeep<'_>> = params.iter().map(|p| (p.id.val(), p)).collect();
    let bytes = optim.to_record().into_bytes().map_err(record_error)?;
    let reader = Reader::from_bytes(bytes).map_err(record_error)?;
    let scalars = reader.scalars().clone();
    let metadata = reader.metadata().clone();
    let mut changed = 0;
    let mut tensors = Vec::new();
    for tensor in reader.into_tensors().map_err(record_error)? {
        let target = tensor.param_id.and_then(|id| by_id.get(&id));
        match target {
            Some(p) if tensor.shape.as_slice() == p.shape && element_wise(tensor.dtype) => {
                tensors.push(zeroed(tensor, p.keep)?);
                changed += 1;
            }
            Some(_) => {
                tracing::debug!(name = %tensor.name, "optimizer state tensor not shaped like its parameter; left as is");
                tensors.push(tensor);
            }
            None => tensors.push(tensor),
        }
    }
    if changed == 0 {
        return Ok(0);
    }
    let mut writer = Writer::new(tensors);
    for (key, value) in &scalars {
        writer = writer.with_scalar(key, *value);
    }
    for (key, value) in &metadata {
        writer = writer.with_metadata(key, value);
    }
    let record = OptimizerRecord::from_bytes(writer.into_bytes().map_err(record_error)?).map_err(record_error)?;
    *optim = optim.clone().load_record(record);
    Ok(changed)
}

/// Whether each element has its own bytes (not packed or quantized).
fn element_wise(dtype: DType) -> bool {
    !matches!(dtype, DType::QFloat(_)) && dtype.size() > 0
}

/// `tensor` with the bytes of every position inactive in `keep` set to zero.
fn zeroed(tensor: burn_pack::Tensor, keep: &Mask) -> Result<burn_pack::Tensor> {
    let (name, dtype, shape, param_id, bytes) = tensor.into_parts().map_err(record_error)?;
    let size = dtype.size();
    let mut raw = bytes.to_vec();
    if raw.len() != keep.len() * size {
        return Err(SparseError::OptimizerRecord(format!(
            "state tensor `{name}` has {} bytes, expected {} values of {size} bytes",
            raw.len(),
            keep.len()
        )));
    }
    for (i, value) in raw.chunks_exact_mut(size).enumerate() {
        if !keep.get(i) {
            value.fill(0);
        }
    }
    Ok(burn_pack::Tensor::new(
        name,
        dtype,
        shape,
        param_id,
        Bytes::from_bytes_vec(raw),
    ))
}

fn record_error(e: impl std::fmt::Display) -> SparseError {
    SparseError::OptimizerRecord(e.to_string())
}
