//! The resolved sparsity plan of a run: which layers, how dense each one is,
//! and under which pattern; and the one selection routine every method uses.

use burn::config::Config;

use crate::discovery::LayerFilter;
use crate::distribution::{Allocation, Distribution};
use crate::error::{Result, SparseError, check_sparsity};
use crate::layer::SparseLayer;
use crate::mask::Mask;
use crate::pattern::Pattern;
use crate::select::global_top_k;

/// What to make sparse, how much, and in which shape.
#[derive(Config, Debug, PartialEq)]
pub struct SparsityConfig {
    /// Target sparsity in `[0, 1)` (0.9 = 90% zeros). Ignored by N:M, which fixes it.
    #[config(default = 0.9)]
    pub sparsity: f64,
    /// Layer-wise distribution.
    #[config(default = "Distribution::Erk { power_scale: 1.0 }")]
    pub distribution: Distribution,
    /// Mask pattern.
    #[config(default = "Pattern::Unstructured")]
    pub pattern: Pattern,
    /// Which weights are sparse.
    #[config(default = "LayerFilter::new()")]
    pub filter: LayerFilter,
    /// Seed of every random choice (masks, regrowth).
    #[config(default = 0)]
    pub seed: u64,
}

/// A validated [`SparsityConfig`] bound to a model's layers.
#[derive(Clone, Debug)]
pub struct Plan {
    layers: Vec<SparseLayer>,
    config: SparsityConfig,
}

impl Plan {
    /// Validates `config` against `layers`.
    ///
    /// Errors name the layer: a pattern that does not fit, a structured pattern
    /// that rounds a layer to zero, N:M with a different target sparsity, or a global
    /// distribution with a per-group pattern.
    pub fn new(layers: Vec<SparseLayer>, config: SparsityConfig) -> Result<Self> {
        if layers.is_empty() {
            return Err(SparseError::NoLayers);
        }
        if let Some(d) = config.pattern.fixed_density() {
            let fixed = 1.0 - d;
            if (config.sparsity - fixed).abs() > 1e-9 {
                return Err(SparseError::InvalidConfig(format!(
                    "pattern {} fixes the sparsity at {fixed}, but the target is {}; set the sparsity to {fixed}",
                    config.pattern.name(),
                    config.sparsity
                )));
            }
        }
        if config.distribution == Distribution::Global && config.pattern != Pattern::Unstructured {
            return Err(SparseError::InvalidConfig(format!(
                "the global distribution ranks single weights across layers and cannot keep the {} pattern; use ERK or uniform with it",
                config.pattern.name()
            )));
        }
        let plan = Self { layers, config };
        plan.counts(plan.config.sparsity)?;
        Ok(plan)
    }

    /// The layers, in model order.
    pub fn layers(&self) -> &[SparseLayer] {
        &self.layers
    }

    /// The configuration.
    pub fn config(&self) -> &SparsityConfig {
        &self.config
    }

    /// The target sparsity.
    pub fn sparsity(&self) -> f64 {
        self.config.sparsity
    }

    /// The pattern.
    pub fn pattern(&self) -> &Pattern {
        &self.config.pattern
    }

    /// Whether counts come from a global ranking.
    pub fn is_global(&self) -> bool {
        self.config.distribution == Distribution::Global
    }

    /// Per-layer nonzero counts at `sparsity`, on each pattern's grid. For the global
    /// distribution this is the uniform split of the total (the real split comes
    /// out of [`Plan::select`]).
    pub fn counts(&self, sparsity: f64) -> Result<Vec<usize>> {
        self.layers
            .iter()
            .zip(self.raw_counts(sparsity)?)
            .map(|(l, c)| self.config.pattern.feasible_count(l, c))
            .collect()
    }

    /// Per-layer nonzero counts of the distribution before the pattern rounds them.
    pub fn raw_counts(&self, sparsity: f64) -> Result<Vec<usize>> {
        check_sparsity(sparsity)?;
        Ok(match self.config.distribution.allocate(&self.layers, sparsity)? {
            Allocation::PerLayer(c) => c,
            Allocation::Global(_) => Distribution::Uniform {
                dense_first_layer: false,
            }
            .allocate(&self.layers, sparsity)
            .map(|a| match a {
                Allocation::PerLayer(c) => c,
                Allocation::Global(_) => unreachable!("uniform is per layer"),
            })?,
        })
    }

    /// The best weights by `scores` at `sparsity`: per layer under the pattern, or
    /// one ranking over all layers for the global distribution (ties to the earlier
    /// layer, then the lower flat index).
    ///
    /// Use `f32::NEG_INFINITY` for weights that must not be chosen unless needed
    /// (e.g. already pruned ones); `NaN` ranks lowest.
    pub fn select(&self, scores: &[Vec<f32>], sparsity: f64) -> Result<Vec<Mask>> {
        assert_eq!(scores.len(), self.layers.len(), "one score vector per layer");
        if let Allocation::Global(total) = self.config.distribution.allocate(&self.layers, sparsity)? {
            return Ok(global_top_k(scores, total));
        }
        let counts = self.counts(sparsity)?;
        Ok(self
            .layers
            .iter()
            .zip(scores)
            .zip(counts)
            .map(|((l, s), c)| self.config.pattern.select(l, s, c))
            .collect())
    }
}

impl Plan {
    /// Replaces the layers by the same layers bound to another model instance
    /// (new parameter ids).
    pub(crate) fn rebind(&mut self, layers: Vec<SparseLayer>) {
        debug_assert!(
            layers
                .iter()
                .zip(&self.layers)
                .all(|(a, b)| a.path == b.path && a.shape == b.shape)
        );
        self.layers = layers;
    }
}
