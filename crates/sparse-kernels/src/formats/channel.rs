//! Whole-neuron (channel) pruning as a physically smaller dense layer: the kept
//! output neurons and their dense weights. Pruned neurons output their bias only.

use sparse_core::{Mask, SparseLayer};

use crate::error::{KernelError, Result};

/// The kept neurons of a channel-pruned layer and its smaller dense weight.
#[derive(Clone, Debug, PartialEq)]
pub struct Pruned {
    /// Kept output neurons, ascending.
    pub kept: Vec<u32>,
    /// The kept neurons' weights in the layer's Burn layout with the neuron
    /// dimension shrunk (Linear `[d_in, kept]`, conv `[kept, c_in/groups, kh, kw]`).
    pub weights: Vec<f32>,
    /// Shape of `weights`.
    pub shape: Vec<usize>,
}

/// Keeps the neurons with any active weight; errors if one of them is partly active.
pub fn build(layer: &SparseLayer, mask: &Mask, weights: &[f32]) -> Result<Pruned> {
    let mut kept = Vec::new();
    for o in 0..layer.neurons() {
        let on = layer.neuron_indices(o).filter(|&f| mask.get(f)).count();
        if on == 0 {
            continue;
        }
        if on != layer.fan_in() {
            return Err(KernelError::PatternMismatch {
                layer: layer.path.clone(),
                format: "channel",
                detail: format!("neuron {o} has {on} of {} inputs active", layer.fan_in()),
                fix: "train the layer with the channel pattern, or export it as csr".into(),
            });
        }
        kept.push(o as u32);
    }
    let mut shape = layer.shape.clone();
    let w = match layer.kind {
        sparse_core::LayerKind::Linear => {
            shape[1] = kept.len();
            let (d_in, d_out) = (layer.shape[0], layer.shape[1]);
            (0..d_in)
                .flat_map(|i| kept.iter().map(move |&o| weights[i * d_out + o as usize]))
                .collect()
        }
        sparse_core::LayerKind::Conv => {
            shape[0] = kept.len();
            let per = layer.numel() / layer.shape[0];
            kept.iter()
                .flat_map(|&o| weights[o as usize * per..(o as usize + 1) * per].iter().copied())
                .collect()
        }
    };
    Ok(Pruned {
        kept,
        weights: w,
        shape,
    })
}
