//! The environment interface (Gymnasium's `reset`/`step` with separate
//! termination and truncation), the registry of implemented environments, and
//! the snapshot type that saves an environment exactly.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::acrobot::{Acrobot, AcrobotSnapshot};
use crate::breakout::{Breakout, BreakoutSnapshot};
use crate::cartpole::{CartPole, CartPoleSnapshot};
use crate::error::{Result, RlError};

/// The outcome of one step.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The observation after the step.
    pub observation: Vec<f32>,
    /// The reward of the step.
    pub reward: f64,
    /// The episode reached a terminal state (no bootstrapping past it).
    pub terminated: bool,
    /// The episode was cut by the time limit (the state is not terminal).
    pub truncated: bool,
}

impl Step {
    /// Whether the episode is over (terminated or truncated).
    pub fn done(&self) -> bool {
        self.terminated || self.truncated
    }
}

/// A reinforcement-learning environment with a discrete action set.
///
/// Every environment owns a seeded [`crate::EnvRng`]; [`Environment::snapshot`]
/// captures its whole state (physics, episode clock, generator) so that a
/// restored copy continues identically.
pub trait Environment: Send {
    /// Which environment this is.
    fn id(&self) -> EnvId;

    /// Shape of an observation (e.g. `[4]`, or `[4, 10, 10]` channel-first).
    fn observation_shape(&self) -> Vec<usize>;

    /// Number of discrete actions.
    fn num_actions(&self) -> usize;

    /// Starts a new episode and returns its first observation.
    fn reset(&mut self) -> Vec<f32>;

    /// Applies `action`. Errors for an action outside the action set, and
    /// before the first reset or after the episode ended.
    fn step(&mut self, action: usize) -> Result<Step>;

    /// The current observation.
    fn observation(&self) -> Vec<f32>;

    /// The whole state, for saving.
    fn snapshot(&self) -> EnvSnapshot;

    /// Restores [`Environment::snapshot`]'s output (of the same environment).
    fn restore(&mut self, snapshot: &EnvSnapshot) -> Result<()>;

    /// Number of floats in an observation.
    fn observation_len(&self) -> usize {
        self.observation_shape().iter().product()
    }
}

/// A saved environment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EnvSnapshot {
    /// CartPole (v0 or v1).
    CartPole(CartPoleSnapshot),
    /// Acrobot-v1.
    Acrobot(AcrobotSnapshot),
    /// MinAtar Breakout.
    Breakout(BreakoutSnapshot),
}

impl EnvSnapshot {
    /// The environment the snapshot was taken from.
    pub fn id(&self) -> EnvId {
        match self {
            Self::CartPole(s) => s.id,
            Self::Acrobot(_) => EnvId::AcrobotV1,
            Self::Breakout(s) => s.id,
        }
    }

    pub(crate) fn mismatch(&self, expected: EnvId) -> RlError {
        RlError::SnapshotMismatch {
            expected: expected.to_string(),
            found: self.id().to_string(),
        }
    }
}

/// The episode clock shared by every environment: whether an episode runs,
/// and how many steps it has taken (for truncation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpisodeClock {
    /// Steps taken in this episode.
    pub steps: u32,
    /// An episode is running (reset was called and it has not ended).
    pub running: bool,
    /// At least one reset happened.
    pub started: bool,
}

impl EpisodeClock {
    /// Starts an episode.
    pub fn reset(&mut self) {
        self.steps = 0;
        self.running = true;
        self.started = true;
    }

    /// Checks that a step may be taken and that `action < actions`.
    pub fn check(&self, id: EnvId, action: usize, actions: usize) -> Result<()> {
        if !self.running {
            return Err(RlError::NeedsReset {
                env: id.to_string(),
                when: if self.started {
                    "after the episode ended"
                } else {
                    "before the first reset"
                },
            });
        }
        if action >= actions {
            return Err(RlError::InvalidAction {
                env: id.to_string(),
                action,
                actions,
            });
        }
        Ok(())
    }

    /// Counts a step; returns whether the time limit truncates the episode
    /// (never when it terminated on the same step, as in Gymnasium's `TimeLimit`,
    /// which reports both flags but the terminal one decides bootstrapping).
    pub fn tick(&mut self, terminated: bool, limit: Option<u32>) -> bool {
        self.steps += 1;
        let truncated = limit.is_some_and(|l| self.steps >= l);
        if terminated || truncated {
            self.running = false;
        }
        truncated && !terminated
    }
}

/// The implemented environments, named as in Gymnasium and MinAtar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EnvId {
    /// `CartPole-v0`: 200-step limit (the version Graesser et al. 2022 used).
    CartPoleV0,
    /// `CartPole-v1`: 500-step limit, reward threshold 475.
    CartPoleV1,
    /// `Acrobot-v1`: book dynamics, 500-step limit, reward threshold −100.
    AcrobotV1,
    /// `MinAtar/Breakout-v0`: all 6 MinAtar actions.
    BreakoutV0,
    /// `MinAtar/Breakout-v1`: the minimal action set {no-op, left, right}.
    BreakoutV1,
}

impl EnvId {
    /// Every environment.
    pub const ALL: [Self; 5] = [
        Self::CartPoleV0,
        Self::CartPoleV1,
        Self::AcrobotV1,
        Self::BreakoutV0,
        Self::BreakoutV1,
    ];

    /// The registered name.
    pub fn name(self) -> &'static str {
        match self {
            Self::CartPoleV0 => "CartPole-v0",
            Self::CartPoleV1 => "CartPole-v1",
            Self::AcrobotV1 => "Acrobot-v1",
            Self::BreakoutV0 => "MinAtar/Breakout-v0",
            Self::BreakoutV1 => "MinAtar/Breakout-v1",
        }
    }

    /// The time limit (Gymnasium's `max_episode_steps`); MinAtar has none.
    pub fn max_episode_steps(self) -> Option<u32> {
        match self {
            Self::CartPoleV0 => Some(200),
            Self::CartPoleV1 | Self::AcrobotV1 => Some(500),
            Self::BreakoutV0 | Self::BreakoutV1 => None,
        }
    }

    /// The average return at which Gymnasium considers the task solved.
    pub fn reward_threshold(self) -> Option<f64> {
        match self {
            Self::CartPoleV0 => Some(195.0),
            Self::CartPoleV1 => Some(475.0),
            Self::AcrobotV1 => Some(-100.0),
            Self::BreakoutV0 | Self::BreakoutV1 => None,
        }
    }

    /// A new environment seeded with `seed` (call `reset` before stepping).
    pub fn make(self, seed: u64) -> Box<dyn Environment> {
        match self {
            Self::CartPoleV0 => Box::new(CartPole::v0(seed)),
            Self::CartPoleV1 => Box::new(CartPole::v1(seed)),
            Self::AcrobotV1 => Box::new(Acrobot::new(seed)),
            Self::BreakoutV0 => Box::new(Breakout::new(seed, false)),
            Self::BreakoutV1 => Box::new(Breakout::new(seed, true)),
        }
    }
}

impl fmt::Display for EnvId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EnvId {
    type Err = RlError;

    /// Parses a registered name, case-insensitively (`cartpole-v1`, `MinAtar/Breakout-v1`).
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|id| id.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| RlError::UnknownEnv {
                name: s.to_string(),
                known: Self::ALL.map(Self::name).join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_known_ones() {
        for id in EnvId::ALL {
            assert_eq!(id.name().to_lowercase().parse::<EnvId>().ok(), Some(id));
        }
        let err = "Pong-v5"
            .parse::<EnvId>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("unknown environment `Pong-v5`"), "{err}");
        assert!(
            err.contains("CartPole-v1") && err.contains("MinAtar/Breakout-v1"),
            "{err}"
        );
    }

    #[test]
    fn clock_truncates_at_the_limit_unless_terminal() {
        let mut c = EpisodeClock::default();
        assert!(c.check(EnvId::CartPoleV1, 0, 2).is_err());
        c.reset();
        assert!(!c.tick(false, Some(2)));
        assert!(c.running);
        assert!(c.tick(false, Some(2)));
        assert!(!c.running);
        let err = c
            .check(EnvId::CartPoleV1, 0, 2)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("after the episode ended"), "{err}");
        c.reset();
        assert!(!c.tick(true, Some(1)), "a terminal last step is not a truncation");
    }
}
