//! The "truly sparse" showcase (issue 10; Curci, Mocanu & Pechenizkiy,
//! "Truly Sparse Neural Networks at Scale", 2021): a 784→65,536→65,536→10
//! MLP — 4.3 billion dense weights, 17 GB as f32 before its gradient and
//! optimizer state, so its dense twin cannot train on a 24 GiB machine —
//! trained at 99.5% sparsity with SET or RigL on Fashion-MNIST.
//!
//! ```text
//! cargo run --release --example truly_sparse -- --method set
//! cargo run --release --example truly_sparse -- --method rigl
//! cargo run --release --example truly_sparse -- --method rigl --hidden 4096 --epochs 3   # quick
//! ```
//!
//! Nothing of the dense shape is ever built: the model starts from
//! [`CompactMlp::random`] (random masks and values drawn position by
//! position), every step runs the sparse kernels on the active values, and
//! the topology updates run on the compact layers
//! ([`sparse_kernels::train::compact_update`]): magnitude drop over the
//! values, SET's random growth from counter-based scores, RigL's growth as a
//! tiled top-`k` of `|Xᵀ·dY|` (`dY` from a zero probe added to each layer's
//! output on update steps). The settings are the CLI's for the MLP (ERK,
//! SGD momentum 0.9, weight decay 5e-4, lr 0.1 with cosine decay, batch
//! 128) and the methods' defaults (`SetConfig::new()`, `RigLConfig::new()`).
//! It prints one line per epoch and writes a JSON report (`--out`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use clap::Parser;
use sparseburn::data::{BatchOrder, DataConfig, ImageBatcher, ImageSet};
use sparseburn::prelude::*;
use sparseburn::sparse_kernels::train::CompactUpdate;
use sparseburn::sparse_models::{Classifier, CompactMlp, compact_rule_step, rigl_rule, set_rule};

#[derive(Parser, Debug)]
struct Args {
    /// `set` or `rigl`.
    #[arg(long, default_value = "rigl")]
    method: String,
    /// Width of both hidden layers.
    #[arg(long, default_value_t = 65_536)]
    hidden: usize,
    /// Overall sparsity of the three layers (ERK distribution).
    #[arg(long, default_value_t = 0.995)]
    sparsity: f64,
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    #[arg(long, default_value_t = 128)]
    batch: usize,
    #[arg(long, default_value_t = 0.1)]
    lr: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fashion-MNIST folder (default: Debian's dataset-fashion-mnist).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Stop after this many steps (0: every epoch in full); for a smoke run.
    #[arg(long, default_value_t = 0)]
    max_steps: u64,
    /// JSON report.
    #[arg(long, default_value = "truly_sparse.json")]
    out: PathBuf,
}

/// The compact drop/grow rule of `method` with its library defaults.
fn rule(method: &str, total_steps: u64, seed: u64) -> anyhow::Result<CompactUpdate> {
    Ok(match method {
        "set" => set_rule(&SetConfig::new(), total_steps, seed)?,
        "rigl" => rigl_rule(&RigLConfig::new(), total_steps, seed)?,
        other => bail!("--method {other}: the showcase trains `set` or `rigl`"),
    })
}

/// Peak and current resident memory (VmHWM, VmRSS) in bytes, from /proc.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn accuracy(model: &CompactMlp, set: &ImageSet, batcher: &ImageBatcher, device: &Device) -> f64 {
    let model = model.valid();
    let inner = device.clone().inner();
    let indices: Vec<usize> = (0..set.len()).collect();
    let mut correct = 0i64;
    for chunk in indices.chunks(500) {
        let batch = batcher.batch_indices(set, chunk, &inner, None);
        let predicted = model.forward(batch.images).argmax(1).squeeze_dim::<1>(1);
        let hits: Tensor<1, Int> = predicted.equal(batch.targets).int();
        correct += hits.sum().into_scalar::<i64>();
    }
    correct as f64 / set.len() as f64
}

fn quartiles(mut xs: Vec<f64>) -> [f64; 3] {
    if xs.is_empty() {
        return [0.0; 3];
    }
    xs.sort_by(f64::total_cmp);
    let at = |q: f64| xs[((xs.len() - 1) as f64 * q).round() as usize];
    [at(0.25), at(0.5), at(0.75)]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.batch == 0 || args.epochs == 0 {
        bail!("--batch and --epochs must be at least 1 (the showcase: --batch 128 --epochs 1)");
    }
    if !(args.lr.is_finite() && args.lr > 0.0) {
        bail!(
            "--lr {} must be a positive number (the CLI's MLP default: 0.1)",
            args.lr
        );
    }
    let device = Device::flex().autodiff();
    let data = DataConfig {
        data_dir: args.data.clone(),
        ..DataConfig::default()
    };
    let (train, test) = data
        .load()
        .context("loading Fashion-MNIST (Debian: apt-get install dataset-fashion-mnist)")?;
    let batcher = ImageBatcher::new(&train);
    let order = BatchOrder {
        len: train.len(),
        batch_size: args.batch,
        seed: args.seed,
    };
    let total = (args.epochs * order.batches_per_epoch()) as u64;
    let rule = rule(&args.method, total, args.seed)?;
    let widths = [784, args.hidden, args.hidden, 10];
    let config = SparsityConfig::new().with_sparsity(args.sparsity).with_seed(args.seed);
    let started = Instant::now();
    let mut model = CompactMlp::random(&widths, &config, &device)?;
    let dense_weights: usize = widths.windows(2).map(|w| w[0] * w[1]).sum();
    let active: usize = model.layers.iter().map(|l| l.nnz()).sum();
    println!(
        "{widths:?}: {dense_weights} dense weights ({:.1} GB as f32), {active} active ({:.3}% dense), built in {:.1} s",
        dense_weights as f64 * 4e-9,
        100.0 * active as f64 / dense_weights as f64,
        started.elapsed().as_secs_f64()
    );
    let mut optimizer = OptimizerConfig::sgd(0.9, 5e-4).init();
    let (mut steps, mut updates, mut epochs) = (Vec::new(), Vec::new(), Vec::new());
    let mut step = 0u64;
    let stop = |step: u64| args.max_steps > 0 && step >= args.max_steps;
    for epoch in 0..args.epochs as u64 {
        let epoch_started = Instant::now();
        for indices in order.batches(epoch) {
            if stop(step) {
                break;
            }
            let t0 = Instant::now();
            let lr = 0.5 * args.lr * (1.0 + (std::f64::consts::PI * step as f64 / total as f64).cos());
            let batch = batcher.batch_indices(&train, &indices, &device, None);
            let (m, loss) = compact_rule_step(model, &rule, &mut optimizer, step, lr, (batch.images, batch.targets))?;
            model = m;
            if step.is_multiple_of(50) {
                let value = loss.into_scalar::<f32>();
                println!(
                    "step {step}: loss {value:.4}, lr {lr:.4}, {:.1} s since start",
                    started.elapsed().as_secs_f64()
                );
            }
            if rule.is_update_step(step) {
                updates.push(t0.elapsed().as_secs_f64());
            } else {
                steps.push(t0.elapsed().as_secs_f64());
            }
            step += 1;
        }
        let acc = accuracy(&model, &test, &batcher, &device);
        let (peak, rss) = memory();
        let secs = epoch_started.elapsed().as_secs_f64();
        let [_, median, _] = quartiles(steps.clone());
        println!(
            "epoch {epoch}: {secs:.0} s, test accuracy {:.2}%, step {median:.3} s (median), {} updates, peak RSS {:.2} GB, RSS {:.2} GB",
            100.0 * acc,
            updates.len(),
            peak as f64 * 1e-9,
            rss as f64 * 1e-9
        );
        epochs.push(serde_json::json!({"epoch": epoch, "seconds": secs, "test_accuracy": acc, "peak_rss_bytes": peak}));
        if stop(step) {
            break;
        }
    }
    let (peak, _) = memory();
    let report = serde_json::json!({
        "method": args.method,
        "widths": widths,
        "sparsity": args.sparsity,
        "dense_weights": dense_weights,
        "active_weights": active,
        "batch": args.batch,
        "steps": step,
        "step_seconds_quartiles": quartiles(steps),
        "update_step_seconds": updates,
        "peak_rss_bytes": peak,
        "wall_seconds": started.elapsed().as_secs_f64(),
        "epochs": epochs,
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("report: {}", args.out.display());
    Ok(())
}
