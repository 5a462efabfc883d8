//! A deep-RL run (`sparseburn train --task rl --env cartpole|acrobot|breakout`):
//! the DQN agent of `sparse_rl` with a sparse Q-network under the run's method,
//! in the same run folder as image runs.
//!
//! An epoch is `[rl] steps_per_epoch` environment steps of training followed by
//! a greedy evaluation of one episode per seed of the fixed set
//! `sparse_rl::eval_seeds` (1,000,000 + i). Following Graesser et al. (ICML
//! 2022), the sparse-training clock is the number of environment steps (the
//! agent sets the sparsifier's step to it before each gradient step), so ΔT and
//! T_end count environment steps, and the method is built for
//! `epochs × steps_per_epoch` of them.
//!
//! Files: `metrics.csv` (one row per epoch: environment and gradient steps,
//! episodes, the mean training return, the evaluation's mean and standard
//! deviation, ε, sparsity, ITOP, timings), `episodes.csv` (every training
//! episode's return and length), `checkpoint/` (the agent's networks, sparsifier,
//! replay buffer, exploration generator and environment state, `trainer.json`,
//! and the SHA-256 of every file, checked on resume), `summary.json` (`rl`: the last evaluation's seeds and
//! returns, its mean ± std, and the best evaluation's mean ± std, epoch and
//! environment steps; no accuracy or loss field: a DQN run has no test set),
//! `report.md` and `plots/`.
//!
//! **Resume.** A checkpoint is written at the end of every epoch, where the
//! whole state (replay buffer and environment generator included) is saved, and
//! a stop (Ctrl-C, `--stop-after`) takes effect there: Ctrl-C lets the running
//! epoch finish. A resumed run continues bit for bit.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sparse_core::Sparsifier;
use sparse_methods::BuildContext;
use sparse_models::count_params;
use sparse_rl::{Dqn, DqnConfig, EnvId, MinAtarQConfig, MlpQConfig, QNetwork, eval_seeds};

use super::checkpoint::write_checkpoint;
use super::checksum;
use super::interrupt::{Interrupted, Interrupter, LoopGuard};
use super::{TrainOptions, open_run};
use crate::run::artifacts::{RunDir, Summary, Versions};
use crate::run::config::{RlSection, RunConfig};
use crate::run::{plots, report};

/// Evaluation episodes of MinAtar games (no time limit) stop after this many steps.
pub const MINATAR_EVAL_STEPS: u32 = 10_000;

const HEADER: &str = "epoch,env_steps,train_steps,episodes,train_return,eval_return,eval_return_std,epsilon,sparsity,nonzeros,itop,train_seconds,eval_seconds";

/// One epoch of a DQN run (a row of `metrics.csv`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RlEpoch {
    /// Epochs done (1 after the first).
    pub epoch: u64,
    /// Environment steps taken.
    pub env_steps: u64,
    /// Gradient steps taken.
    pub train_steps: u64,
    /// Training episodes finished.
    pub episodes: u64,
    /// Mean return of the training episodes that ended in this epoch (none if none did).
    pub train_return: Option<f64>,
    /// Mean return of the evaluation episodes.
    pub eval_return: f64,
    /// Their standard deviation.
    pub eval_return_std: f64,
    /// ε at the end of the epoch.
    pub epsilon: f64,
    /// Sparsity of the sparse layers.
    pub sparsity: f64,
    /// Active weights of the sparse layers.
    pub nonzeros: usize,
    /// ITOP rate.
    pub itop: f64,
    /// Seconds of training (timing).
    pub train_seconds: f64,
    /// Seconds of evaluation (timing).
    pub eval_seconds: f64,
}

impl RlEpoch {
    fn csv(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{},{},{},{:.3},{:.3}",
            self.epoch,
            self.env_steps,
            self.train_steps,
            self.episodes,
            self.train_return.map_or(String::new(), |r| r.to_string()),
            self.eval_return,
            self.eval_return_std,
            self.epsilon,
            self.sparsity,
            self.nonzeros,
            self.itop,
            self.train_seconds,
            self.eval_seconds
        )
    }
}

/// What `checkpoint/trainer.json` keeps besides the agent.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct RlState {
    /// Epochs done.
    epoch: u64,
    /// Rows of `metrics.csv` so far.
    rows: Vec<RlEpoch>,
    /// Training episodes recorded in `episodes.csv`.
    episodes: u64,
    /// The last evaluation's returns (one per seed).
    eval_returns: Vec<f64>,
    /// Seconds of wall time of the sessions so far.
    wall_seconds: f64,
}

/// What `summary.json` adds for a DQN run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RlSummary {
    /// The environment (registered name).
    pub env: String,
    /// Environment steps trained.
    pub env_steps: u64,
    /// Gradient steps.
    pub train_steps: u64,
    /// Training episodes.
    pub episodes: u64,
    /// Mean return of the last evaluation.
    pub eval_return: f64,
    /// Its standard deviation over the episodes.
    pub eval_return_std: f64,
    /// The best evaluation of the run (none in a summary written before it was
    /// recorded).
    #[serde(default)]
    pub best: Option<RlBest>,
    /// The evaluation seeds.
    pub eval_seeds: Vec<u64>,
    /// The return of each evaluation episode, in seed order.
    pub eval_returns: Vec<f64>,
    /// Gymnasium's reward threshold of the environment, if it has one.
    pub reward_threshold: Option<f64>,
}

/// The evaluation with the highest mean return (the first epoch reaching it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RlBest {
    /// Its epoch (also `best_epoch` of the summary).
    pub epoch: u64,
    /// Environment steps trained before it.
    pub env_steps: u64,
    /// Its mean return.
    pub eval_return: f64,
    /// Their standard deviation over the episodes.
    pub eval_return_std: f64,
}

/// Trains the agent of `cfg` into `opts.out` and returns its summary.
pub fn train_rl(cfg: &RunConfig, opts: &TrainOptions) -> anyhow::Result<Summary> {
    let rl = cfg.rl.clone().context("a DQN run needs an [rl] section")?;
    let device = cfg.device.device()?.autodiff();
    let created = !opts.out.exists();
    let opened = open_run(opts)?;
    let (dir, resume) = (opened.dir.clone(), opened.resume);
    if !resume {
        dir.write("config.toml", cfg.to_toml().as_bytes())?;
    }
    device.seed(cfg.training.seed);
    let env_id = rl.env.id();
    let probe = env_id.make(cfg.training.seed);
    let (obs_len, actions) = (probe.observation_len(), probe.num_actions());
    let seed = cfg.training.seed;
    let run = Agent {
        cfg,
        opts,
        rl: &rl,
        dir: &dir,
        resume,
        env_id,
        obs_len,
        actions,
    };
    let result = if rl.env.is_minatar() {
        let shape = probe.observation_shape();
        let net = MinAtarQConfig::new(actions).with_channels(shape[0]);
        run.train(net.init(&device), DqnConfig::minatar())
    } else {
        let net = MlpQConfig::new(obs_len, actions).with_hidden(rl.hidden.clone());
        run.train(net.init(&device, seed), DqnConfig::classic_control())
    };
    if result.is_err() && !resume {
        RunDir::discard_unstarted(&opts.out, created);
    }
    drop(opened);
    result
}

struct Agent<'a> {
    cfg: &'a RunConfig,
    opts: &'a TrainOptions,
    rl: &'a RlSection,
    dir: &'a RunDir,
    resume: bool,
    env_id: EnvId,
    obs_len: usize,
    actions: usize,
}

impl Agent<'_> {
    fn dqn_config(&self, preset: DqnConfig) -> DqnConfig {
        let (t, rl) = (&self.cfg.training, self.rl);
        preset
            .with_batch_size(t.batch_size)
            .with_learning_rate(t.lr)
            .with_replay_capacity(rl.replay_capacity)
            .with_warmup_steps(rl.warmup_steps)
            .with_epsilon_decay_steps(rl.epsilon_decay_steps)
            .with_target_update_every(rl.target_update_every)
            .with_seed(t.seed)
    }

    fn sparsifier<M: QNetwork>(&self, model: &M) -> anyhow::Result<Sparsifier> {
        let cfg = self.cfg;
        let total = cfg.training.epochs as u64 * self.rl.steps_per_epoch;
        let sparsity = cfg.sparsity_config(model.sparsity_filter());
        let context = BuildContext {
            total_steps: total,
            steps_per_epoch: self.rl.steps_per_epoch,
            classes: self.actions,
            sparsity: sparsity.sparsity,
            pattern: sparsity.pattern.clone(),
        };
        let method = cfg.method.build(&context)?;
        if method.rounds().is_some() {
            bail!(
                "method `{}` trains in rounds (restarting from rewound weights), which a DQN agent's on-line training does not have; use static, set, rigl, srigl, gmp or mest",
                cfg.method.name()
            );
        }
        if method.needs_data_for_init() {
            bail!(
                "method `{}` scores the weights on a labelled batch at initialisation, which a DQN agent does not have before it acts; use static, set, rigl, srigl, gmp or mest",
                cfg.method.name()
            );
        }
        let mut sparse = Sparsifier::new(model, sparsity, method, &cfg.optimizer)?;
        if let Some(penalty) = &cfg.penalty {
            sparse = sparse.with_grad_term(penalty.term()?);
        }
        Ok(sparse)
    }

    fn train<M: QNetwork>(self, model: M, preset: DqnConfig) -> anyhow::Result<Summary> {
        let started = Instant::now();
        let sparse = self.sparsifier(&model)?;
        let config = self.dqn_config(preset);
        let seed = self.cfg.training.seed;
        let mut env = self.env_id.make(seed);
        let (mut agent, mut state) = if self.resume {
            let ckpt = self.dir.file("checkpoint");
            if ckpt.is_dir() {
                checksum::verify(&ckpt)?;
            }
            let state: RlState = serde_json::from_str(
                &std::fs::read_to_string(self.dir.file("checkpoint/trainer.json"))
                    .with_context(|| format!("{} has no checkpoint to resume from", self.dir.path.display()))?,
            )?;
            let agent = Dqn::resume(model, sparse, config, &ckpt, env.as_mut())?;
            self.keep_saved_rows(&state)?;
            (agent, state)
        } else {
            let agent = Dqn::new(model, sparse, config, self.obs_len, self.actions)?;
            self.dir.write("metrics.csv", format!("{HEADER}\n").as_bytes())?;
            self.dir.write("episodes.csv", b"episode,env_step,return,length\n")?;
            (agent, RlState::default())
        };
        if self.opts.verbose {
            println!("run folder: {}", self.dir.path.display());
        }
        let epochs = self.cfg.training.epochs as u64;
        let seeds = eval_seeds(self.rl.eval_episodes);
        let max_steps = self.rl.env.is_minatar().then_some(MINATAR_EVAL_STEPS);
        let mut interrupter = Interrupter::new(self.opts.interrupt.clone(), self.opts.stop_after_epochs);
        let session = Instant::now();
        let wall_before = state.wall_seconds;
        while state.epoch < epochs {
            let _loop = LoopGuard::enter();
            let train_start = Instant::now();
            let mut episodes = Vec::new();
            agent.run(env.as_mut(), self.rl.steps_per_epoch, |e| episodes.push(e.clone()))?;
            let train_seconds = train_start.elapsed().as_secs_f64();
            let eval_start = Instant::now();
            let eval = agent.evaluate(self.env_id, &seeds, 0.0, max_steps)?;
            let eval_seconds = eval_start.elapsed().as_secs_f64();
            let report_now = agent.sparsifier().report();
            state.epoch += 1;
            let row = RlEpoch {
                epoch: state.epoch,
                env_steps: agent.env_steps(),
                train_steps: agent.train_steps(),
                episodes: agent.counters().episodes,
                train_return: (!episodes.is_empty())
                    .then(|| episodes.iter().map(|e| e.ret).sum::<f64>() / episodes.len() as f64),
                eval_return: eval.mean(),
                eval_return_std: eval.std(),
                epsilon: agent.epsilon(),
                sparsity: report_now.sparsity(),
                nonzeros: report_now.nonzeros(),
                itop: agent.sparsifier().itop_rate(),
                train_seconds,
                eval_seconds,
            };
            append(&self.dir.file("metrics.csv"), &format!("{}\n", row.csv()))?;
            let mut lines = String::new();
            for e in &episodes {
                let _ = writeln!(lines, "{},{},{},{}", e.episode, e.env_step, e.ret, e.length);
            }
            append(&self.dir.file("episodes.csv"), &lines)?;
            if self.opts.verbose {
                println!(
                    "ep {}/{epochs} env steps {} eval return {:.1} ± {:.1} train return {} ε {:.2} sp {:.1}% {:.1}s",
                    row.epoch,
                    row.env_steps,
                    row.eval_return,
                    row.eval_return_std,
                    row.train_return.map_or("-".into(), |r| format!("{r:.1}")),
                    row.epsilon,
                    100.0 * row.sparsity,
                    train_seconds + eval_seconds
                );
            }
            state.rows.push(row);
            state.episodes = agent.counters().episodes;
            state.eval_returns = eval.returns;
            state.wall_seconds = wall_before + session.elapsed().as_secs_f64();
            self.checkpoint(&agent, env.as_ref(), &state)?;
            interrupter.epoch_done(state.epoch < epochs);
            if interrupter.should_stop() && state.epoch < epochs {
                return Err(Interrupted {
                    step: agent.env_steps(),
                    dir: self.dir.path.clone(),
                    resumable: true,
                    sweep: None,
                }
                .into());
            }
        }
        tracing::debug!(seconds = started.elapsed().as_secs_f64(), "DQN run done");
        self.finish(&agent, &state, &seeds)
    }

    /// Keeps the rows of `metrics.csv` and `episodes.csv` that the checkpoint has
    /// (a run stopped by a kill after its last checkpoint wrote more).
    fn keep_saved_rows(&self, state: &RlState) -> anyhow::Result<()> {
        let mut metrics = format!("{HEADER}\n");
        for row in &state.rows {
            let _ = writeln!(metrics, "{}", row.csv());
        }
        self.dir.write("metrics.csv", metrics.as_bytes())?;
        let text = std::fs::read_to_string(self.dir.file("episodes.csv")).unwrap_or_default();
        let kept: Vec<&str> = text.lines().take(1 + state.episodes as usize).collect();
        self.dir.write("episodes.csv", (kept.join("\n") + "\n").as_bytes())
    }

    /// Writes `checkpoint/` atomically: into `checkpoint.tmp/`, then renamed.
    fn checkpoint<M: QNetwork>(
        &self,
        agent: &Dqn<M>,
        env: &dyn sparse_rl::Environment,
        state: &RlState,
    ) -> anyhow::Result<()> {
        write_checkpoint(self.dir, state, |tmp| Ok(agent.save(tmp, env)?))
    }

    fn finish<M: QNetwork>(&self, agent: &Dqn<M>, state: &RlState, seeds: &[u64]) -> anyhow::Result<Summary> {
        let cfg = self.cfg;
        let last = state.rows.last().context("the run trained no epoch")?;
        let sparse = agent.sparsifier();
        let report_now = sparse.report();
        let train_seconds: f64 = state.rows.iter().map(|r| r.train_seconds).sum();
        let eval_seconds: f64 = state.rows.iter().map(|r| r.eval_seconds).sum();
        let best = best_evaluation(&state.rows).context("the run trained no epoch")?;
        let rl = RlSummary {
            env: self.env_id.name().to_string(),
            env_steps: last.env_steps,
            train_steps: last.train_steps,
            episodes: last.episodes,
            eval_return: last.eval_return,
            eval_return_std: last.eval_return_std,
            best: Some(RlBest {
                epoch: best.epoch,
                env_steps: best.env_steps,
                eval_return: best.eval_return,
                eval_return_std: best.eval_return_std,
            }),
            eval_seeds: seeds.to_vec(),
            eval_returns: state.eval_returns.clone(),
            reward_threshold: self.env_id.reward_threshold(),
        };
        let summary = Summary {
            model: if self.rl.env.is_minatar() { "minatar-q" } else { "mlp-q" }.to_string(),
            method: cfg.method.name().to_string(),
            dataset: self.env_id.name().to_string(),
            device: cfg.device.name().to_string(),
            seed: cfg.training.seed,
            target_sparsity: cfg.target_sparsity(),
            test_accuracy: None,
            test_loss: None,
            train_accuracy: None,
            validation_images: 0,
            best_epoch: best.epoch,
            best_validation_accuracy: None,
            test_accuracy_at_best: None,
            sparsity: report_now.sparsity(),
            nonzeros: report_now.nonzeros(),
            sparse_layer_weights: report_now.numel(),
            parameters: count_params(agent.model()),
            dense_macs: 0,
            sparse_macs: 0,
            itop: sparse.itop_rate(),
            epochs: cfg.training.epochs as u64,
            steps: last.env_steps,
            wall_seconds: state.wall_seconds,
            train_samples_per_second: last.env_steps as f64 / train_seconds.max(1e-9),
            eval_samples_per_second: state.rows.len() as f64 * seeds.len() as f64 / eval_seconds.max(1e-9),
            versions: Versions::default(),
            execution: None,
            stages: None,
            lm: None,
            rl: Some(rl),
        };
        self.dir
            .write("summary.json", serde_json::to_string_pretty(&summary)?.as_bytes())?;
        std::fs::create_dir_all(self.dir.file("plots"))?;
        report::or_warn(
            "returns.png",
            plots::return_curves(&self.dir.file("plots/returns.png"), &return_points(&state.rows)),
        );
        report::or_warn(
            "layer_density.png",
            plots::layer_density(
                &self.dir.file("plots/layer_density.png"),
                sparse.layers(),
                sparse.masks(),
            ),
        );
        self.dir
            .write("report.md", self.report(&summary, state, sparse).as_bytes())?;
        Ok(summary)
    }

    fn report(&self, summary: &Summary, state: &RlState, sparse: &Sparsifier) -> String {
        let rl = summary.rl.as_ref();
        let mut r = String::new();
        let _ = writeln!(
            r,
            "# DQN ({}) with {} on {}\n",
            summary.model, summary.method, summary.dataset
        );
        let _ = writeln!(r, "| | |\n|---|---|");
        if let Some(rl) = rl {
            let threshold = rl
                .reward_threshold
                .map_or(String::new(), |t| format!(" (Gymnasium's threshold: {t})"));
            let rows = [
                (
                    "evaluation return (last epoch)",
                    format!(
                        "{:.1} ± {:.1} over {} episodes{threshold}",
                        rl.eval_return,
                        rl.eval_return_std,
                        rl.eval_seeds.len()
                    ),
                ),
                (
                    "best evaluation return",
                    rl.best.as_ref().map_or("—".to_string(), |b| {
                        format!(
                            "{:.1} ± {:.1} at epoch {} ({} environment steps)",
                            b.eval_return, b.eval_return_std, b.epoch, b.env_steps
                        )
                    }),
                ),
                (
                    "evaluation seeds",
                    format!(
                        "{}..={}",
                        rl.eval_seeds.first().copied().unwrap_or_default(),
                        rl.eval_seeds.last().copied().unwrap_or_default()
                    ),
                ),
                (
                    "environment / gradient steps",
                    format!("{} / {}", rl.env_steps, rl.train_steps),
                ),
                ("training episodes", rl.episodes.to_string()),
            ];
            for (k, v) in rows {
                let _ = writeln!(r, "| {k} | {v} |");
            }
        }
        for (k, v) in [
            (
                "sparsity (sparse layers)",
                format!(
                    "{:.2}% (target {:.0}%)",
                    100.0 * summary.sparsity,
                    100.0 * summary.target_sparsity
                ),
            ),
            (
                "nonzero weights",
                format!("{} of {}", summary.nonzeros, summary.sparse_layer_weights),
            ),
            ("parameters (whole network)", summary.parameters.to_string()),
            ("ITOP rate", format!("{:.3}", summary.itop)),
            ("epochs", format!("{}", state.epoch)),
            (
                "wall time",
                format!("{:.0} s on {}", summary.wall_seconds, summary.device),
            ),
            (
                "throughput",
                format!("{:.0} environment steps/s", summary.train_samples_per_second),
            ),
        ] {
            let _ = writeln!(r, "| {k} | {v} |");
        }
        let _ = writeln!(
            r,
            "\nThe sparse-training clock counts environment steps (Graesser et al. 2022). Every epoch ends with a greedy evaluation of one episode per fixed seed; `metrics.csv` has one row per epoch, `episodes.csv` the return of every training episode.\n\n## Returns\n\n![returns](plots/returns.png)\n\n## Layers\n\n![density](plots/layer_density.png)\n"
        );
        let _ = writeln!(r, "| layer | density | nonzeros |\n|---|---|---|");
        for stats in &sparse.report().layers {
            let _ = writeln!(
                r,
                "| `{}` | {:.2}% | {} |",
                stats.path,
                100.0 * stats.density(),
                stats.nonzeros
            );
        }
        let _ = writeln!(
            r,
            "\n## Reproduce\n\n```\nsparseburn train --config {}/config.toml --out <new folder>\n```",
            self.dir.path.display()
        );
        r
    }
}

/// The mean evaluation return after each epoch of the DQN run whose
/// `metrics.csv` is `path`, with its environment steps (a sweep's learning curves).
pub fn eval_curve(path: &Path) -> anyhow::Result<Vec<(u64, f64)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|c| *c == name)
            .with_context(|| format!("{} has no `{name}` column: not a DQN run's metrics", path.display()))
    };
    let (steps, eval) = (column("env_steps")?, column("eval_return")?);
    lines
        .filter(|line| !line.is_empty())
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            let cell = |i: usize| cells.get(i).copied().unwrap_or_default();
            let bad = || format!("{}: a malformed row `{line}`", path.display());
            Ok((
                cell(steps).parse().with_context(bad)?,
                cell(eval).parse().with_context(bad)?,
            ))
        })
        .collect()
}

/// The points of the returns plot: one per epoch, at its environment steps.
pub fn return_points(rows: &[RlEpoch]) -> Vec<plots::ReturnPoint> {
    rows.iter()
        .map(|r| plots::ReturnPoint {
            env_steps: r.env_steps as f64,
            eval_mean: r.eval_return,
            eval_std: r.eval_return_std,
            train: r.train_return,
        })
        .collect()
}

/// The epoch with the highest mean evaluation return (the first of equals);
/// none without epochs.
pub fn best_evaluation(rows: &[RlEpoch]) -> Option<&RlEpoch> {
    rows.iter().fold(None, |best: Option<&RlEpoch>, r| match best {
        Some(b) if b.eval_return >= r.eval_return => Some(b),
        _ => Some(r),
    })
}

fn append(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_evaluation_curve_reads_back_from_metrics_csv() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("metrics.csv");
        let rows = [row(1, 9.5), row(2, -30.25)];
        let csv: Vec<String> = rows.iter().map(RlEpoch::csv).collect();
        std::fs::write(&path, format!("{HEADER}\n{}\n", csv.join("\n"))).unwrap();
        assert_eq!(eval_curve(&path).unwrap(), [(100, 9.5), (200, -30.25)]);
        std::fs::write(&path, "epoch,train_loss\n1,0.5\n").unwrap();
        let e = eval_curve(&path).unwrap_err().to_string();
        assert!(e.contains("no `env_steps` column"), "{e}");
        std::fs::write(&path, format!("{HEADER}\n1,x\n")).unwrap();
        let e = eval_curve(&path).unwrap_err().to_string();
        assert!(e.contains("malformed row `1,x`"), "{e}");
    }

    fn row(epoch: u64, eval_return: f64) -> RlEpoch {
        RlEpoch {
            epoch,
            env_steps: 100 * epoch,
            train_steps: 0,
            episodes: 0,
            train_return: None,
            eval_return,
            eval_return_std: 0.0,
            epsilon: 0.0,
            sparsity: 0.0,
            nonzeros: 0,
            itop: 0.0,
            train_seconds: 0.0,
            eval_seconds: 0.0,
        }
    }

    #[test]
    fn the_best_evaluation_is_the_first_with_the_highest_mean_return() {
        assert!(best_evaluation(&[]).is_none());
        let rows = [row(1, 9.0), row(2, 30.0), row(3, 12.0), row(4, 30.0), row(5, 20.0)];
        let best = best_evaluation(&rows).unwrap();
        assert_eq!((best.epoch, best.env_steps), (2, 200));
        // a higher return later wins
        let rows = [row(1, 9.0), row(2, 30.0), row(3, 31.0)];
        assert_eq!(best_evaluation(&rows).unwrap().epoch, 3);
    }
}
