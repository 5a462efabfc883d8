//! A sparse DQN agent on CartPole-v1: RigL at 90% sparsity (or dense) with the
//! classic-control settings of Graesser et al. 2022 ("The State of Sparse
//! Training in Deep Reinforcement Learning"). The sparse part is four lines,
//! marked `// +sparse`.
//!
//! ```text
//! cargo run --release --example sparse_dqn                    # RigL 90%, 100k env steps, seed 0
//! cargo run --release --example sparse_dqn -- dense 100000 1  # dense, 100k steps, seed 1
//! ```
//!
//! Prints a greedy evaluation over 100 fixed seeds every 5000 environment steps
//! (Gymnasium's CartPole-v1 threshold is an average return of 475).

use std::time::Instant;

use sparse_rl::{Dqn, DqnConfig, EnvId, MlpQConfig, eval_seeds};
use sparseburn::prelude::*;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let method = args.first().map_or("rigl", String::as_str);
    let total: u64 = args.get(1).map_or(Ok(100_000), |s| s.parse())?;
    let seed: u64 = args.get(2).map_or(Ok(0), |s| s.parse())?;
    let device = BackendKind::from_env()?.device()?.autodiff();
    device.seed(seed);

    let env_id = EnvId::CartPoleV1;
    let mut env = env_id.make(seed);
    let model = MlpQConfig::new(4, 2).init(&device, seed); // 4 → 512 → 512 → 2

    // RigL as in Graesser et al.: every 1000 env steps until 75%, drop fraction 0.5 with cosine decay
    let updates = UpdateSchedule::new(total * 3 / 4).with_interval(1_000); // +sparse
    let rigl = RigL::with_schedule(&RigLConfig::new().with_drop_fraction(0.5), updates)?; // +sparse
    let sparsity = if method == "dense" { 0.0 } else { 0.9 };
    let config = SparsityConfig::new().with_sparsity(sparsity).with_seed(seed); // +sparse: ERK, every layer
    let optimizer = DqnConfig::classic_control_optimizer();
    let sparse = match method {
        "dense" => Sparsifier::new(&model, config, StaticRandom, &optimizer)?,
        "rigl" => Sparsifier::new(&model, config, rigl, &optimizer)?, // +sparse
        other => anyhow::bail!("unknown method `{other}`; use rigl or dense"),
    };
    let mut agent = Dqn::new(model, sparse, DqnConfig::classic_control().with_seed(seed), 4, 2)?;

    // greedy evaluation over 100 fixed seeds every 5000 env steps
    let seeds = eval_seeds(100);
    let start = Instant::now();
    let mut recent: Vec<f64> = Vec::new();
    let mut solved_at = None;
    while agent.env_steps() < total {
        let chunk = 5_000.min(total - agent.env_steps());
        agent.run(env.as_mut(), chunk, |episode| recent.push(episode.ret))?;
        let eval = agent.evaluate(env_id, &seeds, 0.0, None)?;
        if eval.mean() >= 475.0 && solved_at.is_none() {
            solved_at = Some(agent.env_steps());
        }
        let last = &recent[recent.len().saturating_sub(20)..];
        println!(
            "{method} step {:>6}: eval return {:6.1} ± {:5.1}  train return (last 20 episodes) {:6.1}  ε {:.2}  sparsity {:.1}%  {:.0} s",
            agent.env_steps(),
            eval.mean(),
            eval.std(),
            last.iter().sum::<f64>() / last.len().max(1) as f64,
            agent.epsilon(),
            100.0 * agent.sparsifier().report().sparsity(),
            start.elapsed().as_secs_f64()
        );
    }
    let eval = agent.evaluate(env_id, &seeds, 0.0, None)?;
    println!(
        "{method} seed {seed}: final average return over 100 evaluation episodes {:.1} ± {:.1}; first ≥ 475 at {}; {:.2} s per 1000 env steps",
        eval.mean(),
        eval.std(),
        solved_at.map_or("never".to_string(), |s| format!("step {s}")),
        start.elapsed().as_secs_f64() * 1000.0 / total as f64
    );
    for layer in agent.sparsifier().report().layers {
        println!(
            "  {:<16} {:>6} of {:>6} weights kept",
            layer.path, layer.nonzeros, layer.numel
        );
    }
    Ok(())
}
