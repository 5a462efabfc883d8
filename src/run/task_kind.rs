//! What a run trains: the `task` of a run config (`--task`).

use serde::{Deserialize, Serialize};

/// The tasks the CLI trains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum TaskKind {
    /// Image classification (the `[model]` and `[data]` sections).
    #[default]
    #[serde(rename = "image")]
    #[value(name = "image")]
    Image,
    /// Character- or byte-level language modelling with a decoder-only
    /// transformer on a text folder (the `[lm]` section).
    #[serde(rename = "lm")]
    #[value(name = "lm")]
    Lm,
    /// Deep reinforcement learning: a DQN agent with a sparse Q-network.
    #[serde(rename = "rl")]
    #[value(name = "rl")]
    Rl,
}

impl TaskKind {
    /// The name, as on the command line and in `config.toml`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Lm => "lm",
            Self::Rl => "rl",
        }
    }
}

impl std::str::FromStr for TaskKind {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "image" => Ok(Self::Image),
            "lm" => Ok(Self::Lm),
            "rl" => Ok(Self::Rl),
            other => anyhow::bail!("unknown task `{other}`; tasks: image, lm, rl"),
        }
    }
}

/// The environments of `task = "rl"` (`[rl] env`, `--env`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum RlEnv {
    /// Gymnasium's CartPole-v1 (500-step limit, solved at an average return of 475).
    #[default]
    #[serde(rename = "cartpole")]
    #[value(name = "cartpole")]
    Cartpole,
    /// Gymnasium's Acrobot-v1 (500-step limit, solved at −100).
    #[serde(rename = "acrobot")]
    #[value(name = "acrobot")]
    Acrobot,
    /// MinAtar Breakout with the minimal action set (`MinAtar/Breakout-v1`).
    #[serde(rename = "breakout")]
    #[value(name = "breakout")]
    Breakout,
}

impl RlEnv {
    /// The name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cartpole => "cartpole",
            Self::Acrobot => "acrobot",
            Self::Breakout => "breakout",
        }
    }

    /// The environment it stands for.
    pub fn id(self) -> sparse_rl::EnvId {
        match self {
            Self::Cartpole => sparse_rl::EnvId::CartPoleV1,
            Self::Acrobot => sparse_rl::EnvId::AcrobotV1,
            Self::Breakout => sparse_rl::EnvId::BreakoutV1,
        }
    }

    /// A MinAtar game (conv network, MinAtar's DQN settings) rather than classic control.
    pub fn is_minatar(self) -> bool {
        self == Self::Breakout
    }
}
