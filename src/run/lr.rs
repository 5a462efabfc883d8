//! Learning-rate schedules: linear warm-up, then constant, step or cosine.

use super::config::TrainingSettings;

/// The learning rate at every step of a run.
#[derive(Clone, Debug)]
pub struct LrSchedule {
    base: f64,
    kind: String,
    milestones: Vec<u64>,
    gamma: f64,
    warmup: u64,
    total: u64,
}

impl LrSchedule {
    /// From the training settings and the number of steps per epoch.
    pub fn new(t: &TrainingSettings, steps_per_epoch: u64) -> anyhow::Result<Self> {
        if !matches!(t.schedule.as_str(), "cosine" | "step" | "constant") {
            anyhow::bail!(
                "unknown learning-rate schedule `{}`; use cosine, step or constant",
                t.schedule
            );
        }
        if t.lr.is_nan() || t.lr <= 0.0 || !t.lr.is_finite() {
            anyhow::bail!("learning rate {} must be a positive number", t.lr);
        }
        Ok(Self {
            base: t.lr,
            kind: t.schedule.clone(),
            milestones: t.milestones.iter().map(|e| *e as u64 * steps_per_epoch).collect(),
            gamma: t.gamma,
            warmup: (t.warmup_epochs * steps_per_epoch as f64).round() as u64,
            total: t.epochs as u64 * steps_per_epoch,
        })
    }

    /// The rate at `step` (0-based).
    pub fn at(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.base * (step + 1) as f64 / self.warmup as f64;
        }
        match self.kind.as_str() {
            "step" => {
                self.base
                    * self
                        .gamma
                        .powi(self.milestones.iter().filter(|&&m| step >= m).count() as i32)
            }
            "cosine" => {
                let span = self.total.saturating_sub(self.warmup).max(1);
                let p = (step - self.warmup) as f64 / span as f64;
                self.base * 0.5 * (1.0 + (std::f64::consts::PI * p.min(1.0)).cos())
            }
            _ => self.base,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_and_steps() {
        let mut t = TrainingSettings {
            epochs: 10,
            lr: 0.1,
            warmup_epochs: 1.0,
            ..Default::default()
        };
        let s = LrSchedule::new(&t, 100).unwrap();
        assert!((s.at(0) - 0.001).abs() < 1e-12);
        assert!((s.at(99) - 0.1).abs() < 1e-12);
        assert!((s.at(100) - 0.1).abs() < 1e-12);
        assert!((s.at(550) - 0.05).abs() < 1e-9);
        t.schedule = "step".into();
        t.milestones = vec![3, 6];
        t.warmup_epochs = 0.0;
        let s = LrSchedule::new(&t, 100).unwrap();
        assert!(
            (s.at(299) - 0.1).abs() < 1e-12 && (s.at(300) - 0.01).abs() < 1e-12 && (s.at(600) - 0.001).abs() < 1e-12
        );
    }
}
