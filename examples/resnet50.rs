//! Sparse ResNet-50 with RigL (90%, ERK) on CIFAR-10-format or image-folder data.
//!
//! ```text
//! cargo run --release --example resnet50 -- --data-dir data/cifar10            # CIFAR-10 binary, CPU
//! cargo run --release --example resnet50 -- --data-dir data/cifar10 --download # fetch it first
//! cargo run --release --features wgpu --example resnet50 -- --device wgpu --data-dir ...
//! cargo run --release --example resnet50 -- --dataset folder --data-dir my-images --image-size 64
//! ```
//!
//! 32-pixel inputs use the CIFAR stem (3×3/1, no max-pool), larger ones the
//! ImageNet stem. The run folder (`runs/resnet50-...`) gets metrics, plots, a
//! report and a checkpoint; resume it with `sparseburn train --resume <folder>`.

#![allow(clippy::field_reassign_with_default)] // the settings read best one per line

use sparseburn::run::{RunConfig, TrainOptions, train};

fn main() -> anyhow::Result<()> {
    let mut cfg = RunConfig::default();
    cfg.model.name = "resnet50".into();
    cfg.data.dataset = sparseburn::data::DatasetKind::Cifar10;
    cfg.method.name = "rigl".into();
    cfg.sparsity.sparsity = 0.9;
    cfg.training.epochs = 30;
    cfg.training.batch_size = 128;
    cfg.training.lr = 0.1;
    cfg.training.weight_decay = 1e-4;
    cfg.training.label_smoothing = 0.1;
    cfg.training.warmup_epochs = 1.0;
    apply_args(&mut cfg, std::env::args().skip(1).collect())?;
    run(&cfg)
}

/// Trains `cfg` into a new run folder and prints the result.
pub fn run(cfg: &RunConfig) -> anyhow::Result<()> {
    let out = cfg.default_out();
    println!(
        "training {} (width {}) with {} at {:.0}% into {}",
        cfg.model.name,
        cfg.model.width,
        cfg.method.name,
        100.0 * cfg.sparsity.sparsity,
        out.display()
    );
    let opts = TrainOptions {
        out,
        resume: false,
        interrupt: Default::default(),
        verbose: true,
        stop_after_epochs: None,
    };
    let s = train(cfg, &opts)?;
    println!(
        "test accuracy {:.2}% at sparsity {:.1}%",
        100.0 * s.test_accuracy,
        100.0 * s.sparsity
    );
    Ok(())
}

/// `--key value` pairs shared by the model examples.
pub fn apply_args(cfg: &mut RunConfig, args: Vec<String>) -> anyhow::Result<()> {
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        if flag == "--download" {
            cfg.data.download = true;
            continue;
        }
        let value = it.next().ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--data-dir" => cfg.data.data_dir = Some(value.into()),
            "--dataset" => cfg.data.dataset = value.parse().map_err(anyhow::Error::msg)?,
            "--image-size" => cfg.data.image_size = value.parse()?,
            "--device" => cfg.device = value,
            "--epochs" => cfg.training.epochs = value.parse()?,
            "--batch-size" => cfg.training.batch_size = value.parse()?,
            "--sparsity" => cfg.sparsity.sparsity = value.parse()?,
            "--method" => cfg.method.name = value,
            "--width" => cfg.model.width = value.parse()?,
            "--train-limit" => cfg.data.train_limit = value.parse()?,
            other => anyhow::bail!("unknown option {other}; see the example's doc comment"),
        }
    }
    Ok(())
}
