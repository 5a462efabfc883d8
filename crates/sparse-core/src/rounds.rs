//! Training in rounds (iterative pruning, lottery tickets): train, prune,
//! reset the weights, train again with the mask fixed and a fresh optimizer.
//!
//! A method that trains in rounds says so through [`crate::Method::rounds`];
//! [`RoundDriver`] holds the bookkeeping between rounds (the rewind point, the
//! round counter, the densities) for any training loop: the library's
//! `sparse_methods::lth::run` and the `sparseburn` trainer both use it. A new
//! round restarts the same [`Sparsifier`] ([`Sparsifier::restart`]), so the plan,
//! the method and the statistics stay those of the run.

use burn::module::Module;

use crate::error::{Result, SparseError};
use crate::mask::Mask;
use crate::plan::Plan;
use crate::sparsifier::Sparsifier;

/// What the weights are reset to when a new round of training starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rewind {
    /// The weights at this step of the first round (0 = the original lottery ticket).
    Step {
        /// Rewind step k.
        step: u64,
    },
    /// Keep the trained weights (pruning + fine-tuning).
    FineTune,
    /// Fresh random weights (the random re-initialisation control).
    Reinit,
}

/// What a method that trains in rounds decides between them.
pub trait Rounds: Send + Sync {
    /// Rounds of training, the first (dense) one included.
    fn count(&self) -> usize;

    /// How the weights are reset before every round after the first.
    fn rewind(&self) -> Rewind;

    /// The masks of round `round` (≥ 1), from the weights and masks at the end
    /// of the round before.
    fn prune(&self, round: usize, plan: &Plan, weights: &[Vec<f32>], masks: &[Mask]) -> Result<Vec<Mask>>;
}

/// A copy of `model` whose BatchNorm running statistics are its own.
pub fn snapshot<M: Module>(model: &M) -> M {
    model.valid().train()
}

/// The bookkeeping between rounds. A loop trains steps `0..k` of the first
/// round, calls [`RoundDriver::remember`], trains `k..T`, then for every later
/// round calls [`RoundDriver::next_round`] and trains `k..T` again, where
/// `k = rewind_step()`.
#[derive(Debug)]
pub struct RoundDriver<M> {
    rewind: Rewind,
    count: usize,
    k: u64,
    round: usize,
    rewind_point: Option<M>,
    densities: Vec<f64>,
}

impl<M: Module> RoundDriver<M> {
    /// The driver for `sparse`'s method, in a run of `total_steps` per round.
    pub fn new(sparse: &Sparsifier, total_steps: u64) -> Result<Self> {
        let rounds = sparse
            .method()
            .rounds()
            .ok_or_else(|| SparseError::method(sparse.method().name(), "does not train in rounds"))?;
        let rewind = rounds.rewind();
        let k = match rewind {
            Rewind::Step { step } => step.min(total_steps),
            Rewind::FineTune | Rewind::Reinit => 0,
        };
        Ok(Self {
            rewind,
            count: rounds.count(),
            k,
            round: 0,
            rewind_point: None,
            densities: vec![sparse.report().density()],
        })
    }

    /// The step every round after the first starts from (`k`).
    pub fn rewind_step(&self) -> u64 {
        self.k
    }

    /// The round being trained (0 = the first).
    pub fn round(&self) -> usize {
        self.round
    }

    /// Whether another round follows the current one.
    pub fn has_next(&self) -> bool {
        self.round + 1 < self.count
    }

    /// Global density of the sparse layers at the start of every round so far.
    pub fn densities(&self) -> &[f64] {
        &self.densities
    }

    /// Remembers the model at the rewind step of the first round.
    pub fn remember(&mut self, model: &M) {
        if matches!(self.rewind, Rewind::Step { .. }) {
            self.rewind_point = Some(snapshot(model));
        }
    }

    /// Ends the current round: prunes, resets the weights as the method says
    /// (`fresh()` builds a newly initialised model for [`Rewind::Reinit`]) and
    /// restarts `sparse` at the rewind step. Returns the model to train next.
    pub fn next_round(&mut self, sparse: &mut Sparsifier, model: M, fresh: impl FnOnce() -> M) -> Result<M> {
        let round = self.round + 1;
        let weights = sparse.read_weights(&model)?;
        let rounds = sparse
            .method()
            .rounds()
            .ok_or_else(|| SparseError::method(sparse.method().name(), "does not train in rounds"))?;
        let masks = rounds.prune(round, sparse.plan(), &weights, sparse.masks())?;
        let start = match self.rewind {
            Rewind::Step { .. } => match &self.rewind_point {
                Some(point) => snapshot(point),
                None => {
                    return Err(SparseError::InvalidConfig(
                        "the rewind point was never remembered; call `RoundDriver::remember` at the rewind step".into(),
                    ));
                }
            },
            Rewind::FineTune => model,
            Rewind::Reinit => fresh(),
        };
        let model = sparse.restart(start, masks, self.k)?;
        self.round = round;
        self.densities.push(sparse.report().density());
        tracing::info!(round, density = sparse.report().density(), "new round");
        Ok(model)
    }
}
