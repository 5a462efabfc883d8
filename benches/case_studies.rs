//! Cost of the two case studies per 1000 training steps (run:
//! `cargo bench --bench case_studies`), to size their sweeps.
//!
//! 1. DQN on CartPole-v1 with Graesser et al.'s network (4-512-512-2, batch 128,
//!    Adam, one gradient step per environment step): seconds per 1000 environment
//!    steps (acting, environment, replay, gradient step, target sync), dense and
//!    RigL 90% (ERK, updates every 1000 steps).
//! 2. The character-level transformer on fortunes (vocabulary 113, context 64,
//!    batch 16): seconds per 1000 training steps, dense and RigL 90% on the block
//!    projections, for 4 layers of width 128 and 2 layers of width 128; and the
//!    seconds one bits-per-character evaluation of the whole validation split takes.
//!
//! Each round runs every configuration once, in an order that alternates between
//! rounds, so all see the same machine state; the quartiles over rounds are printed.
//! Environment: `SPARSEBURN_DEVICE` (default flex), `BENCH_ROUNDS` (default 5),
//! `BENCH_DQN_STEPS` (default 500) and `BENCH_LM_STEPS` (default 50) steps per
//! measurement.

use std::time::Instant;

// the allocator of the `sparseburn` binary, so the numbers match the CLI
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::Device;
use sparse_rl::{Dqn, DqnConfig, EnvId, Environment, MlpQ, MlpQConfig};
use sparseburn::data::text::{FORTUNES_DIR, Split, TextCorpus, TokenKind, token_tensor};
use sparseburn::prelude::*;
use sparseburn::sparse_core::Rng;
use sparseburn::sparse_models::{CharTransformer, CharTransformerConfig, NextToken};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn quartiles(mut v: Vec<f64>) -> [f64; 3] {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    [q(0.25), q(0.5), q(0.75)]
}

fn sparse_method(sparse: bool, every: u64) -> Box<dyn sparseburn::sparse_core::Method> {
    if sparse {
        let updates = UpdateSchedule::new(1_000_000).with_interval(every);
        Box::new(RigL::with_schedule(&RigLConfig::new(), updates).expect("a valid RigL schedule"))
    } else {
        Box::new(StaticRandom)
    }
}

struct DqnCase {
    agent: Dqn<MlpQ>,
    env: Box<dyn Environment>,
}

fn dqn_case(device: &Device, sparse: bool) -> anyhow::Result<DqnCase> {
    let model = MlpQConfig::new(4, 2).init(device, 0);
    let config = SparsityConfig::new().with_sparsity(if sparse { 0.9 } else { 0.0 });
    let sparsifier = Sparsifier::new(
        &model,
        config,
        sparse_method(sparse, 1_000),
        &DqnConfig::classic_control_optimizer(),
    )?;
    let mut agent = Dqn::new(
        model,
        sparsifier,
        DqnConfig::classic_control().with_warmup_steps(500),
        4,
        2,
    )?;
    let mut env = EnvId::CartPoleV1.make(0);
    agent.run(env.as_mut(), 600, |_| {})?; // past the warm-up
    Ok(DqnCase { agent, env })
}

struct LmCase {
    model: CharTransformer,
    sparse: Sparsifier,
    rng: Rng,
}

fn lm_case(device: &Device, vocab: usize, layers: usize, sparse: bool) -> anyhow::Result<LmCase> {
    let model = CharTransformerConfig::new(vocab)
        .with_block(64)
        .with_layers(layers)
        .with_heads(4)
        .with_d_model(128)
        .with_dropout(0.0)
        .init(device)?;
    let config = SparsityConfig::new()
        .with_sparsity(if sparse { 0.9 } else { 0.0 })
        .with_filter(model.sparsity_filter());
    let mut sparsifier = Sparsifier::new(&model, config, sparse_method(sparse, 100), &OptimizerConfig::adam())?;
    let model = sparsifier.init(model)?;
    Ok(LmCase {
        model,
        sparse: sparsifier,
        rng: Rng::new(0),
    })
}

fn lm_steps(case: &mut LmCase, corpus: &TextCorpus, device: &Device, steps: usize) -> anyhow::Result<()> {
    for _ in 0..steps {
        let (x, y) = corpus.random_windows(Split::Train, 16, 64, &mut case.rng)?;
        let loss = case
            .model
            .loss(token_tensor(x, 16, 64, device), token_tensor(y, 16, 64, device));
        let grads = GradientsParams::from_grads(loss.backward(), &case.model);
        case.model = case.sparse.step(case.model.clone(), grads, 1e-3)?;
    }
    let _ = device.sync();
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let device = BackendKind::from_env()?.device()?.autodiff();
    let rounds = env_usize("BENCH_ROUNDS", 5);
    let dqn_steps = env_usize("BENCH_DQN_STEPS", 500);
    let lm_steps_n = env_usize("BENCH_LM_STEPS", 50);
    let corpus = TextCorpus::load(FORTUNES_DIR, TokenKind::Char)?;
    let vocab = corpus.vocab.size();

    let names = [
        "DQN CartPole dense",
        "DQN CartPole RigL 90%",
        "LM L4 d128 dense",
        "LM L4 d128 RigL 90%",
        "LM L2 d128 dense",
        "LM L2 d128 RigL 90%",
    ];
    let mut dqn = [dqn_case(&device, false)?, dqn_case(&device, true)?];
    let mut lm = [
        lm_case(&device, vocab, 4, false)?,
        lm_case(&device, vocab, 4, true)?,
        lm_case(&device, vocab, 2, false)?,
        lm_case(&device, vocab, 2, true)?,
    ];
    let mut per_1000: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut eval = Vec::new();
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..names.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let start = Instant::now();
            let steps = if i < 2 {
                let case = &mut dqn[i];
                case.agent.run(case.env.as_mut(), dqn_steps as u64, |_| {})?;
                dqn_steps
            } else {
                lm_steps(&mut lm[i - 2], &corpus, &device, lm_steps_n)?;
                lm_steps_n
            };
            per_1000[i].push(start.elapsed().as_secs_f64() * 1000.0 / steps as f64);
        }
        let start = Instant::now();
        let bpc = lm[0]
            .model
            .valid()
            .bits_per_token(&corpus.valid, 64, &device.clone().inner())?;
        eval.push(start.elapsed().as_secs_f64());
        println!("round {round}: done (L4 dense validation {bpc:.3} bits/char)");
    }
    println!(
        "seconds per 1000 steps, median [quartiles] over {rounds} rounds of {dqn_steps} DQN / {lm_steps_n} LM steps:"
    );
    for (name, v) in names.iter().zip(per_1000) {
        let [q1, q2, q3] = quartiles(v);
        println!("  {name:<24} {q2:7.1}  [{q1:.1}, {q3:.1}]");
    }
    let [q1, q2, q3] = quartiles(eval);
    println!(
        "  {:<24} {q2:7.1}  [{q1:.1}, {q3:.1}] seconds ({} characters, L4 d128)",
        "LM validation bpc",
        corpus.valid.len()
    );
    Ok(())
}
