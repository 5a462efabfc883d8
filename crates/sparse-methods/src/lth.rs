//! Lottery tickets: iterative magnitude pruning with rewinding
//! (Frankle & Carbin, ICLR 2019; Frankle, Dziugaite, Roy & Carbin, ICML 2020), and
//! one-shot / iterative magnitude pruning with fine-tuning (Han, Pool, Tran &
//! Dally, NeurIPS 2015).
//!
//! A run is a sequence of rounds. Round 0 trains the dense network from `θ_0`,
//! remembering `θ_k` (the weights of every parameter, BatchNorm included, at the
//! rewind step `k`). Round `r ≥ 1`:
//!
//! 1. prune: keep the largest `|θ|` of the trained, unpruned weights so that
//!    `round((1 − p)^r · N)` remain — globally over all sparse layers (default, as
//!    open_lth) or per layer;
//! 2. reset: [`Rewind::Step`] `θ_k ⊙ M` (`k = 0` is the original lottery ticket,
//!    `k > 0` late rewinding), [`Rewind::FineTune`] keeps the trained weights (Han et
//!    al.; with one round and `p` = the target sparsity this is one-shot pruning +
//!    fine-tuning), [`Rewind::Reinit`] draws fresh random weights (the random
//!    re-initialisation control);
//! 3. train from step `k` (0 for fine-tuning and re-initialisation) to the end with
//!    the mask fixed and a fresh optimizer state.
//!
//! Deviation: open_lth removes `⌈p·remaining⌉` per round; we target
//! `round((1 − p)^r·N)` directly so densities never drift from `(1 − p)^r` (the two
//! differ by at most `r` weights).

use std::ops::Range;

use burn::config::Config;
use burn::module::Module;
use sparse_core::method::{InitContext, Method};
use sparse_core::{Mask, OptimizerConfig, Result, Sparsifier, SparsityConfig};

use crate::init::active_magnitudes;

/// What the weights are reset to after pruning.
#[derive(Config, Debug, PartialEq)]
pub enum Rewind {
    /// The weights at this step of round 0 (0 = original lottery ticket).
    Step {
        /// Rewind step k.
        step: u64,
    },
    /// Keep the trained weights (pruning + fine-tuning).
    FineTune,
    /// Fresh random weights (random re-initialisation control).
    Reinit,
}

/// Lottery-ticket settings.
#[derive(Config, Debug)]
pub struct LthConfig {
    /// Fraction of the remaining weights pruned per round.
    #[config(default = 0.2)]
    pub prune_fraction: f64,
    /// Pruning rounds after the dense round.
    #[config(default = 1)]
    pub rounds: usize,
    /// Rank globally over all sparse layers (else per layer).
    #[config(default = true)]
    pub global: bool,
    /// The reset after pruning.
    #[config(default = "Rewind::Step { step: 0 }")]
    pub rewind: Rewind,
}

/// The method of one round: a fixed mask (all active in round 0).
#[derive(Clone, Debug, Default)]
pub struct FixedMask {
    /// The masks of this round (`None`: dense).
    pub masks: Option<Vec<Mask>>,
}

impl Method for FixedMask {
    fn name(&self) -> &'static str {
        "lth"
    }

    fn init(&mut self, _ctx: &mut InitContext<'_>, masks: &mut [Mask]) -> Result<()> {
        if let Some(m) = &self.masks {
            masks.clone_from_slice(m);
        }
        Ok(())
    }
}

/// The masks of round `round` (≥ 1): the largest active `|θ|` keeping
/// `round((1 − p)^round · N)` weights, globally or per layer.
pub fn prune_round(config: &LthConfig, weights: &[Vec<f32>], masks: &[Mask], round: usize) -> Vec<Mask> {
    let keep_fraction = (1.0 - config.prune_fraction).powi(round as i32);
    let scores = active_magnitudes(weights, masks);
    if config.global {
        let total: usize = masks.iter().map(Mask::len).sum();
        let keep = ((keep_fraction * total as f64).round() as usize).min(masks.iter().map(Mask::count_ones).sum());
        sparse_core::select::global_top_k(&scores, keep)
    } else {
        scores
            .iter()
            .zip(masks)
            .map(|(s, m)| {
                let keep = ((keep_fraction * m.len() as f64).round() as usize).min(m.count_ones());
                Mask::from_indices(
                    m.len(),
                    sparse_core::select::top_k_dense(s, keep)
                        .into_iter()
                        .map(|i| i as usize),
                )
            })
            .collect()
    }
}

/// What a lottery-ticket run produced.
#[derive(Debug)]
pub struct LthResult<M> {
    /// The model after the last round.
    pub model: M,
    /// The masks after the last round.
    pub masks: Vec<Mask>,
    /// Global density of the sparse layers after each round (round 0 = 1.0).
    pub densities: Vec<f64>,
}

/// A copy of `model` whose BatchNorm running statistics are its own.
pub fn snapshot<M: Module>(model: &M) -> M {
    model.valid().train()
}

/// Runs `1 + config.rounds` rounds of training. `train(model, sparsifier, steps)`
/// trains for the given step range (the caller's loop, data and learning-rate
/// schedule); `fresh()` builds a newly initialised model (for [`Rewind::Reinit`]).
pub fn run<M, T, F>(
    config: &LthConfig,
    sparsity: SparsityConfig,
    optimizer: &OptimizerConfig,
    model: M,
    total_steps: u64,
    mut fresh: F,
    mut train: T,
) -> Result<LthResult<M>>
where
    M: Module,
    T: FnMut(M, &mut Sparsifier, Range<u64>) -> Result<M>,
    F: FnMut() -> M,
{
    let k = match config.rewind {
        Rewind::Step { step } => step.min(total_steps),
        _ => 0,
    };
    let mut sparse = Sparsifier::new(&model, sparsity.clone(), FixedMask::default(), optimizer)?;
    let mut model = sparse.init(model)?;
    model = train(model, &mut sparse, 0..k)?;
    let rewind_point = snapshot(&model);
    model = train(model, &mut sparse, k..total_steps)?;
    let mut masks = sparse.masks().to_vec();
    let mut densities = vec![sparse.report().density()];
    for round in 1..=config.rounds {
        let weights = sparse.read_weights(&model)?;
        masks = prune_round(config, &weights, &masks, round);
        let start = match config.rewind {
            Rewind::Step { .. } => snapshot(&rewind_point),
            Rewind::FineTune => model,
            Rewind::Reinit => fresh(),
        };
        let method = FixedMask {
            masks: Some(masks.clone()),
        };
        sparse = Sparsifier::new(&start, sparsity.clone(), method, optimizer)?;
        model = sparse.init(start)?;
        sparse.set_step(k);
        densities.push(sparse.report().density());
        tracing::info!(round, density = sparse.report().density(), "lottery-ticket round");
        model = train(model, &mut sparse, k..total_steps)?;
    }
    Ok(LthResult {
        model,
        masks,
        densities,
    })
}
