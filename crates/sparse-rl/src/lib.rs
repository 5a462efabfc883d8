//! # sparse-rl
//!
//! Reinforcement learning for sparseburn:
//! * environments implemented in Rust with the reference dynamics, free of Burn:
//!   [`CartPole`] (Gymnasium `CartPole-v1`/`v0`), [`Acrobot`] (`Acrobot-v1`) and
//!   MinAtar [`Breakout`]; each is seeded, and saves and restores its whole
//!   state ([`EnvSnapshot`]) for exact resume;
//! * with the `agent` feature (default): a DQN agent whose Q-network is any Burn
//!   module made sparse by sparseburn's [`sparse_core::Sparsifier`], with a seeded,
//!   saveable replay buffer, ε-greedy exploration with linear decay, target-network
//!   sync and evaluation over a fixed seed set. Sparse-training updates count
//!   environment steps, as in Graesser et al. 2022.

pub mod acrobot;
pub mod breakout;
pub mod cartpole;
#[cfg(feature = "agent")]
pub mod dqn;
pub mod env;
pub mod error;
#[cfg(feature = "agent")]
pub mod qnet;
pub mod replay;
pub mod rng;

pub use acrobot::Acrobot;
pub use breakout::Breakout;
pub use cartpole::CartPole;
pub use env::{EnvId, EnvSnapshot, Environment, Step};
pub use error::{Result, RlError};
pub use replay::{ReplayBuffer, Transition};
pub use rng::{EnvRng, RngState};

#[cfg(feature = "agent")]
pub use dqn::{Dqn, DqnConfig, EpisodeRecord, Evaluation, TdLoss, eval_seeds, evaluate};
#[cfg(feature = "agent")]
pub use qnet::{MinAtarQ, MinAtarQConfig, MlpQ, MlpQConfig, QNetwork};
