//! The optimizer state of a model in sparse execution, converted to and from
//! the dense layout of its masked-dense twin, so that either execution
//! resumes from either's checkpoint: the moments of a layer's values (keyed
//! by `….values`) scattered into its weight's shape (keyed by `….weight`,
//! zeros at inactive positions, which is what the masked-dense optimizer
//! holds there), and gathered back.

use sparse_core::optim::SavedParamState;

use super::compact_linear::CompactLinear;
use super::compact_step::CompactModel;
use crate::error::Result;

/// `states` (keyed by the parameters of `model`) in the dense layout; a
/// convolution's bias is re-keyed to the dense model's path, the states of
/// other parameters (linear biases, batch norms) pass unchanged.
pub fn dense_state<M: CompactModel>(model: &M, states: Vec<SavedParamState>) -> Result<Vec<SavedParamState>> {
    let layers = model.compact_layers();
    let layer_of = |path: &str| layers.iter().find(|l| l.values_path() == path).copied();
    let states = rekey_biases(states, &layers, true);
    convert(states, layer_of, |l| l.layer().path.clone(), CompactLinear::scatter)
}

/// `states` in the dense layout (from a checkpoint) for `model`, whose
/// layers' masks are the checkpoint's.
pub fn compact_state<M: CompactModel>(model: &M, states: Vec<SavedParamState>) -> Result<Vec<SavedParamState>> {
    let layers = model.compact_layers();
    let layer_of = |path: &str| layers.iter().find(|l| l.layer().path == path).copied();
    let states = rekey_biases(states, &layers, false);
    convert(states, layer_of, CompactLinear::values_path, CompactLinear::gather)
}

/// `states` with each layer's bias re-keyed from its compact path to its
/// dense one (`to_dense`), or back.
fn rekey_biases(mut states: Vec<SavedParamState>, layers: &[&CompactLinear], to_dense: bool) -> Vec<SavedParamState> {
    for layer in layers {
        let (compact, dense) = layer.bias_paths();
        let (from, to) = if to_dense { (compact, dense) } else { (dense, compact) };
        if let Some(s) = states.iter_mut().find(|s| s.path == from) {
            s.path = to;
        }
    }
    states
}

fn convert<'a>(
    states: Vec<SavedParamState>,
    layer_of: impl Fn(&str) -> Option<&'a CompactLinear>,
    path_of: impl Fn(&CompactLinear) -> String,
    map: impl Fn(&CompactLinear, &[f32]) -> Result<Vec<f32>>,
) -> Result<Vec<SavedParamState>> {
    states
        .into_iter()
        .map(|s| {
            let Some(layer) = layer_of(&s.path) else {
                return Ok(s);
            };
            let slots = s.slots.iter().map(|slot| map(layer, slot)).collect::<Result<_>>()?;
            Ok(SavedParamState {
                path: path_of(layer),
                time: s.time,
                slots,
            })
        })
        .collect()
}
