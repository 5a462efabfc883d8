//! [`CompactTwin`]: a model that has a sparse-execution twin for training,
//! and the moves between the two (the masked-dense model holds checkpoints,
//! the final weights and export; the twin takes the steps).

use sparse_core::Sparsifier;
use sparse_kernels::KernelError;
use sparse_kernels::train::CompactModel;

use crate::{Classifier, CompactCnn, CompactMlp, CompactResNet, Mlp, ResNet, SmallCnn};

/// A model with a sparse-execution twin ([`CompactModel`]).
pub trait CompactTwin: Classifier + Sized + 'static {
    /// The twin: the same layers, the sparse ones as their active values.
    type Compact: CompactModel + Classifier + 'static;

    /// The twin of this model under the masks of `sparse`, on its device.
    fn to_compact(&self, sparse: &Sparsifier) -> Result<Self::Compact, KernelError>;

    /// `self` (e.g. fresh from its config) with the weights of `compact`.
    fn with_compact(self, compact: &Self::Compact) -> Result<Self, KernelError>;
}

impl CompactTwin for Mlp {
    type Compact = CompactMlp;

    fn to_compact(&self, sparse: &Sparsifier) -> Result<CompactMlp, KernelError> {
        CompactMlp::from_dense(self, sparse)
    }

    fn with_compact(self, compact: &CompactMlp) -> Result<Self, KernelError> {
        compact.to_dense(self)
    }
}

impl CompactTwin for SmallCnn {
    type Compact = CompactCnn;

    fn to_compact(&self, sparse: &Sparsifier) -> Result<CompactCnn, KernelError> {
        CompactCnn::from_dense(self, sparse)
    }

    fn with_compact(self, compact: &CompactCnn) -> Result<Self, KernelError> {
        compact.to_dense(self)
    }
}

impl CompactTwin for ResNet {
    type Compact = CompactResNet;

    fn to_compact(&self, sparse: &Sparsifier) -> Result<CompactResNet, KernelError> {
        CompactResNet::from_dense(self, sparse)
    }

    fn with_compact(self, compact: &CompactResNet) -> Result<Self, KernelError> {
        compact.to_dense(self)
    }
}
