//! Optimizer-level gradient accumulation (`[training] grad_accumulation`,
//! `--grad-accumulation K`): one optimizer step takes `K` consecutive
//! micro-batches of `batch_size` in the epoch's order (batches `t·K .. t·K + K − 1`
//! of the epoch for step `t` of it), scales each micro-batch's mean loss by `1/K`
//! and sums the gradients, so the step sees the gradient of the mean loss over
//! `K·batch_size` samples:
//!
//! ```text
//! ∇ (1/(K·b)) Σ_{i<K·b} ℓ_i = Σ_{j<K} (1/K) ∇ (1/b) Σ_{i∈batch j} ℓ_i
//! ```
//!
//! As condensed-sparsity's `training.simulated_batch_size` (`train_rigl.py`:
//! loss divided by `k`, optimizer and sparsity scheduler stepped every `k`-th
//! micro-batch). An epoch has `⌊batches/K⌋` optimizer steps; a trailing
//! incomplete group of micro-batches is dropped (the reference carries its
//! gradient into the next epoch, by not zeroing it). Every step counter — ΔT,
//! T_end, the learning-rate schedule, checkpoints, progress and metrics, the
//! dense-gradient window — counts optimizer steps. BatchNorm statistics are
//! those of each micro-batch (a separate forward pass each, as the reference).
//! The summing is Burn's `GradientsAccumulator`.

use anyhow::bail;
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};

use super::task::{MicroBatch, StepStats, Task};

/// How the micro-batches of an epoch group into optimizer steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accumulation {
    micro_batches: u64,
    batches_per_epoch: u64,
    batch_size: usize,
}

impl Accumulation {
    /// `micro_batches` (K) per optimizer step over epochs of `batches_per_epoch`
    /// batches of `batch_size`; K must be at least 1 and at most the batches of an epoch.
    pub fn new(micro_batches: usize, batches_per_epoch: u64, batch_size: usize) -> anyhow::Result<Self> {
        let k = micro_batches as u64;
        if k == 0 {
            bail!("grad_accumulation must be at least 1 (1 = no accumulation); set --grad-accumulation 1 or more");
        }
        if k > batches_per_epoch {
            bail!(
                "grad_accumulation {k} needs {k} batches per optimizer step, but an epoch has {batches_per_epoch} batch(es) of {batch_size}; lower --grad-accumulation to at most {batches_per_epoch} or lower --batch-size"
            );
        }
        Ok(Self {
            micro_batches: k,
            batches_per_epoch,
            batch_size,
        })
    }

    /// The rows of the one batch an optimizer step takes, or `None` when
    /// the step sums the gradients of several.
    pub fn rows(&self) -> Option<usize> {
        (self.micro_batches == 1).then_some(self.batch_size)
    }

    /// K, the micro-batches per optimizer step.
    pub fn micro_batches(&self) -> u64 {
        self.micro_batches
    }

    /// Optimizer steps per epoch: `⌊batches/K⌋` (a trailing incomplete group is dropped).
    pub fn steps_per_epoch(&self) -> u64 {
        self.batches_per_epoch / self.micro_batches
    }

    /// The micro-batches of optimizer step `step` (counted over the whole run).
    pub fn batches_of(&self, step: u64) -> impl Iterator<Item = MicroBatch> + use<> {
        let spe = self.steps_per_epoch();
        let (epoch, first) = (step / spe, (step % spe) * self.micro_batches);
        (first..first + self.micro_batches).map(move |index| MicroBatch { epoch, index })
    }
}

/// The summed gradients of the micro-batches of optimizer step `step`, each
/// micro-batch's loss scaled by `1/K` (not scaled when K = 1, so a run without
/// accumulation is unchanged bit for bit); `on_stats` receives each micro-batch's
/// statistics (its unscaled loss).
pub fn step_gradients<M, T>(
    task: &mut T,
    model: &M,
    plan: &Accumulation,
    step: u64,
    round: usize,
    mut on_stats: impl FnMut(StepStats),
) -> GradientsParams
where
    M: Module,
    T: Task<M>,
{
    let k = plan.micro_batches();
    let mut accumulator = GradientsAccumulator::<M>::new();
    for batch in plan.batches_of(step) {
        let (loss, stats) = task.train_step(model, batch, round);
        on_stats(stats);
        let loss = if k > 1 { loss.div_scalar(k as f32) } else { loss };
        accumulator.accumulate(model, GradientsParams::from_grads(loss.backward(), model));
    }
    accumulator.grads()
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{GradientsParams, SgdConfig};
    use burn::tensor::{Device, Int, Tensor, TensorData};

    use super::*;
    use crate::run::train::task::{Evaluation, Split};

    #[test]
    fn ten_batches_in_groups_of_three_give_three_steps_and_drop_the_tenth() {
        let plan = Accumulation::new(3, 10, 8).unwrap();
        assert_eq!(plan.steps_per_epoch(), 3);
        let of = |s| plan.batches_of(s).map(|b| (b.epoch, b.index)).collect::<Vec<_>>();
        assert_eq!(of(0), [(0, 0), (0, 1), (0, 2)]);
        assert_eq!(of(2), [(0, 6), (0, 7), (0, 8)]);
        // step 3 starts epoch 1: batch 9 of epoch 0 belongs to no step
        assert_eq!(of(3), [(1, 0), (1, 1), (1, 2)]);
        let plain = Accumulation::new(1, 10, 8).unwrap();
        assert_eq!(plain.steps_per_epoch(), 10);
        assert_eq!(of_plain(&plain, 13), [(1, 3)]);
    }

    fn of_plain(plan: &Accumulation, step: u64) -> Vec<(u64, u64)> {
        plan.batches_of(step).map(|b| (b.epoch, b.index)).collect()
    }

    #[test]
    fn a_bad_k_names_the_setting_and_the_fix() {
        let zero = Accumulation::new(0, 10, 8).unwrap_err().to_string();
        assert!(
            zero.contains("at least 1") && zero.contains("--grad-accumulation"),
            "{zero}"
        );
        let big = Accumulation::new(11, 10, 8).unwrap_err().to_string();
        assert!(big.contains("10 batch(es) of 8") && big.contains("at most 10"), "{big}");
        assert!(Accumulation::new(10, 10, 8).is_ok());
    }

    /// A linear model over fixed samples: micro-batch `j` is rows `j·b .. j·b + b`
    /// of `x`, `y` (the epoch's order), loss the mean squared error.
    struct Rows {
        x: Vec<f32>,
        y: Vec<f32>,
        b: usize,
        device: Device,
    }

    const IN: usize = 3;
    const OUT: usize = 2;

    fn mse(model: &Linear, x: &[f32], y: &[f32], device: &Device) -> Tensor<1> {
        let n = x.len() / IN;
        let x = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [n, IN]), device);
        let y = Tensor::<2>::from_data(TensorData::new(y.to_vec(), [n, OUT]), device);
        (model.forward(x) - y).powf_scalar(2.0).mean()
    }

    impl Task<Linear> for Rows {
        fn batches_per_epoch(&self) -> u64 {
            (self.x.len() / IN / self.b) as u64
        }

        fn train_step(&mut self, model: &Linear, batch: MicroBatch, _round: usize) -> (Tensor<1>, StepStats) {
            let r = batch.index as usize * self.b;
            let loss = mse(
                model,
                &self.x[r * IN..(r + self.b) * IN],
                &self.y[r * OUT..(r + self.b) * OUT],
                &self.device,
            );
            let stats = StepStats {
                loss: loss.clone(),
                correct: Tensor::<1, Int>::zeros([1], &self.device),
                samples: self.b as u64,
            };
            (loss, stats)
        }

        fn evaluate(&self, _: &Linear, _: Split) -> Option<Evaluation> {
            None
        }

        fn samples(&self, _: Split) -> usize {
            0
        }

        fn scoring_grads(&self, _: &Linear, _: &sparse_core::GradRequest) -> sparse_core::Result<GradientsParams> {
            Ok(GradientsParams::new())
        }
    }

    fn values(model: &Linear) -> Vec<f32> {
        let mut v = model.weight.val().into_data().try_to_vec::<f32>().unwrap();
        v.extend(
            model
                .bias
                .as_ref()
                .unwrap()
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap(),
        );
        v
    }

    /// Golden (fidelity spec §1.7 ii): one optimizer step with K = 2 and batch b
    /// equals one step with K = 1 and batch 2b on the same 2b samples; the
    /// K = 1 step is computed here directly (one backward of the mean loss over
    /// all 2b samples), with Burn's SGD on both sides.
    #[test]
    fn two_micro_batches_of_b_step_like_one_batch_of_2b() {
        let device = Device::flex().autodiff();
        let b = 4;
        let n = 2 * b;
        let x: Vec<f32> = (0..n * IN).map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0).collect();
        let y: Vec<f32> = (0..n * OUT).map(|i| ((i * 5 % 7) as f32 - 3.0) / 2.0).collect();
        let mut model = LinearConfig::new(IN, OUT).init(&device);
        let w = vec![0.1, -0.2, 0.3, 0.05, -0.15, 0.25];
        model.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w, [IN, OUT]), &device));
        model.bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![0.01f32, -0.02], [OUT]),
            &device,
        )));
        let lr = 0.1;

        let whole = mse(&model, &x, &y, &device);
        let expected_grads = GradientsParams::from_grads(whole.backward(), &model);
        let expected = SgdConfig::new().init().step(lr, model.clone(), expected_grads);

        let mut task = Rows { x, y, b, device };
        let plan = Accumulation::new(2, 2, b).unwrap();
        let mut seen = 0;
        let grads = step_gradients(&mut task, &model, &plan, 0, 0, |s| seen += s.samples);
        let got = SgdConfig::new().init().step(lr, model.clone(), grads);

        assert_eq!(seen, n as u64);
        let (got, expected, before) = (values(&got), values(&expected), values(&model));
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() <= 1e-6, "{g} vs {e}");
        }
        let moved = expected
            .iter()
            .zip(&before)
            .map(|(e, w)| (e - w).abs())
            .fold(0.0, f32::max);
        assert!(moved > 1e-2, "the step hardly moved the weights ({moved})");
    }
}
