//! SNIP: Single-shot Network Pruning based on connection sensitivity
//! (Lee, Ajanthan & Torr, ICLR 2019).
//!
//! At initialisation, on a batch of data, every weight gets the saliency
//!
//! ```text
//! s_j = |g_j · θ_j|,   g = ∂L/∂θ
//! ```
//!
//! (the paper normalises by `Σ_k |g_k θ_k|`, which does not change the ranking) and
//! the highest saliencies are kept; the mask then stays fixed.
//!
//! The paper keeps the global top-k (`snip-public`, `create_sparse_mask`): the
//! method's [`SparsityDefaults`] make a sparseburn run use `Distribution::Global`
//! unless it sets another; library users set it in their `SparsityConfig`. rigl's
//! implementation (`SparseSnipOptimizer`) ranks per layer with the densities of a
//! distribution (uniform or ERK): use that distribution. Initialise with
//! `Sparsifier::init_with` so the method can compute gradients.
//!
//! Remaining differences to `snip-public`: it ranks every tensor whose name holds
//! `w` or `b`, so the (zero-initialised) biases are ranked too, score 0 and are
//! pruned; ours ranks the sparse weights only. It scores one weight draw and trains
//! an independently drawn copy; ours scores the model's own initial weights. Its
//! batch is 100 examples; ours is the run's first optimizer step's samples
//! (`batch_size`, times `K` with gradient accumulation: the simulated batch).

use burn::config::Config;
use sparse_core::method::{GradRequest, InitContext, Method};
use sparse_core::{Mask, Result};

use crate::registry::{BuildContext, MethodSpec, SparsityDefaults, Switch};

/// SNIP has no switches: the run's first batch and distribution decide the mask.
#[derive(Config, Debug, PartialEq)]
pub struct SnipConfig {}

/// SNIP.
#[derive(Clone, Debug, Default)]
pub struct Snip;

/// `|g ⊙ θ|` per layer.
pub fn snip_scores(weights: &[Vec<f32>], grads: &[Vec<f32>]) -> Vec<Vec<f32>> {
    weights
        .iter()
        .zip(grads)
        .map(|(w, g)| w.iter().zip(g).map(|(w, g)| (w * g).abs()).collect())
        .collect()
}

impl Method for Snip {
    fn name(&self) -> &'static str {
        "snip"
    }

    fn init(&mut self, ctx: &mut InitContext<'_>, masks: &mut [Mask]) -> Result<()> {
        let grads = ctx.oracle()?.gradients(None, &GradRequest::default())?;
        let scores = snip_scores(ctx.weights(), &grads);
        masks.clone_from_slice(&ctx.plan().select(&scores, ctx.plan().sparsity())?);
        Ok(())
    }

    fn needs_data_for_init(&self) -> bool {
        true
    }
}

impl MethodSpec for SnipConfig {
    const NAME: &'static str = "snip";
    const SUMMARY: &'static str = "prune at initialisation by the saliency g·θ (Lee et al. 2019)";
    const CHANGES_MASK: &'static str = "no";
    const NEEDS_DATA: &'static str = "one batch";
    const SWITCHES: &'static [Switch] = &[];

    /// The paper ranks globally (snip-public `create_sparse_mask`).
    fn sparsity_defaults() -> SparsityDefaults {
        SparsityDefaults {
            distribution: Some(sparse_core::Distribution::Global),
            ..SparsityDefaults::default()
        }
    }

    fn default_config() -> Self {
        Self::new()
    }

    fn build(&self, _: &BuildContext) -> Result<Box<dyn Method>> {
        Ok(Box::new(Snip))
    }
}
