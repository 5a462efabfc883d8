//! Learning-rate schedules: an optional linear warm-up, then cosine, step or
//! constant, built from Burn's `lr_scheduler` (cosine annealing, linear,
//! sequential). Burn's schedulers are stateful iterators; [`LrSchedule`] keeps
//! one at its step so that a resumed run or a new lottery-ticket round can ask
//! for the rate of any step (it replays the scheduler from the start when asked
//! for an earlier step).

use anyhow::bail;
use burn::lr_scheduler::LrSchedulerConfig;
use burn::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::lr_scheduler::linear::LinearLrSchedulerConfig;
use burn::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::lr_scheduler::sequential::SequentialLrSchedulerConfig;
use serde::{Deserialize, Serialize};

use super::config::TrainingSection;

/// The shape of the schedule after the warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    /// Cosine annealing to 0 at the end of training (Loshchilov & Hutter 2017).
    Cosine,
    /// Multiplied by `gamma` at every milestone epoch.
    Step,
    /// Constant.
    Constant,
}

/// The learning rate at every step of a run.
pub struct Lr {
    config: SequentialLrSchedulerConfig,
    scheduler: ModuleLrScheduler,
    /// The step the scheduler gives next.
    next: u64,
}

impl std::fmt::Debug for Lr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lr").field("next", &self.next).finish()
    }
}

impl Lr {
    /// From the training settings and the number of steps per epoch.
    pub fn new(t: &TrainingSection, steps_per_epoch: u64) -> anyhow::Result<Self> {
        if !(t.lr > 0.0 && t.lr <= 1.0) {
            bail!(
                "learning rate {} must be in (0, 1] (Burn's schedulers take rates up to 1)",
                t.lr
            );
        }
        let total = (t.epochs as u64 * steps_per_epoch) as usize;
        let warmup = ((t.warmup_epochs * steps_per_epoch as f64).round() as usize).min(total);
        let mut schedulers = Vec::new();
        let mut milestones = Vec::new();
        if warmup > 0 {
            // (step + 1)/warmup of the rate: from lr/warmup at step 0 to lr at step warmup − 1
            schedulers.push(if warmup == 1 {
                LrSchedulerConfig::Constant(t.lr)
            } else {
                LrSchedulerConfig::Linear(LinearLrSchedulerConfig::new(t.lr / warmup as f64, t.lr, warmup - 1))
            });
            milestones.push(warmup);
        }
        let after = (total - warmup).max(1);
        match t.schedule {
            LrSchedule::Cosine => {
                schedulers.push(LrSchedulerConfig::Cosine(CosineAnnealingLrSchedulerConfig::new(
                    t.lr, after,
                )));
            }
            LrSchedule::Constant => schedulers.push(LrSchedulerConfig::Constant(t.lr)),
            LrSchedule::Step => {
                let gamma = t.gamma.unwrap_or(super::config::STEP_GAMMA);
                if !(gamma > 0.0 && gamma.is_finite()) {
                    bail!("the step schedule's gamma {gamma} must be a positive number (e.g. 0.1)");
                }
                let mut at: Vec<usize> = t
                    .milestones
                    .clone()
                    .unwrap_or_default()
                    .iter()
                    .map(|e| e * steps_per_epoch as usize)
                    .collect();
                at.sort_unstable();
                at.dedup();
                // lr·γ^k where k counts the milestones passed: one constant piece per change after the warm-up
                let passed = |step: usize| at.iter().filter(|&&m| step >= m).count() as i32;
                schedulers.push(LrSchedulerConfig::Constant(t.lr * gamma.powi(passed(warmup))));
                for &m in at.iter().filter(|&&m| m > warmup) {
                    milestones.push(m);
                    schedulers.push(LrSchedulerConfig::Constant(t.lr * gamma.powi(passed(m))));
                }
            }
        }
        let config = SequentialLrSchedulerConfig::new(schedulers, milestones);
        let scheduler = config
            .init()
            .map_err(|e| anyhow::anyhow!("learning-rate schedule: {e}"))?;
        Ok(Self {
            config,
            scheduler,
            next: 0,
        })
    }

    /// The rate at `step` (0-based).
    pub fn at(&mut self, step: u64) -> f64 {
        if step < self.next {
            self.scheduler = self.config.init().expect("initialised once already");
            self.next = 0;
        }
        let mut lr = self.scheduler.step();
        self.next += 1;
        while self.next <= step {
            lr = self.scheduler.step();
            self.next += 1;
        }
        lr.base()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn training(schedule: LrSchedule) -> TrainingSection {
        TrainingSection::new()
            .with_epochs(10)
            .with_lr(0.1)
            .with_schedule(schedule)
    }

    #[test]
    fn warmup_then_cosine() {
        let mut s = Lr::new(&training(LrSchedule::Cosine).with_warmup_epochs(1.0), 100).unwrap();
        assert!((s.at(0) - 0.001).abs() < 1e-12);
        assert!((s.at(49) - 0.05).abs() < 1e-12);
        assert!((s.at(99) - 0.1).abs() < 1e-12);
        assert!((s.at(100) - 0.1).abs() < 1e-12);
        // halfway through the 900 cosine steps: lr/2
        assert!((s.at(550) - 0.05).abs() < 1e-9);
        // asking for an earlier step replays the schedule
        assert!((s.at(0) - 0.001).abs() < 1e-12);
    }

    #[test]
    fn cosine_is_the_closed_form_bit_for_bit() {
        let mut s = Lr::new(&training(LrSchedule::Cosine), 100).unwrap();
        for step in [0u64, 1, 250, 999] {
            let p = step as f64 / 1000.0;
            let expected = 0.1 * 0.5 * (1.0 + (std::f64::consts::PI * p).cos());
            assert_eq!(s.at(step).to_bits(), expected.to_bits(), "step {step}");
        }
    }

    #[test]
    fn steps_at_the_milestones() {
        let t = training(LrSchedule::Step)
            .with_milestones(Some(vec![3, 6]))
            .with_gamma(Some(0.1));
        let mut s = Lr::new(&t, 100).unwrap();
        assert!((s.at(299) - 0.1).abs() < 1e-12);
        assert!((s.at(300) - 0.01).abs() < 1e-12);
        assert!((s.at(600) - 0.001).abs() < 1e-12);
        assert!((s.at(999) - 0.001).abs() < 1e-12);
    }

    #[test]
    fn bad_settings_are_errors() {
        assert!(Lr::new(&training(LrSchedule::Constant).with_lr(f64::NAN), 10).is_err());
        assert!(Lr::new(&training(LrSchedule::Constant).with_lr(0.0), 10).is_err());
        let t = training(LrSchedule::Step).with_gamma(Some(f64::NAN));
        assert!(Lr::new(&t, 10).is_err());
    }
}
