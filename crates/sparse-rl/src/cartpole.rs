//! CartPole (Barto, Sutton & Anderson 1983) with the dynamics, thresholds and
//! episode rules of Gymnasium's `CartPole-v1` and `CartPole-v0`
//! (`gymnasium/envs/classic_control/cartpole.py`).
//!
//! With force `F = ±10` N (action 1 pushes right, action 0 left), pole mass
//! `m = 0.1`, total mass `M = 1.1`, half pole length `l = 0.5`, `g = 9.8`:
//!
//! ```text
//! tmp = (F + m·l·θ̇²·sin θ) / M
//! θ̈   = (g·sin θ − cos θ·tmp) / (l·(4/3 − m·cos²θ / M))
//! ẍ   = tmp − m·l·θ̈·cos θ / M
//! ```
//!
//! integrated with explicit Euler, τ = 0.02 s, positions first with the old
//! velocities: `x += τ·ẋ; ẋ += τ·ẍ; θ += τ·θ̇; θ̇ += τ·θ̈` (Gymnasium's default
//! `kinematics_integrator = "euler"`). The state is kept in `f64` as in
//! Gymnasium; observations are `f32` `[x, ẋ, θ, θ̇]`.
//!
//! Episode: terminate when `|x| > 2.4` or `|θ| > 12°` (strict), reward +1 on
//! every step including the terminating one, truncate at 500 steps (v1,
//! threshold 475) or 200 (v0, threshold 195). Reset draws all four state
//! variables from `U(−0.05, 0.05)`.

use serde::{Deserialize, Serialize};

use crate::env::{EnvId, EnvSnapshot, Environment, EpisodeClock, Step};
use crate::error::Result;
use crate::rng::{EnvRng, RngState};

/// Gravity (m/s²).
pub const GRAVITY: f64 = 9.8;
/// Cart mass (kg).
pub const MASS_CART: f64 = 1.0;
/// Pole mass (kg).
pub const MASS_POLE: f64 = 0.1;
/// Half the pole's length (m).
pub const HALF_LENGTH: f64 = 0.5;
/// Force magnitude (N).
pub const FORCE: f64 = 10.0;
/// Integration step (s).
pub const TAU: f64 = 0.02;
/// Cart position limit (m).
pub const X_THRESHOLD: f64 = 2.4;
/// Pole angle limit: 12° in radians.
pub const THETA_THRESHOLD: f64 = 12.0 * 2.0 * std::f64::consts::PI / 360.0;

/// The physical state `[x, ẋ, θ, θ̇]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CartPoleState {
    /// Cart position (m).
    pub x: f64,
    /// Cart velocity (m/s).
    pub x_dot: f64,
    /// Pole angle from vertical (rad).
    pub theta: f64,
    /// Pole angular velocity (rad/s).
    pub theta_dot: f64,
}

impl CartPoleState {
    /// One Euler step of the dynamics under `action` (1 = push right).
    pub fn step(self, action: usize) -> Self {
        let force = if action == 1 { FORCE } else { -FORCE };
        let total = MASS_CART + MASS_POLE;
        let pml = MASS_POLE * HALF_LENGTH;
        let (sin, cos) = self.theta.sin_cos();
        let tmp = (force + pml * self.theta_dot * self.theta_dot * sin) / total;
        let theta_acc = (GRAVITY * sin - cos * tmp) / (HALF_LENGTH * (4.0 / 3.0 - MASS_POLE * cos * cos / total));
        let x_acc = tmp - pml * theta_acc * cos / total;
        Self {
            x: self.x + TAU * self.x_dot,
            x_dot: self.x_dot + TAU * x_acc,
            theta: self.theta + TAU * self.theta_dot,
            theta_dot: self.theta_dot + TAU * theta_acc,
        }
    }

    /// Whether the cart left the track or the pole fell past 12°.
    pub fn is_terminal(&self) -> bool {
        self.x < -X_THRESHOLD || self.x > X_THRESHOLD || self.theta < -THETA_THRESHOLD || self.theta > THETA_THRESHOLD
    }

    /// The observation `[x, ẋ, θ, θ̇]` as `f32`.
    pub fn observation(&self) -> Vec<f32> {
        vec![
            self.x as f32,
            self.x_dot as f32,
            self.theta as f32,
            self.theta_dot as f32,
        ]
    }
}

/// A saved CartPole.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CartPoleSnapshot {
    /// v0 or v1.
    pub id: EnvId,
    /// Physical state.
    pub state: CartPoleState,
    /// Episode clock.
    pub clock: EpisodeClock,
    /// Generator.
    pub rng: RngState,
}

/// CartPole-v1 (or v0).
#[derive(Clone, Debug)]
pub struct CartPole {
    id: EnvId,
    state: CartPoleState,
    clock: EpisodeClock,
    rng: EnvRng,
}

impl CartPole {
    /// `CartPole-v1` (500-step limit).
    pub fn v1(seed: u64) -> Self {
        Self::with_id(EnvId::CartPoleV1, seed)
    }

    /// `CartPole-v0` (200-step limit).
    pub fn v0(seed: u64) -> Self {
        Self::with_id(EnvId::CartPoleV0, seed)
    }

    fn with_id(id: EnvId, seed: u64) -> Self {
        Self {
            id,
            state: CartPoleState::default(),
            clock: EpisodeClock::default(),
            rng: EnvRng::new(seed),
        }
    }

    /// The physical state.
    pub fn state(&self) -> CartPoleState {
        self.state
    }

    /// Starts an episode from `state` instead of a random one (for tests and demos).
    pub fn reset_to(&mut self, state: CartPoleState) -> Vec<f32> {
        self.state = state;
        self.clock.reset();
        self.state.observation()
    }

    /// Steps taken in this episode.
    pub fn episode_steps(&self) -> u32 {
        self.clock.steps
    }
}

impl Environment for CartPole {
    fn id(&self) -> EnvId {
        self.id
    }

    fn observation_shape(&self) -> Vec<usize> {
        vec![4]
    }

    fn num_actions(&self) -> usize {
        2
    }

    fn reset(&mut self) -> Vec<f32> {
        let mut u = || self.rng.uniform(-0.05, 0.05);
        let state = CartPoleState {
            x: u(),
            x_dot: u(),
            theta: u(),
            theta_dot: u(),
        };
        self.reset_to(state)
    }

    fn step(&mut self, action: usize) -> Result<Step> {
        self.clock.check(self.id, action, 2)?;
        self.state = self.state.step(action);
        let terminated = self.state.is_terminal();
        let truncated = self.clock.tick(terminated, self.id.max_episode_steps());
        Ok(Step {
            observation: self.state.observation(),
            reward: 1.0,
            terminated,
            truncated,
        })
    }

    fn observation(&self) -> Vec<f32> {
        self.state.observation()
    }

    fn snapshot(&self) -> EnvSnapshot {
        EnvSnapshot::CartPole(CartPoleSnapshot {
            id: self.id,
            state: self.state,
            clock: self.clock,
            rng: self.rng.state(),
        })
    }

    fn restore(&mut self, snapshot: &EnvSnapshot) -> Result<()> {
        match snapshot {
            EnvSnapshot::CartPole(s) if s.id == self.id => {
                self.state = s.state;
                self.clock = s.clock;
                self.rng = EnvRng::from_state(&s.rng);
                Ok(())
            }
            other => Err(other.mismatch(self.id)),
        }
    }
}
