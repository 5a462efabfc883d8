//! The dense baseline: the same model trained without masks, through the same
//! hook (so the optimizer, the data and every number are computed the same way
//! as for the sparse methods it is compared with).

use burn::config::Config;
use sparse_core::method::{InitContext, Method};
use sparse_core::{Mask, Result};

use crate::registry::{BuildContext, MethodSpec, Switch};

/// The dense baseline has no switches.
#[derive(Config, Debug, PartialEq)]
pub struct DenseConfig {}

/// No weight is ever pruned (the run's sparsity is 0).
#[derive(Clone, Debug, Default)]
pub struct Dense;

impl Method for Dense {
    fn name(&self) -> &'static str {
        "dense"
    }

    /// Keeps every weight: the masks come in all-active.
    fn init(&mut self, _: &mut InitContext<'_>, _: &mut [Mask]) -> Result<()> {
        Ok(())
    }

    fn is_dense(&self) -> bool {
        true
    }
}

impl MethodSpec for DenseConfig {
    const NAME: &'static str = "dense";
    const SUMMARY: &'static str = "no pruning: the baseline every table compares with";
    const CHANGES_MASK: &'static str = "no (no mask)";
    const SWITCHES: &'static [Switch] = &[];

    fn default_config() -> Self {
        Self::new()
    }

    fn build(&self, _: &BuildContext) -> Result<Box<dyn Method>> {
        Ok(Box::new(Dense))
    }

    fn is_dense() -> bool {
        true
    }
}
