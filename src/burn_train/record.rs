//! The sparse state inside a Burn `ModuleRecord`, so that burn-train's model
//! checkpoints carry it.
//!
//! A `ModuleRecord` is opaque, but it round-trips through burnpack bytes; the
//! sparse state ([`sparse_core::Sparsifier::to_bytes`], a safetensors file) is
//! added as one `u8` tensor named [`STATE_TENSOR`] with a fixed id, and taken
//! out again before the rest is applied to the model. Cost per checkpoint: the
//! record is encoded to burnpack bytes, decoded and encoded again on the host
//! (burn-train already brings it there to write it).

use burn::store::{ModuleRecord, RecordError};
use burn_pack::{Bytes, DType, Reader, Writer};

/// The name of the sparse state in a model record (not a parameter path of any
/// Burn module). To load such a checkpoint into the bare model, use
/// `record.allow_unused(true)`.
pub const STATE_TENSOR: &str = "__sparseburn_state";

/// The fixed parameter id of [`STATE_TENSOR`] ("sprsburn" in ASCII), so that a
/// record reads back to the same bytes (without one, Burn draws a random id).
const STATE_ID: u64 = u64::from_le_bytes(*b"sprsburn");

/// `record` with `state` added under [`STATE_TENSOR`].
pub fn embed(record: ModuleRecord, state: Vec<u8>) -> Result<ModuleRecord, RecordError> {
    let mut tensors = Reader::from_bytes(record.into_bytes()?)?.into_tensors()?;
    let len = state.len();
    tensors.push(burn_pack::Tensor::new(
        STATE_TENSOR.to_string(),
        DType::U8,
        vec![len],
        Some(STATE_ID),
        Bytes::from_bytes_vec(state),
    ));
    ModuleRecord::from_bytes(Writer::new(tensors).into_bytes()?)
}

/// Splits `record` into the model's part and the embedded sparse state, if any.
/// The model's part is a fresh record: it loads with the default settings
/// (strict validation, no partial or unused tensors, the saved dtypes).
pub fn extract(record: ModuleRecord) -> Result<(ModuleRecord, Option<Vec<u8>>), RecordError> {
    let tensors = Reader::from_bytes(record.into_bytes()?)?.into_tensors()?;
    let (mut state, mut rest) = (None, Vec::with_capacity(tensors.len()));
    for tensor in tensors {
        if tensor.name == STATE_TENSOR {
            let (_, _, _, _, bytes) = tensor.into_parts()?;
            state = Some(bytes.to_vec());
        } else {
            rest.push(tensor);
        }
    }
    Ok((ModuleRecord::from_bytes(Writer::new(rest).into_bytes()?)?, state))
}
