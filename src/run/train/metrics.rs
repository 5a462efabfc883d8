//! Training metrics read back from the device: per-step losses and correct
//! counts are kept as device tensors and read in groups (reading every step
//! would stall a GPU), then summed on the host in step order, so the sums are the
//! same whatever the grouping.

use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use super::divergence::Diverged;
use super::task::StepStats;

/// Batches whose statistics are read back from the device at once.
const GROUP: usize = 25;

/// The running sums of the current epoch (saved in checkpoints).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochSums {
    /// Σ loss × samples.
    pub loss_sum: f64,
    /// Correct predictions.
    pub correct: u64,
    /// Samples.
    pub seen: u64,
}

impl EpochSums {
    /// Mean loss so far.
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.seen.max(1) as f64
    }

    /// Accuracy so far.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.seen.max(1) as f64
    }
}

/// Step statistics not read back yet.
#[derive(Default)]
pub struct Pending {
    unread: Vec<(Tensor<1>, Tensor<1, Int>, u64)>,
    steps: Vec<u64>,
}

impl Pending {
    /// Keeps the statistics of `step` (0-based).
    pub fn push(&mut self, step: u64, stats: StepStats) {
        self.unread.push((stats.loss, stats.correct, stats.samples));
        self.steps.push(step);
    }

    /// Whether a group is complete.
    pub fn full(&self) -> bool {
        self.unread.len() >= GROUP
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.unread.is_empty()
    }

    /// Forgets unread statistics (a new round starting mid-epoch).
    pub fn clear(&mut self) {
        self.unread.clear();
        self.steps.clear();
    }

    /// Reads the pending statistics (one sync) into `sums`; a loss that is not
    /// finite stops the run with [`Diverged`] at its step (leaving `sums` as it was).
    pub fn read_into(&mut self, sums: &mut EpochSums) -> anyhow::Result<()> {
        if self.unread.is_empty() {
            return Ok(());
        }
        let unread = std::mem::take(&mut self.unread);
        let steps = std::mem::take(&mut self.steps);
        let sizes: Vec<u64> = unread.iter().map(|u| u.2).collect();
        let (losses, corrects): (Vec<_>, Vec<_>) = unread.into_iter().map(|(l, c, _)| (l, c)).unzip();
        let read_err = |e| anyhow::anyhow!("reading the loss back: {e:?}");
        let losses = Tensor::cat(losses, 0)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(read_err)?;
        let corrects = Tensor::cat(corrects, 0)
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .map_err(read_err)?;
        if let Some((step, loss)) = steps.iter().zip(&losses).find(|(_, l)| !l.is_finite()) {
            return Err(Diverged {
                step: step + 1,
                what: "training loss",
                value: f64::from(*loss),
                kept: String::new(),
            }
            .into());
        }
        for ((loss, correct), n) in losses.iter().zip(&corrects).zip(sizes) {
            sums.loss_sum += f64::from(*loss) * n as f64;
            sums.correct += *correct as u64;
            sums.seen += n;
        }
        Ok(())
    }
}
