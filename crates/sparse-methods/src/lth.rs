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
use serde::{Deserialize, Serialize};
use sparse_core::method::{InitContext, Method};
use sparse_core::{Mask, OptimizerConfig, Plan, Result, RoundDriver, Rounds, SparseError, Sparsifier, SparsityConfig};

pub use sparse_core::Rewind;

use crate::registry::{BuildContext, MethodSpec, Switch};
use crate::scores::active_magnitudes;

/// What the weights are reset to after pruning (the `rewind` switch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RewindKind {
    /// To the weights at `rewind_step` of the first round (0 = the original ticket).
    #[serde(rename = "step")]
    Step,
    /// Keep the trained weights (pruning + fine-tuning).
    #[serde(rename = "finetune")]
    FineTune,
    /// Fresh random weights (the random re-initialisation control).
    #[serde(rename = "reinit")]
    Reinit,
}

/// Lottery-ticket settings.
#[derive(Config, Debug, PartialEq)]
pub struct LthConfig {
    /// Fraction of the remaining weights pruned per round (p).
    #[config(default = 0.2)]
    pub prune_fraction: f64,
    /// Pruning rounds after the dense round.
    #[config(default = 3)]
    pub rounds: usize,
    /// Rank globally over all sparse layers (else per layer).
    #[config(default = true)]
    pub global: bool,
    /// The reset after pruning.
    #[config(default = "RewindKind::Step")]
    pub rewind: RewindKind,
    /// The rewind step k (with `rewind = "step"`; 0 = the original ticket).
    #[config(default = 0)]
    pub rewind_step: u64,
}

/// One-shot magnitude pruning + fine-tuning settings (the prune fraction is the
/// run's target sparsity).
#[derive(Config, Debug, PartialEq)]
pub struct OneShotConfig {
    /// Rank globally over all sparse layers (else per layer).
    #[config(default = true)]
    pub global: bool,
}

/// Lottery tickets: dense first round, then pruning rounds with a fixed mask.
#[derive(Clone, Debug)]
pub struct Lth {
    name: &'static str,
    prune_fraction: f64,
    rounds: usize,
    global: bool,
    rewind: Rewind,
}

impl Lth {
    /// Lottery tickets with `config`.
    pub fn new(config: &LthConfig) -> Result<Self> {
        if !(config.prune_fraction > 0.0 && config.prune_fraction < 1.0) || config.rounds == 0 {
            return Err(SparseError::method(
                "lth",
                format!(
                    "prune_fraction {} must be in (0, 1) and rounds {} at least 1",
                    config.prune_fraction, config.rounds
                ),
            ));
        }
        Ok(Self {
            name: "lth",
            prune_fraction: config.prune_fraction,
            rounds: config.rounds,
            global: config.global,
            rewind: match config.rewind {
                RewindKind::Step => Rewind::Step {
                    step: config.rewind_step,
                },
                RewindKind::FineTune => Rewind::FineTune,
                RewindKind::Reinit => Rewind::Reinit,
            },
        })
    }

    /// One-shot pruning to `sparsity` after dense training, then fine-tuning.
    pub fn one_shot(config: &OneShotConfig, sparsity: f64) -> Result<Self> {
        let mut lth = Self::new(
            &LthConfig::new()
                .with_rounds(1)
                .with_prune_fraction(sparsity)
                .with_global(config.global)
                .with_rewind(RewindKind::FineTune),
        )
        .map_err(|_| SparseError::method("one-shot", format!("the target sparsity {sparsity} must be in (0, 1)")))?;
        lth.name = "one-shot";
        Ok(lth)
    }
}

impl Method for Lth {
    fn name(&self) -> &'static str {
        self.name
    }

    /// The first round is dense: the masks stay all-active.
    fn init(&mut self, _ctx: &mut InitContext<'_>, _masks: &mut [Mask]) -> Result<()> {
        Ok(())
    }

    fn rounds(&self) -> Option<&dyn Rounds> {
        Some(self)
    }
}

impl Rounds for Lth {
    fn count(&self) -> usize {
        1 + self.rounds
    }

    fn rewind(&self) -> Rewind {
        self.rewind
    }

    fn prune(&self, round: usize, _plan: &Plan, weights: &[Vec<f32>], masks: &[Mask]) -> Result<Vec<Mask>> {
        Ok(prune_round(self.prune_fraction, self.global, weights, masks, round))
    }
}

/// The masks of round `round` (≥ 1): the largest active `|θ|` keeping
/// `round((1 − p)^round · N)` weights, globally or per layer.
pub fn prune_round(prune_fraction: f64, global: bool, weights: &[Vec<f32>], masks: &[Mask], round: usize) -> Vec<Mask> {
    let keep_fraction = (1.0 - prune_fraction).powi(round as i32);
    let scores = active_magnitudes(weights, masks);
    if global {
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

/// Runs `1 + config.rounds` rounds of training with your own loop.
/// `train(model, sparsifier, steps)` trains for the given step range (your loop,
/// data and learning-rate schedule); `fresh()` builds a newly initialised model
/// (for [`RewindKind::Reinit`]).
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
    let mut sparse = Sparsifier::new(&model, sparsity, Lth::new(config)?, optimizer)?;
    let model = sparse.init(model)?;
    let mut rounds = RoundDriver::new(&sparse, total_steps)?;
    let k = rounds.rewind_step();
    let mut model = train(model, &mut sparse, 0..k)?;
    rounds.remember(&model);
    model = train(model, &mut sparse, k..total_steps)?;
    while rounds.has_next() {
        model = rounds.next_round(&mut sparse, model, &mut fresh)?;
        model = train(model, &mut sparse, k..total_steps)?;
    }
    Ok(LthResult {
        model,
        masks: sparse.masks().to_vec(),
        densities: rounds.densities().to_vec(),
    })
}

impl MethodSpec for LthConfig {
    const NAME: &'static str = "lth";
    const SUMMARY: &'static str = "lottery tickets: iterative magnitude pruning with rewinding (Frankle & Carbin 2019)";
    const CHANGES_MASK: &'static str = "between rounds";
    const SWITCHES: &'static [Switch] = &[
        Switch::new("prune_fraction", "fraction of the remaining weights pruned per round"),
        Switch::new("rounds", "pruning rounds after the dense round"),
        Switch::new("global", "rank over all sparse layers (else per layer)"),
        Switch::new("rewind", "step, finetune or reinit: the reset after pruning"),
        Switch::new("rewind_step", "the rewind step k (rewind = step)"),
    ];

    fn default_config() -> Self {
        Self::new()
    }

    fn build(&self, _: &BuildContext) -> Result<Box<dyn Method>> {
        Ok(Box::new(Lth::new(self)?))
    }
}

impl MethodSpec for OneShotConfig {
    const NAME: &'static str = "one-shot";
    const SUMMARY: &'static str = "train dense, prune to the target once, fine-tune (Han et al. 2015)";
    const CHANGES_MASK: &'static str = "once";
    const SWITCHES: &'static [Switch] = &[Switch::new("global", "rank over all sparse layers (else per layer)")];

    fn default_config() -> Self {
        Self::new()
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Method>> {
        Ok(Box::new(Lth::one_shot(self, ctx.sparsity)?))
    }
}
