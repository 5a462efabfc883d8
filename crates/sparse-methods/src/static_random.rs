//! Static sparse training: a random mask fixed for the whole run (the baseline
//! of every DST paper; "Static" in RigL's tables).
//!
//! The mask is uniformly random under the chosen distribution (uniform, ER,
//! ERK, ...) and pattern, and never changes.

use burn::config::Config;
use sparse_core::method::{InitContext, Method, SparseExecution};
use sparse_core::{Mask, Result};

use crate::registry::{BuildContext, MethodSpec, Switch};
use crate::scores::random_masks;

/// Static random sparsity has no switches: the distribution and pattern of the
/// run decide the mask.
#[derive(Config, Debug, PartialEq)]
pub struct StaticConfig {}

/// A fixed random mask.
#[derive(Clone, Debug, Default)]
pub struct StaticRandom;

impl Method for StaticRandom {
    fn name(&self) -> &'static str {
        "static"
    }

    fn init(&mut self, ctx: &mut InitContext<'_>, masks: &mut [Mask]) -> Result<()> {
        masks.clone_from_slice(&random_masks(ctx)?);
        Ok(())
    }

    fn sparse_execution(&self) -> SparseExecution {
        SparseExecution::Supported
    }
}

impl MethodSpec for StaticConfig {
    const NAME: &'static str = "static";
    const SUMMARY: &'static str = "a random mask, fixed (the static baseline of Evci et al. 2020)";
    const CHANGES_MASK: &'static str = "no";
    const SWITCHES: &'static [Switch] = &[];

    fn default_config() -> Self {
        Self::new()
    }

    fn build(&self, _: &BuildContext) -> Result<Box<dyn Method>> {
        Ok(Box::new(StaticRandom))
    }
}
