//! A sparsifiable weight: where it lives in the model, its shape, and the
//! geometry that patterns and distributions need (neurons, fan-in).

use burn::module::ParamId;
use serde::{Deserialize, Serialize};

/// The kind of layer a sparse weight belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LayerKind {
    /// Burn `Linear`: weight `[d_input, d_output]` (transposed relative to PyTorch).
    Linear,
    /// Burn `Conv1d/2d/3d`: weight `[c_out, c_in / groups, k...]`.
    Conv,
}

/// Structural roles used by filters and distributions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roles {
    /// The first conv/linear weight in the model's declaration order.
    pub first: bool,
    /// The last conv/linear weight in the model's declaration order.
    pub last: bool,
    /// A conv with one input channel per group that is not the first layer
    /// (depthwise in MobileNets). Burn does not expose `groups` to visitors,
    /// so this is inferred from the shape; override with path filters.
    pub depthwise: bool,
}

/// One sparsifiable weight tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SparseLayer {
    /// Dotted path, as Burn's records and `ModuleOptimizer` spell it
    /// (e.g. `layer1.blocks.0.conv1.weight`).
    pub path: String,
    /// The parameter id in the live model (changes when a model is rebuilt;
    /// the path does not).
    pub param_id: ParamId,
    /// The weight's shape.
    pub shape: Vec<usize>,
    /// Linear or convolution.
    pub kind: LayerKind,
    /// First/last/depthwise.
    pub roles: Roles,
}

impl SparseLayer {
    /// A Linear weight `[d_input, d_output]` (not bound to a model; for tests and tools).
    pub fn linear(path: &str, d_input: usize, d_output: usize) -> Self {
        Self {
            path: path.into(),
            param_id: ParamId::new(),
            shape: vec![d_input, d_output],
            kind: LayerKind::Linear,
            roles: Roles::default(),
        }
    }

    /// A convolution weight `[c_out, c_in / groups, k...]` (not bound to a model).
    pub fn conv(path: &str, shape: &[usize]) -> Self {
        Self {
            path: path.into(),
            param_id: ParamId::new(),
            shape: shape.to_vec(),
            kind: LayerKind::Conv,
            roles: Roles::default(),
        }
    }

    /// Number of weights.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Output neurons (Linear: `d_output`; conv: `c_out`).
    pub fn neurons(&self) -> usize {
        match self.kind {
            LayerKind::Linear => self.shape[1],
            LayerKind::Conv => self.shape[0],
        }
    }

    /// Input channels per group (Linear: `d_input`).
    pub fn in_channels(&self) -> usize {
        match self.kind {
            LayerKind::Linear => self.shape[0],
            LayerKind::Conv => self.shape[1],
        }
    }

    /// Kernel positions (product of the spatial kernel dims; 1 for Linear).
    pub fn kernel_positions(&self) -> usize {
        match self.kind {
            LayerKind::Linear => 1,
            LayerKind::Conv => self.shape[2..].iter().product(),
        }
    }

    /// Weights feeding one output neuron.
    pub fn fan_in(&self) -> usize {
        self.in_channels() * self.kernel_positions()
    }

    /// Flat index (in the tensor's row-major memory) of the `j`-th fan-in
    /// weight of neuron `o`.
    ///
    /// The fan-in order is *channel-last*: `j = position * c_in + channel`, so
    /// consecutive `j` run along input channels at one kernel position, the
    /// order N:M hardware groups use (NHWC im2col) and SR-STE's reference
    /// permutes to. For Linear it is the input index.
    pub fn flat(&self, o: usize, j: usize) -> usize {
        match self.kind {
            LayerKind::Linear => j * self.shape[1] + o,
            LayerKind::Conv => {
                let (cin, kpos) = (self.shape[1], self.kernel_positions());
                let (p, c) = (j / cin, j % cin);
                o * cin * kpos + c * kpos + p
            }
        }
    }

    /// Neuron of a flat index.
    pub fn neuron_of(&self, flat: usize) -> usize {
        match self.kind {
            LayerKind::Linear => flat % self.shape[1],
            LayerKind::Conv => flat / self.fan_in(),
        }
    }

    /// Flat indices of neuron `o`'s fan-in, in fan-in order.
    pub fn neuron_indices(&self, o: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.fan_in()).map(move |j| self.flat(o, j))
    }

    /// The dimensions ERK scores with: the whole shape (kernel included).
    pub fn erk_dims(&self) -> Vec<usize> {
        self.shape.clone()
    }

    /// The dimensions ER scores with: `(fan-in channels, neurons)` only.
    pub fn er_dims(&self) -> [usize; 2] {
        [self.in_channels(), self.neurons()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(kind: LayerKind, shape: &[usize]) -> SparseLayer {
        match kind {
            LayerKind::Linear => SparseLayer::linear("w", shape[0], shape[1]),
            LayerKind::Conv => SparseLayer::conv("w", shape),
        }
    }

    #[test]
    fn linear_geometry_follows_in_out_layout() {
        let l = layer(LayerKind::Linear, &[3, 2]);
        assert_eq!((l.neurons(), l.fan_in()), (2, 3));
        // weight[i][o] is at i * 2 + o
        assert_eq!(l.neuron_indices(1).collect::<Vec<_>>(), vec![1, 3, 5]);
        assert_eq!(l.neuron_of(5), 1);
    }

    #[test]
    fn conv_fan_in_is_channel_last_and_covers_the_neuron() {
        let l = layer(LayerKind::Conv, &[2, 3, 2, 2]);
        assert_eq!((l.neurons(), l.fan_in()), (2, 12));
        // position 0, channels 0..3 -> flat 0, 4, 8 for neuron 0
        let idx: Vec<usize> = l.neuron_indices(0).collect();
        assert_eq!(&idx[..3], &[0, 4, 8]);
        let mut sorted = idx.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..12).collect::<Vec<_>>());
        assert!(l.neuron_indices(1).all(|f| l.neuron_of(f) == 1));
    }
}
