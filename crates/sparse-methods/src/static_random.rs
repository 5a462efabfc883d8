//! Static sparse training: a random mask fixed for the whole run (the baseline
//! of every DST paper; "Static" in RigL's tables).
//!
//! The mask is uniformly random under the chosen distribution (uniform, ER,
//! ERK, ...) and pattern, and never changes.

use sparse_core::method::{InitContext, Method};
use sparse_core::{Mask, Result};

use crate::init::random_masks;

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
}
