//! Acrobot (Sutton 1996; Sutton & Barto's book) with the dynamics and episode
//! rules of Gymnasium's `Acrobot-v1` (`gymnasium/envs/classic_control/acrobot.py`,
//! `book_or_nips = "book"`, the default; no torque noise).
//!
//! Two links of length 1, mass 1, centre of mass at 0.5, moment of inertia 1,
//! `g = 9.8`; torque `a ∈ {−1, 0, +1}` (actions 0, 1, 2) on the second joint:
//!
//! ```text
//! d1 = m1·lc1² + m2·(l1² + lc2² + 2·l1·lc2·cos θ2) + I1 + I2
//! d2 = m2·(lc2² + l1·lc2·cos θ2) + I2
//! φ2 = m2·lc2·g·cos(θ1 + θ2 − π/2)
//! φ1 = −m2·l1·lc2·θ̇2²·sin θ2 − 2·m2·l1·lc2·θ̇2·θ̇1·sin θ2 + (m1·lc1 + m2·l1)·g·cos(θ1 − π/2) + φ2
//! θ̈2 = (a + d2/d1·φ1 − m2·l1·lc2·θ̇1²·sin θ2 − φ2) / (m2·lc2² + I2 − d2²/d1)
//! θ̈1 = −(d2·θ̈2 + φ1) / d1
//! ```
//!
//! One classical Runge–Kutta (RK4) step of `dt = 0.2` with the torque held
//! constant, then θ1, θ2 wrapped into `[−π, π]` and the velocities clipped to
//! `±4π` and `±9π`. Observation `[cos θ1, sin θ1, cos θ2, sin θ2, θ̇1, θ̇2]` (`f32`).
//! Terminate when `−cos θ1 − cos(θ1 + θ2) > 1`; reward −1 per non-terminal step and
//! 0 on the terminal one; truncate at 500 steps (threshold −100). Reset draws all
//! four state variables from `U(−0.1, 0.1)`.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

use crate::env::{EnvId, EnvSnapshot, Environment, EpisodeClock, Step};
use crate::error::Result;
use crate::rng::{EnvRng, RngState};

/// Integration step (s).
pub const DT: f64 = 0.2;
/// Link lengths (m).
pub const LINK_LENGTH: f64 = 1.0;
/// Link masses (kg).
pub const LINK_MASS: f64 = 1.0;
/// Position of each link's centre of mass (m).
pub const LINK_COM: f64 = 0.5;
/// Moment of inertia of each link.
pub const LINK_MOI: f64 = 1.0;
/// Gravity (m/s²).
pub const GRAVITY: f64 = 9.8;
/// Velocity limit of the first joint.
pub const MAX_VEL_1: f64 = 4.0 * PI;
/// Velocity limit of the second joint.
pub const MAX_VEL_2: f64 = 9.0 * PI;
/// Torques of actions 0, 1, 2.
pub const TORQUES: [f64; 3] = [-1.0, 0.0, 1.0];

/// The state `[θ1, θ2, θ̇1, θ̇2]`.
pub type AcrobotState = [f64; 4];

/// The time derivative of `[θ1, θ2, θ̇1, θ̇2]` under `torque` (book dynamics).
pub fn derivatives(s: AcrobotState, torque: f64) -> AcrobotState {
    let (m1, m2, l1, lc1, lc2, i1, i2, g) = (
        LINK_MASS,
        LINK_MASS,
        LINK_LENGTH,
        LINK_COM,
        LINK_COM,
        LINK_MOI,
        LINK_MOI,
        GRAVITY,
    );
    let [theta1, theta2, dtheta1, dtheta2] = s;
    let d1 = m1 * lc1 * lc1 + m2 * (l1 * l1 + lc2 * lc2 + 2.0 * l1 * lc2 * theta2.cos()) + i1 + i2;
    let d2 = m2 * (lc2 * lc2 + l1 * lc2 * theta2.cos()) + i2;
    let phi2 = m2 * lc2 * g * (theta1 + theta2 - PI / 2.0).cos();
    let phi1 = -m2 * l1 * lc2 * dtheta2 * dtheta2 * theta2.sin()
        - 2.0 * m2 * l1 * lc2 * dtheta2 * dtheta1 * theta2.sin()
        + (m1 * lc1 + m2 * l1) * g * (theta1 - PI / 2.0).cos()
        + phi2;
    let ddtheta2 = (torque + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1 * dtheta1 * theta2.sin() - phi2)
        / (m2 * lc2 * lc2 + i2 - d2 * d2 / d1);
    let ddtheta1 = -(d2 * ddtheta2 + phi1) / d1;
    [dtheta1, dtheta2, ddtheta1, ddtheta2]
}

fn axpy(y: AcrobotState, h: f64, k: AcrobotState) -> AcrobotState {
    std::array::from_fn(|i| y[i] + h * k[i])
}

/// One RK4 step of length `dt` with constant `torque` (no wrapping or clipping).
pub fn rk4(s: AcrobotState, torque: f64, dt: f64) -> AcrobotState {
    let k1 = derivatives(s, torque);
    let k2 = derivatives(axpy(s, dt / 2.0, k1), torque);
    let k3 = derivatives(axpy(s, dt / 2.0, k2), torque);
    let k4 = derivatives(axpy(s, dt, k3), torque);
    std::array::from_fn(|i| s[i] + dt / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]))
}

/// Wraps `x` into `[low, high]` by whole periods (Gymnasium's `wrap`).
pub fn wrap(mut x: f64, low: f64, high: f64) -> f64 {
    let period = high - low;
    while x > high {
        x -= period;
    }
    while x < low {
        x += period;
    }
    x
}

/// One environment step: RK4, wrap the angles, clip the velocities.
pub fn step_state(s: AcrobotState, action: usize) -> AcrobotState {
    let [t1, t2, v1, v2] = rk4(s, TORQUES[action], DT);
    [
        wrap(t1, -PI, PI),
        wrap(t2, -PI, PI),
        v1.clamp(-MAX_VEL_1, MAX_VEL_1),
        v2.clamp(-MAX_VEL_2, MAX_VEL_2),
    ]
}

/// Whether the tip is more than one link length above the base.
pub fn is_terminal(s: &AcrobotState) -> bool {
    -s[0].cos() - (s[1] + s[0]).cos() > 1.0
}

fn observation(s: &AcrobotState) -> Vec<f32> {
    [s[0].cos(), s[0].sin(), s[1].cos(), s[1].sin(), s[2], s[3]]
        .map(|v| v as f32)
        .to_vec()
}

/// A saved Acrobot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AcrobotSnapshot {
    /// `[θ1, θ2, θ̇1, θ̇2]`.
    pub state: AcrobotState,
    /// Episode clock.
    pub clock: EpisodeClock,
    /// Generator.
    pub rng: RngState,
}

/// Acrobot-v1.
#[derive(Clone, Debug)]
pub struct Acrobot {
    state: AcrobotState,
    clock: EpisodeClock,
    rng: EnvRng,
}

impl Acrobot {
    /// A new Acrobot-v1 seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: [0.0; 4],
            clock: EpisodeClock::default(),
            rng: EnvRng::new(seed),
        }
    }

    /// The state `[θ1, θ2, θ̇1, θ̇2]`.
    pub fn state(&self) -> AcrobotState {
        self.state
    }

    /// Starts an episode from `state` instead of a random one.
    pub fn reset_to(&mut self, state: AcrobotState) -> Vec<f32> {
        self.state = state;
        self.clock.reset();
        observation(&self.state)
    }
}

impl Environment for Acrobot {
    fn id(&self) -> EnvId {
        EnvId::AcrobotV1
    }

    fn observation_shape(&self) -> Vec<usize> {
        vec![6]
    }

    fn num_actions(&self) -> usize {
        3
    }

    fn reset(&mut self) -> Vec<f32> {
        let state = std::array::from_fn(|_| self.rng.uniform(-0.1, 0.1));
        self.reset_to(state)
    }

    fn step(&mut self, action: usize) -> Result<Step> {
        self.clock.check(EnvId::AcrobotV1, action, 3)?;
        self.state = step_state(self.state, action);
        let terminated = is_terminal(&self.state);
        let truncated = self.clock.tick(terminated, EnvId::AcrobotV1.max_episode_steps());
        Ok(Step {
            observation: observation(&self.state),
            reward: if terminated { 0.0 } else { -1.0 },
            terminated,
            truncated,
        })
    }

    fn observation(&self) -> Vec<f32> {
        observation(&self.state)
    }

    fn snapshot(&self) -> EnvSnapshot {
        EnvSnapshot::Acrobot(AcrobotSnapshot {
            state: self.state,
            clock: self.clock,
            rng: self.rng.state(),
        })
    }

    fn restore(&mut self, snapshot: &EnvSnapshot) -> Result<()> {
        match snapshot {
            EnvSnapshot::Acrobot(s) => {
                self.state = s.state;
                self.clock = s.clock;
                self.rng = EnvRng::from_state(&s.rng);
                Ok(())
            }
            other => Err(other.mismatch(EnvId::AcrobotV1)),
        }
    }
}
