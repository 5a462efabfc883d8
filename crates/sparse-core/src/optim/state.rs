//! The optimizer's per-parameter state: kept by parameter id, reset where masks
//! drop weights, exported to the host by path for checkpoints and imported back.

use std::collections::HashMap;

use burn::module::ParamId;
use burn::tensor::Tensor;

use super::MaskedOptimizer;
use crate::error::{Result, SparseError};

/// The optimizer state of one parameter.
#[derive(Clone, Debug)]
pub(super) struct ParamState {
    pub(super) path: String,
    pub(super) time: u64,
    pub(super) slots: Vec<Tensor<1>>,
}

/// A parameter's state copied to the host, keyed by its path (for saving).
#[derive(Clone, Debug, PartialEq)]
pub struct SavedParamState {
    /// Dotted parameter path.
    pub path: String,
    /// Steps taken.
    pub time: u64,
    /// Flattened state tensors (SGD: velocity; Adam: first, second moment).
    pub slots: Vec<Vec<f32>>,
}

impl MaskedOptimizer {
    /// Zeroes the state of every pruned position of the given weights (call after a
    /// topology update): `(parameter id, path, host mask, device mask)` each. State
    /// restored from a checkpoint and not yet moved to its device is masked on the host.
    pub fn reset_inactive(&mut self, changed: &[(ParamId, &str, &crate::mask::Mask, Tensor<1>)]) {
        for (id, path, mask, keep) in changed {
            if let Some(state) = self.states.get_mut(id) {
                // moved out first, so a backend may multiply in place
                let slots = std::mem::take(&mut state.slots);
                state.slots = slots.into_iter().map(|s| s * keep.clone()).collect();
            } else if let Some(saved) = self.pending.get_mut(*path) {
                for slot in &mut saved.slots {
                    mask.apply(slot);
                }
            }
        }
    }

    /// Forgets every parameter's state (a new training run).
    pub fn clear_state(&mut self) {
        self.states.clear();
        self.pending.clear();
    }

    /// Re-keys the state of parameters that got new ids (a rebuilt or reloaded
    /// model), by path.
    pub fn rekey(&mut self, ids_by_path: &HashMap<String, ParamId>) {
        let states = std::mem::take(&mut self.states);
        for (old, state) in states {
            let id = ids_by_path.get(&state.path).copied().unwrap_or(old);
            self.states.insert(id, state);
        }
    }

    /// The current state tensors of a parameter (flattened), if it has taken a step.
    pub fn state_of(&self, id: ParamId) -> Option<Vec<Tensor<1>>> {
        self.states.get(&id).map(|s| s.slots.clone())
    }

    /// Copies every parameter's state to the host, sorted by path.
    pub fn export(&self) -> Result<Vec<SavedParamState>> {
        let mut out: Vec<SavedParamState> = self
            .states
            .values()
            .map(|s| {
                Ok(SavedParamState {
                    path: s.path.clone(),
                    time: s.time,
                    slots: s
                        .slots
                        .iter()
                        .map(|t| crate::host::to_vec(t.clone()))
                        .collect::<Result<_>>()?,
                })
            })
            .collect::<Result<_>>()?;
        out.extend(self.pending.values().cloned());
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Replaces the state by saved state; each entry is moved to its parameter's
    /// device when that parameter next steps. `numels` gives every parameter's size
    /// by path, to reject state from another model.
    pub fn import(&mut self, saved: Vec<SavedParamState>, numels: &HashMap<String, usize>) -> Result<()> {
        let slots = self.config.slots();
        for s in &saved {
            let numel = numels.get(&s.path).ok_or_else(|| {
                SparseError::InvalidConfig(format!(
                    "optimizer state for `{}`, which this model does not have",
                    s.path
                ))
            })?;
            if s.slots.len() != slots || s.slots.iter().any(|v| v.len() != *numel) {
                return Err(SparseError::InvalidConfig(format!(
                    "optimizer state for `{}` does not fit: {} slots of {:?} values, expected {slots} of {numel}",
                    s.path,
                    s.slots.len(),
                    s.slots.iter().map(Vec::len).collect::<Vec<_>>()
                )));
            }
        }
        self.states.clear();
        self.pending = saved.into_iter().map(|s| (s.path.clone(), s)).collect();
        Ok(())
    }
}

impl MaskedOptimizer {
    /// Re-aligns the state of a parameter that is a vector of active values
    /// (a layer in sparse execution) to a new set of entries: new entry `i`
    /// takes old entry `map[i]`, or starts from zero state where `map[i]` is
    /// `None` (a regrown weight). The step count is kept. State restored from
    /// a checkpoint and not yet moved to its device (by `path`) is re-aligned
    /// on the host.
    pub fn realign(&mut self, id: ParamId, path: &str, map: &[Option<u32>]) {
        if let Some(state) = self.states.get_mut(&id) {
            let slots = std::mem::take(&mut state.slots);
            state.slots = slots.into_iter().map(|s| gather_or_zero(s, map)).collect();
        } else if let Some(saved) = self.pending.get_mut(path) {
            for slot in &mut saved.slots {
                *slot = map.iter().map(|m| m.map_or(0.0, |i| slot[i as usize])).collect();
            }
        }
    }
}

/// `t[map[i]]` for every `i`, 0 where `map[i]` is `None`.
fn gather_or_zero(t: Tensor<1>, map: &[Option<u32>]) -> Tensor<1> {
    let device = t.device();
    let zero_slot = t.dims()[0] as i32;
    let index: Vec<i32> = map.iter().map(|m| m.map_or(zero_slot, |i| i as i32)).collect();
    let index = Tensor::<1, burn::tensor::Int>::from_data(burn::tensor::TensorData::new(index, [map.len()]), &device);
    Tensor::cat(vec![t, Tensor::zeros([1], &device)], 0).select(0, index)
}
