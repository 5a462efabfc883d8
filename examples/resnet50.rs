//! Sparse ResNet-50 with RigL (90%, ERK) on CIFAR-10-format or image-folder data.
//!
//! ```text
//! cargo run --release --example resnet50 -- --data-dir data/cifar10            # CIFAR-10 binary, CPU
//! cargo run --release --example resnet50 -- --data-dir data/cifar10 --download # fetch it first
//! cargo run --release --features wgpu --example resnet50 -- --device wgpu --data-dir ...
//! cargo run --release --example resnet50 -- --dataset folder --data-dir my-images --image-size 64
//! ```
//!
//! The run is described by a config table, the same a `config.toml` holds, and
//! resolved exactly as the CLI resolves it. 32-pixel inputs use the CIFAR stem
//! (3×3/1, no max-pool), larger ones the ImageNet stem. The run folder
//! (`runs/resnet50-...`) gets metrics, plots, a report and a checkpoint; resume
//! it with `sparseburn train --resume <folder>`.

use sparseburn::cli::args::set;
use sparseburn::run::{RunConfig, TrainOptions, train};

const CONFIG: &str = r#"
[model]
name = "resnet50"

[data]
dataset = "cifar10"

[sparsity]
sparsity = 0.9

[method]
name = "rigl"

[optimizer]
name = "sgd"
momentum = 0.9
weight_decay = 1e-4

[training]
epochs = 30
batch_size = 128
lr = 0.1
label_smoothing = 0.1
warmup_epochs = 1.0
"#;

fn main() -> anyhow::Result<()> {
    let mut table: toml::Table = toml::from_str(CONFIG)?;
    apply_args(&mut table, std::env::args().skip(1).collect())?;
    run(&RunConfig::from_table(table)?)
}

/// Trains `cfg` into a new run folder and prints the result.
pub fn run(cfg: &RunConfig) -> anyhow::Result<()> {
    let out = cfg.default_out();
    println!(
        "training {} with {} at {:.0}%",
        cfg.model.name.name(),
        cfg.method.name(),
        100.0 * cfg.target_sparsity(),
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
        100.0 * s.test_accuracy.unwrap_or(f64::NAN),
        100.0 * s.sparsity
    );
    Ok(())
}

/// `--key value` pairs shared by the model examples, laid over the config table.
pub fn apply_args(table: &mut toml::Table, args: Vec<String>) -> anyhow::Result<()> {
    use toml::Value;
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        if flag == "--download" {
            set(table, &["data", "download"], Value::Boolean(true));
            continue;
        }
        let value = it.next().ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        let number = |v: &str| -> anyhow::Result<Value> {
            Ok(match v.parse::<i64>() {
                Ok(i) => Value::Integer(i),
                Err(_) => Value::Float(v.parse()?),
            })
        };
        match flag.as_str() {
            "--data-dir" => set(table, &["data", "data_dir"], Value::String(value)),
            "--dataset" => set(table, &["data", "dataset"], Value::String(value)),
            "--image-size" => set(table, &["data", "image_size"], number(&value)?),
            "--device" => {
                table.insert("device".into(), Value::String(value));
            }
            "--epochs" => set(table, &["training", "epochs"], number(&value)?),
            "--batch-size" => set(table, &["training", "batch_size"], number(&value)?),
            "--sparsity" => set(table, &["sparsity", "sparsity"], Value::Float(value.parse()?)),
            "--method" => set(table, &["method"], toml::from_str(&format!("name = \"{value}\""))?),
            "--width" => set(table, &["model", "width"], Value::Float(value.parse()?)),
            "--train-limit" => set(table, &["data", "train_limit"], number(&value)?),
            other => anyhow::bail!("unknown option {other}; see the example's doc comment"),
        }
    }
    Ok(())
}
