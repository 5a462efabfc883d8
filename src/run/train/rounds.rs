//! Runs that train in rounds (iterative pruning: lottery tickets, one-shot
//! pruning): the trainer owns the loop; the method decides the masks of each
//! round and how the weights are reset ([`sparse_core::Rounds`]);
//! [`RoundDriver`] keeps the rewind point. The same `Sparsifier` carries the
//! run from round to round.

use burn::module::Module;
use sparse_core::{RoundDriver, Sparsifier};

use super::runner::Runner;
use super::task::Task;

/// Trains every round of `sparse`'s method: the first from step 0, the others
/// from the rewind step. `make()` builds a fresh model (for re-initialisation).
pub fn train_rounds<M: Module, T: Task<M>>(
    runner: &mut Runner<T>,
    sparse: &mut Sparsifier,
    model: M,
    total_steps: u64,
    make: &dyn Fn() -> M,
) -> anyhow::Result<M> {
    let mut driver = RoundDriver::new(sparse, total_steps)?;
    let k = driver.rewind_step();
    let mut model = runner.train_range(model, sparse, 0..k)?;
    driver.remember(&model);
    model = runner.train_range(model, sparse, k..total_steps)?;
    while driver.has_next() {
        model = driver.next_round(sparse, model, make)?;
        runner.start_round(driver.round(), k);
        model = runner.train_range(model, sparse, k..total_steps)?;
    }
    Ok(model)
}
