//! Schedules: how sparse the model is at step `t`, when topology updates run,
//! and what fraction of weights an update exchanges.
//!
//! Steps are counted from 0: step `t` is the `t`-th optimizer step of the run.

use burn::config::Config;

use crate::error::{Result, SparseError, check_sparsity};

/// The shape of a sparsity ramp from `initial` to `final`.
#[derive(Config, Debug, PartialEq, Eq, Copy)]
pub enum Ramp {
    /// Zhu & Gupta (2017), Eq. 1: `s_t = s_f + (s_i − s_f)·(1 − p)^3`.
    Cubic,
    /// `s_t = s_i + (s_f − s_i)·p`.
    Linear,
    /// Density decays geometrically: `d_t = d_i·(d_f/d_i)^p`, `s_t = 1 − d_t`
    /// (a constant fraction of the remaining weights per interval, like iterative pruning).
    Exponential,
}

/// Sparsity over time.
///
/// The ramp moves only at `begin + kΔT` (`k = 0..n`), with progress
/// `p = (t_k − begin)/(end − begin)`; before `begin` the sparsity is `initial`, from
/// `end` on it is `final`. Zhu & Gupta's `(t0, n, ΔT)` is `begin = t0`,
/// `end = t0 + nΔT`, `interval = ΔT` (see [`SparsitySchedule::cubic`]).
#[derive(Config, Debug, PartialEq)]
pub struct SparsitySchedule {
    /// Ramp shape.
    #[config(default = "Ramp::Cubic")]
    pub ramp: Ramp,
    /// Sparsity before `begin` (`s_i`).
    #[config(default = 0.0)]
    pub initial: f64,
    /// Sparsity from `end` on (`s_f`).
    pub target: f64,
    /// First step of the ramp (`t0`).
    #[config(default = 0)]
    pub begin: u64,
    /// Step at which the final sparsity is reached (`t0 + nΔT`).
    pub end: u64,
    /// Steps between changes (`ΔT`).
    #[config(default = 1)]
    pub interval: u64,
}

impl SparsitySchedule {
    /// A schedule that stays at `sparsity`.
    pub fn constant(sparsity: f64) -> Self {
        Self::new(sparsity, 0).with_initial(sparsity)
    }

    /// Zhu & Gupta's cubic schedule from `s_i` to `s_f`, starting at `t0`, `n` changes `ΔT` apart.
    pub fn cubic(s_i: f64, s_f: f64, t0: u64, n: u64, delta_t: u64) -> Self {
        Self::new(s_f, t0 + n * delta_t)
            .with_initial(s_i)
            .with_begin(t0)
            .with_interval(delta_t)
    }

    /// Checks ranges and step order.
    pub fn validate(&self) -> Result<()> {
        check_sparsity(self.initial)?;
        check_sparsity(self.target)?;
        if self.interval == 0 {
            return Err(SparseError::InvalidConfig(
                "schedule interval ΔT must be at least 1 step".into(),
            ));
        }
        if self.end < self.begin {
            return Err(SparseError::InvalidConfig(format!(
                "schedule ends at step {} before it begins at step {}; set end >= begin",
                self.end, self.begin
            )));
        }
        Ok(())
    }

    /// Progress `p ∈ [0, 1]` at step `t`, frozen between the ΔT grid points.
    pub fn progress(&self, t: u64) -> f64 {
        if t < self.begin {
            return 0.0;
        }
        if t >= self.end || self.end == self.begin {
            return 1.0;
        }
        let k = (t - self.begin) / self.interval;
        let tk = self.begin + k * self.interval;
        (tk - self.begin) as f64 / (self.end - self.begin) as f64
    }

    /// The sparsity at step `t`.
    pub fn sparsity_at(&self, t: u64) -> f64 {
        let (si, sf) = (self.initial, self.target);
        if t < self.begin {
            return si;
        }
        let p = self.progress(t);
        match self.ramp {
            Ramp::Cubic => sf + (si - sf) * (1.0 - p).powi(3),
            Ramp::Linear => si + (sf - si) * p,
            Ramp::Exponential => {
                let (di, df) = (1.0 - si, 1.0 - sf);
                1.0 - di * (df / di).powf(p)
            }
        }
    }

    /// Whether the sparsity changes at step `t` (a pruning step): the ΔT grid
    /// points of `[begin, end]`, and `end` itself when it is not on the grid.
    pub fn is_change_step(&self, t: u64) -> bool {
        t == self.end || (t >= self.begin && t < self.end && (t - self.begin).is_multiple_of(self.interval))
    }
}

/// When topology updates run: at `t = begin + kΔT` for `begin <= t < end`.
#[derive(Config, Debug, PartialEq, Eq)]
pub struct UpdateSchedule {
    /// First update step.
    #[config(default = 0)]
    pub begin: u64,
    /// No update at or after this step (RigL: 75% of training).
    pub end: u64,
    /// Steps between updates (ΔT; RigL: 100).
    #[config(default = 100)]
    pub interval: u64,
}

impl UpdateSchedule {
    /// Every `delta_t` steps from step 0 until `end_fraction` of `total_steps`
    /// (`end = ⌊end_fraction·total_steps⌋`), checked: `delta_t >= 1` and
    /// `0 < end_fraction <= 1`.
    pub fn until_fraction(total_steps: u64, end_fraction: f64, delta_t: u64) -> Result<Self> {
        if delta_t == 0 {
            return Err(SparseError::InvalidConfig(
                "delta_t (steps between updates) must be at least 1 (RigL uses 100)".into(),
            ));
        }
        if !(end_fraction > 0.0 && end_fraction <= 1.0) {
            return Err(SparseError::InvalidConfig(format!(
                "end_fraction {end_fraction} must be in (0, 1] (RigL stops updating at 0.75 of training)"
            )));
        }
        Ok(Self::new((end_fraction * total_steps as f64) as u64).with_interval(delta_t))
    }

    /// RigL's default: every 100 steps until 75% of `total_steps`.
    pub fn rigl(total_steps: u64) -> Self {
        Self::new(total_steps * 3 / 4)
    }

    /// Checks ΔT and step order.
    pub fn validate(&self) -> Result<()> {
        if self.interval == 0 {
            return Err(SparseError::InvalidConfig(
                "update interval ΔT must be at least 1 step".into(),
            ));
        }
        if self.end < self.begin {
            return Err(SparseError::InvalidConfig(format!(
                "updates end at step {} before they begin at step {}",
                self.end, self.begin
            )));
        }
        Ok(())
    }

    /// Whether a topology update runs at step `t`.
    pub fn is_update_step(&self, t: u64) -> bool {
        t >= self.begin && t < self.end && (t - self.begin).is_multiple_of(self.interval)
    }

    /// Progress `(t − begin)/(end − begin)` clamped to `[0, 1]`.
    pub fn progress(&self, t: u64) -> f64 {
        if self.end <= self.begin {
            return 1.0;
        }
        (t.saturating_sub(self.begin) as f64 / (self.end - self.begin) as f64).clamp(0.0, 1.0)
    }
}

/// How the drop fraction changes over the updates (with α and, for the
/// exponential decay, the exponent k, it makes a [`DropFraction`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DropSchedule {
    /// RigL's cosine decay from α to 0.
    Cosine,
    /// α throughout (SET).
    Constant,
    /// `α·(1 − p)^k` (rigl `exponential_k`).
    Exponential,
}

impl DropSchedule {
    /// The drop fraction with initial value `alpha` (and exponent `k` for the exponential decay), checked.
    pub fn with_alpha(self, alpha: f64, k: f64) -> Result<DropFraction> {
        let f = match self {
            Self::Cosine => DropFraction::Cosine { alpha },
            Self::Constant => DropFraction::Constant { alpha },
            Self::Exponential => DropFraction::ExponentialK { alpha, k },
        };
        f.validate()?;
        Ok(f)
    }
}

/// The fraction of active weights an update drops (and regrows), as a function of
/// the update schedule's progress `p`.
#[derive(Config, Debug, PartialEq)]
pub enum DropFraction {
    /// `f = α`.
    Constant {
        /// Drop fraction α.
        alpha: f64,
    },
    /// RigL Eq. 2: `f = α/2·(1 + cos(π·p))` (α = 0.3 in RigL).
    Cosine {
        /// Initial drop fraction α.
        alpha: f64,
    },
    /// rigl `exponential_k`: `f = α·(1 − p)^k`.
    ExponentialK {
        /// Initial drop fraction α.
        alpha: f64,
        /// Exponent k.
        k: f64,
    },
}

impl Default for DropFraction {
    fn default() -> Self {
        Self::Cosine { alpha: 0.3 }
    }
}

impl DropFraction {
    /// α.
    pub fn alpha(&self) -> f64 {
        match self {
            Self::Constant { alpha } | Self::Cosine { alpha } | Self::ExponentialK { alpha, .. } => *alpha,
        }
    }

    /// Checks `0 <= α <= 1`.
    pub fn validate(&self) -> Result<()> {
        let a = self.alpha();
        if !(0.0..=1.0).contains(&a) {
            return Err(SparseError::InvalidConfig(format!(
                "drop fraction α = {a} must be in [0, 1] (RigL uses 0.3)"
            )));
        }
        Ok(())
    }

    /// The drop fraction at progress `p ∈ [0, 1]`.
    pub fn at(&self, p: f64) -> f64 {
        match self {
            Self::Constant { alpha } => *alpha,
            Self::Cosine { alpha } => alpha / 2.0 * (1.0 + (std::f64::consts::PI * p).cos()),
            Self::ExponentialK { alpha, k } => alpha * (1.0 - p).powf(*k),
        }
    }
}
