//! Deep Q-learning (Mnih et al. 2015, "Human-level control through deep
//! reinforcement learning") with a sparse Q-network.
//!
//! For a minibatch of transitions `(s, a, r, s', terminal)` from the replay buffer
//! and the target network `Q̄` (a copy of the online network `Q`, refreshed every
//! `target_update_every` gradient steps):
//!
//! ```text
//! y = r + γ·(1 − terminal)·max_a' Q̄(s', a')
//! L = mean over the batch of ℓ(Q(s, a) − y)      ℓ: Huber (δ = 1) or squared
//! ```
//!
//! The gradient step is sparseburn's [`Sparsifier::step`]: masked gradients, a
//! mask-aware optimizer, and the method's topology updates. Following Graesser,
//! Evci, Elsen & Castro (ICML 2022), the sparse-training clock is the number of
//! **environment steps** taken (warm-up included): before every gradient step the
//! sparsifier's step is set to it, so an update schedule "every 1000 steps until
//! 75,000" means environment steps whatever `train_every` is (choose an update
//! interval that is a multiple of `train_every`).
//!
//! Exploration is ε-greedy: actions are uniform during the `warmup_steps` random
//! collection, then ε falls linearly from `epsilon_start` to `epsilon_end` over
//! `epsilon_decay_steps` (Dopamine's `linearly_decaying_epsilon`, counted after the
//! warm-up) and stays there. Episodes cut by a time limit bootstrap from `s'`.
//!
//! Presets: [`DqnConfig::classic_control`] (Graesser et al., Table 6) and
//! [`DqnConfig::minatar`] (MinAtar's `examples/dqn.py`).

use burn::config::Config;
use burn::nn::loss::{HuberLossConfig, Reduction};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use sparse_core::optim::AdamSettings;
use sparse_core::{OptimizerConfig, Sparsifier, host};

use std::path::Path;

use crate::env::{EnvId, EnvSnapshot, Environment};
use crate::error::{Result, RlError};
use crate::qnet::{QNetwork, scale_for_density};
use crate::replay::{ReplayBuffer, write_atomic};
use crate::rng::{EnvRng, RngState};

/// The per-transition TD loss.
#[derive(Config, Debug, PartialEq)]
pub enum TdLoss {
    /// Huber loss with threshold δ (Mnih et al. 2015; MinAtar).
    Huber {
        /// δ.
        delta: f32,
    },
    /// Squared TD error (Graesser et al.'s classic-control gin files).
    Squared,
}

/// DQN settings.
#[derive(Config, Debug)]
pub struct DqnConfig {
    /// Discount γ.
    #[config(default = 0.99)]
    pub gamma: f64,
    /// Minibatch size.
    #[config(default = 128)]
    pub batch_size: usize,
    /// Replay capacity (transitions).
    #[config(default = 100_000)]
    pub replay_capacity: usize,
    /// Environment steps of uniformly random actions before training starts.
    #[config(default = 1_000)]
    pub warmup_steps: u64,
    /// Environment steps per gradient step.
    #[config(default = 1)]
    pub train_every: u64,
    /// Gradient steps between hard copies of the online network into the target.
    #[config(default = 100)]
    pub target_update_every: u64,
    /// ε at the end of the warm-up.
    #[config(default = 1.0)]
    pub epsilon_start: f64,
    /// Final ε.
    #[config(default = 0.1)]
    pub epsilon_end: f64,
    /// Environment steps after the warm-up over which ε decays linearly.
    #[config(default = 25_000)]
    pub epsilon_decay_steps: u64,
    /// Learning rate.
    #[config(default = 1e-3)]
    pub learning_rate: f64,
    /// TD loss.
    #[config(default = "TdLoss::Huber { delta: 1.0 }")]
    pub loss: TdLoss,
    /// Rescale sparse variance-scaled layers by `1/√density` after the masks are set.
    #[config(default = true)]
    pub sparsity_aware_init: bool,
    /// Seed of exploration and replay sampling.
    #[config(default = 0)]
    pub seed: u64,
}

impl DqnConfig {
    /// Graesser et al. 2022, classic control (Table 6): batch 128, replay 100k,
    /// 1000 random steps, one gradient step per environment step, target copied
    /// every 100 gradient steps, lr 1e-3, γ 0.99, ε from 1 to 0.1 over 25k steps
    /// (Table 6; the gin file fixes ε = 0.01 instead), squared TD error.
    /// Use it with [`DqnConfig::classic_control_optimizer`].
    pub fn classic_control() -> Self {
        Self::new().with_loss(TdLoss::Squared)
    }

    /// Adam (β = 0.9, 0.999, ε = 1e-8) with L2 weight decay 1e-6, as Graesser et al.
    pub fn classic_control_optimizer() -> OptimizerConfig {
        OptimizerConfig::Adam(AdamSettings::new().with_weight_decay(1e-6))
    }

    /// MinAtar's DQN (`examples/dqn.py`): batch 32, replay 100k, 5000 random steps,
    /// one gradient step per frame, target copied every 1000 updates, lr 2.5e-4,
    /// ε from 1 to 0.1 over 100k frames, Huber loss. MinAtar uses centred RMSProp;
    /// sparseburn's mask-aware optimizers are SGD and Adam, so use
    /// [`DqnConfig::minatar_optimizer`] (Adam) instead.
    pub fn minatar() -> Self {
        Self::new()
            .with_batch_size(32)
            .with_warmup_steps(5_000)
            .with_target_update_every(1_000)
            .with_learning_rate(2.5e-4)
            .with_epsilon_decay_steps(100_000)
    }

    /// Adam with ε = 0.01/32 (Dopamine's MinAtar setting), no weight decay.
    pub fn minatar_optimizer() -> OptimizerConfig {
        OptimizerConfig::Adam(AdamSettings::new().with_epsilon(0.01 / 32.0))
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(RlError::InvalidConfig(m));
        if !(0.0..=1.0).contains(&self.gamma) {
            return bad(format!("discount γ = {} must be in [0, 1]", self.gamma));
        }
        if self.batch_size == 0 || self.replay_capacity == 0 || self.train_every == 0 || self.target_update_every == 0 {
            return bad("batch size, replay capacity, train_every and target_update_every must be at least 1".into());
        }
        for (name, e) in [("epsilon_start", self.epsilon_start), ("epsilon_end", self.epsilon_end)] {
            if !(0.0..=1.0).contains(&e) {
                return bad(format!("{name} = {e} must be in [0, 1]"));
            }
        }
        if self.learning_rate.is_nan() || self.learning_rate <= 0.0 {
            return bad(format!("learning rate {} must be > 0", self.learning_rate));
        }
        Ok(())
    }

    /// ε at environment step `t` (Dopamine's `linearly_decaying_epsilon` after the warm-up;
    /// 1 during the warm-up).
    pub fn epsilon_at(&self, t: u64) -> f64 {
        if t < self.warmup_steps {
            return 1.0;
        }
        if self.epsilon_decay_steps == 0 {
            return self.epsilon_end;
        }
        let p = ((t - self.warmup_steps) as f64 / self.epsilon_decay_steps as f64).min(1.0);
        self.epsilon_start + (self.epsilon_end - self.epsilon_start) * p
    }
}

/// One finished training episode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpisodeRecord {
    /// Episode number, from 0.
    pub episode: u64,
    /// Environment steps taken when it ended.
    pub env_step: u64,
    /// Undiscounted return.
    pub ret: f64,
    /// Length in steps.
    pub length: u32,
}

/// The counters of a run, for saving: with the model, the sparsifier state, the
/// replay buffer and the environment snapshot they resume a run exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DqnCounters {
    /// Environment steps taken.
    pub env_steps: u64,
    /// Gradient steps taken.
    pub train_steps: u64,
    /// Episodes finished.
    pub episodes: u64,
    /// Return of the running episode so far.
    pub episode_return: f64,
    /// Length of the running episode so far.
    pub episode_length: u32,
    /// The running episode needs a reset before the next step.
    pub needs_reset: bool,
    /// Exploration generator.
    pub rng: RngState,
}

/// A DQN agent whose Q-network `M` is trained through a [`Sparsifier`].
pub struct Dqn<M: QNetwork> {
    config: DqnConfig,
    online: M,
    target: M,
    sparse: Sparsifier,
    replay: ReplayBuffer,
    rng: EnvRng,
    device: Device,
    obs_len: usize,
    actions: usize,
    counters: DqnCounters,
}

impl<M: QNetwork> std::fmt::Debug for Dqn<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dqn")
            .field("sparse", &self.sparse)
            .field("env_steps", &self.counters.env_steps)
            .field("train_steps", &self.counters.train_steps)
            .finish()
    }
}

/// The device of the first parameter; it must be an autodiff device.
fn first_device<M: QNetwork>(model: &M) -> Result<Device> {
    let device = model
        .devices()
        .into_iter()
        .next()
        .ok_or_else(|| RlError::InvalidConfig("the Q-network has no parameters".into()))?;
    if !device.is_autodiff() {
        return Err(RlError::InvalidConfig(
            "the Q-network must be created on an autodiff device (`device.autodiff()`)".into(),
        ));
    }
    Ok(device)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| RlError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| RlError::CorruptState {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| RlError::InvalidConfig(e.to_string()))?;
    write_atomic(path, text.as_bytes())
}

fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) },
        )
        .0
}

/// Greedy actions of `model` for `n` flat observations (ties: lowest index).
pub fn greedy_actions<M: QNetwork>(model: &M, obs: Vec<f32>, n: usize, device: &Device) -> Result<Vec<usize>> {
    let obs_len = obs.len() / n.max(1);
    let q = model.q_values(Tensor::from_data(TensorData::new(obs, [n, obs_len]), device));
    let [_, actions] = q.dims();
    let q = host::to_vec(q)?;
    Ok(q.chunks(actions).map(argmax).collect())
}

impl<M: QNetwork> Dqn<M> {
    /// An agent for observations of `obs_len` floats and `actions` actions.
    /// `model` lives on an autodiff device; `sparse` was built for it
    /// ([`Sparsifier::new`]) and is initialised here.
    pub fn new(model: M, mut sparse: Sparsifier, config: DqnConfig, obs_len: usize, actions: usize) -> Result<Self> {
        config.validate()?;
        let device = first_device(&model)?;
        let mut online = sparse.init(model)?;
        if config.sparsity_aware_init {
            online = sparse.apply_masks(scale_for_density(online, &sparse))?;
        }
        let target = online.valid();
        let replay = ReplayBuffer::new(config.replay_capacity, obs_len, config.seed ^ 0x5eed_5eed)?;
        let rng = EnvRng::new(config.seed);
        let counters = DqnCounters {
            env_steps: 0,
            train_steps: 0,
            episodes: 0,
            episode_return: 0.0,
            episode_length: 0,
            needs_reset: true,
            rng: rng.state(),
        };
        Ok(Self {
            config,
            online,
            target,
            sparse,
            replay,
            rng,
            device,
            obs_len,
            actions,
            counters,
        })
    }

    /// ε now.
    pub fn epsilon(&self) -> f64 {
        self.config.epsilon_at(self.counters.env_steps)
    }

    /// An ε-greedy action for `obs` at the current ε.
    pub fn act(&mut self, obs: &[f32]) -> Result<usize> {
        if self.rng.bernoulli(self.epsilon()) {
            return Ok(self.rng.below(self.actions as u64) as usize);
        }
        self.greedy(obs)
    }

    /// The greedy action for `obs`.
    pub fn greedy(&self, obs: &[f32]) -> Result<usize> {
        let inner = self.device.clone().inner();
        Ok(greedy_actions(&self.online.valid(), obs.to_vec(), 1, &inner)?[0])
    }

    /// Stores a transition, counts an environment step, and trains when due.
    /// Returns the loss of the gradient step, if one was taken.
    pub fn observe(
        &mut self,
        obs: &[f32],
        action: usize,
        reward: f64,
        next_obs: &[f32],
        terminal: bool,
    ) -> Result<Option<f32>> {
        self.replay.push(obs, action, reward as f32, next_obs, terminal)?;
        self.counters.env_steps += 1;
        let t = self.counters.env_steps;
        if t < self.config.warmup_steps || !t.is_multiple_of(self.config.train_every) {
            return Ok(None);
        }
        let loss = self.train_step()?;
        if self
            .counters
            .train_steps
            .is_multiple_of(self.config.target_update_every)
        {
            self.target = self.online.valid();
        }
        Ok(Some(loss))
    }

    /// One gradient step on a replay minibatch.
    fn train_step(&mut self) -> Result<f32> {
        let b = self.config.batch_size;
        let batch = self.replay.sample(b)?;
        let inner = self.device.clone().inner();
        let next_obs = Tensor::<2>::from_data(TensorData::new(batch.next_obs, [b, self.obs_len]), &inner);
        let next_q = self.target.q_values(next_obs).max_dim(1);
        let rewards = Tensor::<2>::from_data(TensorData::new(batch.rewards, [b, 1]), &inner);
        let not_done = Tensor::<2>::from_data(TensorData::new(batch.terminals, [b, 1]), &inner)
            .neg()
            .add_scalar(1.0);
        let y = Tensor::from_inner(rewards + not_done * next_q.mul_scalar(self.config.gamma));
        let obs = Tensor::<2>::from_data(TensorData::new(batch.obs, [b, self.obs_len]), &self.device);
        let actions = Tensor::<2, Int>::from_data(TensorData::new(batch.actions, [b, 1]), &self.device);
        let q = self.online.q_values(obs).gather(1, actions);
        let loss = match self.config.loss {
            TdLoss::Huber { delta } => HuberLossConfig::new(delta).init().forward(q, y, Reduction::Mean),
            TdLoss::Squared => (q - y).powi_scalar(2).mean(),
        };
        let value = host::to_vec(loss.clone().inner())?[0];
        let grads = GradientsParams::from_grads(loss.backward(), &self.online);
        self.sparse.set_step(self.counters.env_steps);
        self.online = self
            .sparse
            .step(self.online.clone(), grads, self.config.learning_rate)?;
        self.counters.train_steps += 1;
        Ok(value)
    }

    /// Runs `steps` environment steps on `env` (resetting it when an episode
    /// ends or before the first step), calling `on_episode` for every finished
    /// episode. The environment must be the same one across calls (its episode
    /// continues).
    pub fn run(
        &mut self,
        env: &mut dyn Environment,
        steps: u64,
        mut on_episode: impl FnMut(&EpisodeRecord),
    ) -> Result<()> {
        if env.observation_len() != self.obs_len || env.num_actions() != self.actions {
            return Err(RlError::InvalidConfig(format!(
                "{} has observations of {} floats and {} actions, the agent was built for {} and {}",
                env.id(),
                env.observation_len(),
                env.num_actions(),
                self.obs_len,
                self.actions
            )));
        }
        let mut obs = if self.counters.needs_reset {
            self.start_episode(env)
        } else {
            env.observation()
        };
        for _ in 0..steps {
            let action = self.act(&obs)?;
            let step = env.step(action)?;
            self.counters.episode_return += step.reward;
            self.counters.episode_length += 1;
            self.observe(&obs, action, step.reward, &step.observation, step.terminated)?;
            let done = step.done();
            obs = step.observation;
            if done {
                let record = EpisodeRecord {
                    episode: self.counters.episodes,
                    env_step: self.counters.env_steps,
                    ret: self.counters.episode_return,
                    length: self.counters.episode_length,
                };
                tracing::debug!(episode = record.episode, ret = record.ret, "episode finished");
                on_episode(&record);
                self.counters.episodes += 1;
                obs = self.start_episode(env);
            }
        }
        Ok(())
    }

    fn start_episode(&mut self, env: &mut dyn Environment) -> Vec<f32> {
        self.counters.needs_reset = false;
        self.counters.episode_return = 0.0;
        self.counters.episode_length = 0;
        env.reset()
    }

    /// The online network.
    pub fn model(&self) -> &M {
        &self.online
    }

    /// The target network.
    pub fn target(&self) -> &M {
        &self.target
    }

    /// The sparsifier (masks, sparsity report, state saving).
    pub fn sparsifier(&self) -> &Sparsifier {
        &self.sparse
    }

    /// The replay buffer.
    pub fn replay(&self) -> &ReplayBuffer {
        &self.replay
    }

    /// The settings.
    pub fn config(&self) -> &DqnConfig {
        &self.config
    }

    /// The run's counters (with the exploration generator's state).
    pub fn counters(&self) -> DqnCounters {
        DqnCounters {
            rng: self.rng.state(),
            ..self.counters.clone()
        }
    }

    /// Environment steps taken.
    pub fn env_steps(&self) -> u64 {
        self.counters.env_steps
    }

    /// Gradient steps taken.
    pub fn train_steps(&self) -> u64 {
        self.counters.train_steps
    }

    /// Saves everything a resumed run needs into the folder `dir`: the online and
    /// target networks (`online.bpk`, `target.bpk`), the sparsifier (masks, optimizer
    /// moments, method state: `sparse.safetensors`), the replay buffer
    /// (`replay.safetensors`), the counters and exploration generator (`agent.json`)
    /// and the environment with its generator (`env.json`).
    pub fn save(&self, dir: impl AsRef<Path>, env: &dyn Environment) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| RlError::io(dir, e))?;
        let record = |model: M, name: &str| {
            model.save_file(dir.join(name)).map_err(|e| RlError::CorruptState {
                path: dir.join(name),
                detail: format!("saving the network failed: {e:?}"),
            })
        };
        record(self.online.clone(), "online")?;
        record(self.target.clone(), "target")?;
        self.sparse.save(dir.join("sparse.safetensors"))?;
        self.replay.save(dir.join("replay.safetensors"))?;
        write_json(&dir.join("agent.json"), &self.counters())?;
        write_json(&dir.join("env.json"), &env.snapshot())?;
        tracing::info!(dir = %dir.display(), env_steps = self.counters.env_steps, "saved DQN agent");
        Ok(())
    }

    /// Resumes an agent saved by [`Dqn::save`]: `model` and `sparse` are built as
    /// for [`Dqn::new`] (same shapes, method and optimizer), `env` is the same
    /// environment and is restored to the saved state. The run then continues
    /// exactly as if it had not stopped.
    pub fn resume(
        model: M,
        mut sparse: Sparsifier,
        config: DqnConfig,
        dir: impl AsRef<Path>,
        env: &mut dyn Environment,
    ) -> Result<Self> {
        config.validate()?;
        let dir = dir.as_ref();
        let load = |model: M, name: &str| {
            model.try_load_file(dir.join(name)).map_err(|e| RlError::CorruptState {
                path: dir.join(name),
                detail: format!("the saved network does not fit this model ({e:?})"),
            })
        };
        let device = first_device(&model)?;
        let online = load(model.clone(), "online")?;
        sparse.load(dir.join("sparse.safetensors"), &online)?;
        let online = sparse.apply_masks(online)?;
        let target = load(model, "target")?.valid();
        let replay = ReplayBuffer::load(dir.join("replay.safetensors"))?;
        let counters: DqnCounters = read_json(&dir.join("agent.json"))?;
        let snapshot: EnvSnapshot = read_json(&dir.join("env.json"))?;
        env.restore(&snapshot)?;
        if replay.obs_len() != env.observation_len() {
            return Err(RlError::InvalidConfig(format!(
                "{}: the replay buffer holds observations of {} floats but {} has {}",
                dir.display(),
                replay.obs_len(),
                env.id(),
                env.observation_len()
            )));
        }
        tracing::info!(dir = %dir.display(), env_steps = counters.env_steps, "resumed DQN agent");
        Ok(Self {
            rng: EnvRng::from_state(&counters.rng),
            obs_len: replay.obs_len(),
            actions: env.num_actions(),
            config,
            online,
            target,
            sparse,
            replay,
            device,
            counters,
        })
    }

    /// Evaluates the online network on `env` with one episode per seed (see [`evaluate`]).
    pub fn evaluate(&self, env: EnvId, seeds: &[u64], epsilon: f64, max_steps: Option<u32>) -> Result<Evaluation> {
        evaluate(&self.online.valid(), env, seeds, epsilon, max_steps)
    }
}

/// Returns of evaluation episodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// One return per seed, in seed order.
    pub returns: Vec<f64>,
    /// One length per seed.
    pub lengths: Vec<u32>,
}

impl Evaluation {
    /// Mean return.
    pub fn mean(&self) -> f64 {
        self.returns.iter().sum::<f64>() / self.returns.len().max(1) as f64
    }

    /// Population standard deviation of the returns.
    pub fn std(&self) -> f64 {
        let m = self.mean();
        (self.returns.iter().map(|r| (r - m) * (r - m)).sum::<f64>() / self.returns.len().max(1) as f64).sqrt()
    }
}

/// The fixed evaluation seed set: `n` seeds from 1,000,000 on (disjoint from
/// training seeds, which are small numbers).
pub fn eval_seeds(n: usize) -> Vec<u64> {
    (0..n as u64).map(|i| 1_000_000 + i).collect()
}

/// Plays one episode of `env` per seed with `model` (on a plain, non-autodiff
/// device), ε-greedy with `epsilon` (exploration drawn from the episode's seed),
/// all episodes batched through the network together. `max_steps` truncates
/// episodes of environments without a time limit.
pub fn evaluate<M: QNetwork>(
    model: &M,
    env: EnvId,
    seeds: &[u64],
    epsilon: f64,
    max_steps: Option<u32>,
) -> Result<Evaluation> {
    let device = model
        .devices()
        .into_iter()
        .next()
        .ok_or_else(|| RlError::InvalidConfig("the Q-network has no parameters".into()))?;
    let mut envs: Vec<Box<dyn Environment>> = seeds.iter().map(|&s| env.make(s)).collect();
    let mut rngs: Vec<EnvRng> = seeds.iter().map(|&s| EnvRng::new(s ^ 0xe7a1)).collect();
    let mut obs: Vec<Vec<f32>> = envs.iter_mut().map(|e| e.reset()).collect();
    let mut returns = vec![0.0; seeds.len()];
    let mut lengths = vec![0u32; seeds.len()];
    let mut active: Vec<usize> = (0..seeds.len()).collect();
    while !active.is_empty() {
        let flat: Vec<f32> = active.iter().flat_map(|&i| obs[i].iter().copied()).collect();
        let greedy = greedy_actions(model, flat, active.len(), &device)?;
        let mut still = Vec::with_capacity(active.len());
        for (k, &i) in active.iter().enumerate() {
            let action = if rngs[i].bernoulli(epsilon) {
                rngs[i].below(envs[i].num_actions() as u64) as usize
            } else {
                greedy[k]
            };
            let step = envs[i].step(action)?;
            returns[i] += step.reward;
            lengths[i] += 1;
            let done = step.done();
            obs[i] = step.observation;
            if !done && max_steps.is_none_or(|m| lengths[i] < m) {
                still.push(i);
            }
        }
        active = still;
    }
    Ok(Evaluation { returns, lengths })
}
