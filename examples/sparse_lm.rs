//! A sparse character-level language model on Debian's fortunes: a small
//! decoder-only transformer whose attention and MLP projections are 90% sparse
//! under RigL (embeddings and head dense). The sparse part is four lines, marked
//! `// +sparse`.
//!
//! ```text
//! apt-get install fortunes                                   # the corpus (2.6 MB)
//! cargo run --release --example sparse_lm                    # RigL 90%, 300 steps, seed 0
//! cargo run --release --example sparse_lm -- dense 300 0     # the dense twin
//! cargo run --release --example sparse_lm -- rigl 300 0 /path/to/text/folder
//! ```
//!
//! Prints the bits per character on the first 16k validation characters every
//! 100 steps, the validation and test bpc (whole splits) at the end, and a sample
//! of generated text.

use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use sparseburn::data::text::{FORTUNES_DIR, Split, TextCorpus, TokenKind, token_tensor};
use sparseburn::prelude::*;
use sparseburn::sparse_core::{Rng, optim::AdamSettings};
use sparseburn::sparse_models::{CharTransformerConfig, NextToken};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let method = args.first().map_or("rigl", String::as_str);
    let steps: u64 = args.get(1).map_or(Ok(300), |s| s.parse())?;
    let seed: u64 = args.get(2).map_or(Ok(0), |s| s.parse())?;
    let dir = args.get(3).map_or(FORTUNES_DIR, String::as_str);
    let device = BackendKind::from_env()?.device()?.autodiff();
    device.seed(seed);

    let corpus = TextCorpus::load(dir, TokenKind::Char)?;
    let (batch, block) = (16, 64);
    corpus.check_block(Split::Valid, block)?;
    let config = CharTransformerConfig::new(corpus.vocab.size())
        .with_block(block)
        .with_layers(4)
        .with_heads(4)
        .with_d_model(128)
        .with_dropout(0.0);
    let model = config.init(&device)?;
    println!(
        "{}: {} characters (vocabulary {}), train/valid/test {}/{}/{}; model {} parameters",
        corpus.name,
        corpus.train.len() + corpus.valid.len() + corpus.test.len(),
        corpus.vocab.size(),
        corpus.train.len(),
        corpus.valid.len(),
        corpus.test.len(),
        sparseburn::sparse_models::count_params(&model)
    );

    let updates = UpdateSchedule::new(steps * 3 / 4).with_interval(50); // +sparse: RigL every 50 steps until 75%
    let sparsity = SparsityConfig::new()
        .with_sparsity(if method == "dense" { 0.0 } else { 0.9 })
        .with_filter(model.sparsity_filter()) // +sparse: attention and MLP projections
        .with_seed(seed);
    let adam = OptimizerConfig::Adam(AdamSettings::new().with_beta_2(0.99));
    let mut sparse = match method {
        "dense" | "static" => Sparsifier::new(&model, sparsity, StaticRandom, &adam)?,
        "set" => Sparsifier::new(&model, sparsity, Set::with_schedule(&SetConfig::new(), updates)?, &adam)?,
        "rigl" => Sparsifier::new(
            &model,
            sparsity,
            RigL::with_schedule(&RigLConfig::new(), updates)?,
            &adam,
        )?, // +sparse
        other => anyhow::bail!("unknown method `{other}`; use dense, static, set or rigl"),
    };
    let mut model = sparse.init(model)?; // +sparse

    // learning rate: linear warm-up over 10% of the steps, then cosine decay to 10% (nanoGPT's recipe)
    let (peak, warmup) = (1e-3, (steps / 10).max(1));
    let lr = |t: u64| {
        if t < warmup {
            peak * (t + 1) as f64 / warmup as f64
        } else {
            let p = (t - warmup) as f64 / (steps - warmup).max(1) as f64;
            0.1 * peak + 0.45 * peak * (1.0 + (std::f64::consts::PI * p).cos())
        }
    };
    let inner = device.clone().inner();
    let probe = corpus.valid.len().min(16_384); // progress prints use the first 16k validation characters
    let mut rng = Rng::new(seed);
    let start = Instant::now();
    let mut eval_secs = 0.0;
    for t in 0..steps {
        let (x, y) = corpus.random_windows(Split::Train, batch, block, &mut rng)?;
        let loss = model.loss(
            token_tensor(x, batch, block, &device),
            token_tensor(y, batch, block, &device),
        );
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = sparse.step(model, grads, lr(t))?; // +sparse: replaces the optimizer step
        if (t + 1).is_multiple_of(100) || t + 1 == steps {
            let train_time = start.elapsed().as_secs_f64() - eval_secs;
            let eval_start = Instant::now();
            let bpc = model.valid().bits_per_token(&corpus.valid[..probe], 64, &inner)?;
            eval_secs += eval_start.elapsed().as_secs_f64();
            println!(
                "{method} step {:>5}: validation {bpc:.3} bits/char  sparsity {:.1}%  {:.0} ms/step ({:.0} tokens/s)",
                t + 1,
                100.0 * sparse.report().sparsity(),
                1000.0 * train_time / (t + 1) as f64,
                ((t + 1) * (batch * block) as u64) as f64 / train_time
            );
        }
    }
    let model = model.valid();
    println!(
        "{method} seed {seed}: after {steps} steps, validation {:.3} and test {:.3} bits/char (whole splits), {:.0} s",
        model.bits_per_token(&corpus.valid, 64, &inner)?,
        model.bits_per_token(&corpus.test, 64, &inner)?,
        start.elapsed().as_secs_f64()
    );
    let prompt = corpus.vocab.encode("The ")?;
    let sample = model.generate(&prompt, 200, 0.8, seed, &inner)?;
    println!("sample (temperature 0.8):\n{}", corpus.vocab.decode(&sample)?);
    Ok(())
}
