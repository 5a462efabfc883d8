//! The `sparseburn` command line: `train`, `sweep`, `info` and `methods`, a thin
//! layer over [`crate::run`] (the binary only calls [`main`]).

pub mod args;
pub mod choices;
pub mod methods;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use sparse_core::{OptimizerConfig, Pattern};
use sparse_methods::oneshot::{OneShotConfig, OneShotMethod};
use sparse_methods::{MethodConfig, Penalty, RegularizationConfig};
use sparse_models::{FormatKind, MobileNetV1Config};

use self::args::{
    ConfigArgs, DataArgs, MethodArgs, ModelArgs, ModelRunArgs, PenaltyArgs, RunArgs, RunEnvArgs, ShapeArgs, TaskArgs,
    TrainingArgs, flag_name, merge, switches,
};
use self::choices::MethodName;
use crate::data::{DatasetKind, split};
use crate::run::config::{STEP_GAMMA, SparsitySection};
use crate::run::execution::Execution;
use crate::run::sweep::{SweepMetric, SweepSpec, sweep};
use crate::run::{Interrupted, RunConfig, Summary, TrainOptions, info::info, train};

/// Sparse training for Burn.
#[derive(Parser)]
#[command(name = "sparseburn", version, about)]
pub struct Cli {
    /// More log output (repeat for debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train one model with one method.
    Train(TrainArgs),
    /// Methods × sparsities × seeds on one model, then a table and a plot.
    Sweep(SweepArgs),
    /// Per-layer shapes, densities, nonzeros and multiply-adds of a model, without training.
    Info(InfoArgs),
    /// The methods and their switches (with their defaults).
    Methods(MethodsArgs),
    /// Write a finished run as one deployable sparse model file (safetensors + metadata).
    Export(ExportArgs),
    /// Evaluate an exported model file on a dataset's test split.
    Infer(InferArgs),
    /// Time an exported model (or a finished run) against its dense twin: latency, throughput, memory, size.
    Bench(BenchArgs),
    /// Prune a trained dense model in one shot (magnitude, Wanda, SparseGPT) into an exported model file.
    Prune(PruneArgs),
}

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Run folder (default runs/<model>-<method>-<sparsity>-s<seed>-<time>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Continue the run in this folder from its last checkpoint (with its own settings).
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
    /// Also train the dense twin (same settings, the dense baseline) and compare.
    #[arg(long)]
    compare_dense: bool,
    /// Stop cleanly (checkpoint, exit code 130) after this many epochs; continue with --resume.
    #[arg(long, value_name = "EPOCHS", value_parser = clap::value_parser!(u64).range(1..))]
    stop_after: Option<u64>,
}

#[derive(Args)]
struct SweepArgs {
    #[command(flatten)]
    task: TaskArgs,
    #[command(flatten)]
    config: ConfigArgs,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    model_run: ModelRunArgs,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    shape: ShapeArgs,
    #[command(flatten)]
    penalty: PenaltyArgs,
    #[command(flatten)]
    training: TrainingArgs,
    #[command(flatten)]
    env: RunEnvArgs,
    /// Methods, comma separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "dense,static,set,rigl")]
    methods: Vec<MethodName>,
    /// A switch `key=value` for the swept methods that have it, repeatable.
    #[arg(short = 'm', long = "method-arg", value_name = "KEY=VALUE")]
    method_args: Vec<String>,
    /// Sparsities, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "0.9,0.95")]
    sparsities: Vec<f64>,
    /// Number of seeds (1, 2, ...).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    seeds: u64,
    /// Sweep folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(Args)]
struct InfoArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Input shape CxHxW (default: the dataset's, else the model's natural input: 1x28x28 for mlp and cnn, 3x224x224 for the ResNets and MobileNetV1).
    #[arg(long, value_name = "CxHxW")]
    input: Option<String>,
    /// Classes (default: the dataset's, else 10 for mlp and cnn, 1000 for the ImageNet models).
    #[arg(long)]
    classes: Option<usize>,
    /// Take the input shape and classes of this dataset.
    #[arg(long, value_enum)]
    dataset: Option<DatasetKind>,
    /// Target sparsity in [0, 1) of the sparse layers.
    #[arg(long)]
    sparsity: Option<f64>,
    #[command(flatten)]
    shape: ShapeArgs,
    /// The method (it may imply a pattern: srigl, srste).
    #[arg(long, value_enum)]
    method: Option<MethodName>,
}

/// Layer formats `export` can be asked for.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ExportFormat {
    /// Per layer, from its mask's pattern and the measured density crossovers.
    Auto,
    /// Compressed sparse rows (any mask).
    Csr,
    /// Constant fan-in, condensed (needs the same fan-in in every kept neuron).
    Condensed,
    /// N:M (needs at most N active in every group of M).
    Nm,
    /// Dense masked weights (the dense twin).
    Dense,
}

impl ExportFormat {
    fn kind(self) -> FormatKind {
        match self {
            Self::Auto => FormatKind::Auto,
            Self::Csr => FormatKind::Csr,
            Self::Condensed => FormatKind::Condensed,
            Self::Nm => FormatKind::Nm,
            Self::Dense => FormatKind::Dense,
        }
    }
}

#[derive(Args)]
struct ExportArgs {
    /// A finished run folder (written by `sparseburn train --out`).
    #[arg(value_name = "RUN_DIR")]
    run_dir: PathBuf,
    /// The layers' format.
    #[arg(long, value_enum, default_value = "auto")]
    format: ExportFormat,
    /// The model file to write (e.g. model.safetensors).
    #[arg(short, long, value_name = "FILE")]
    out: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct InferArgs {
    /// An exported model file.
    #[arg(value_name = "MODEL")]
    model: PathBuf,
    /// The dataset (image models; a language model is evaluated on the test
    /// split of its corpus: --data-dir, else fortunes).
    #[arg(long, value_enum)]
    dataset: Option<DatasetKind>,
    /// Folder with the dataset files (a language model's corpus folder).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Use only the first N test images (as the run did with --test-limit).
    #[arg(long, value_name = "N")]
    test_limit: Option<usize>,
    /// Image folders: side of the resized images.
    #[arg(long, value_name = "PIXELS")]
    image_size: Option<usize>,
    /// Image folders: 1 or 3 channels.
    #[arg(long)]
    channels: Option<usize>,
    /// Images per batch (a language model: context windows per forward pass).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,
    /// The backend to run on (flex, ndarray, wgpu, cuda: those compiled into this build).
    #[arg(long, default_value = "flex", value_name = "BACKEND")]
    device: String,
    /// Also write the result as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct BenchArgs {
    /// An exported model file, or a finished run folder.
    #[arg(value_name = "MODEL|RUN_DIR")]
    source: PathBuf,
    /// Also write the figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Fewer rounds (a first look).
    #[arg(long)]
    quick: bool,
    /// Skip the peak-memory probes (two child processes).
    #[arg(long)]
    no_memory: bool,
    /// The backend to run on (flex, ndarray, wgpu, cuda: those compiled into this build).
    #[arg(long, default_value = "flex", value_name = "BACKEND")]
    device: String,
    /// Internal: run one side alone and print its peak RSS.
    #[arg(long, hide = true, value_parser = ["sparse", "dense"])]
    memory_of: Option<String>,
}

/// One-shot pruning methods.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum PruneMethod {
    /// Smallest |W| per layer.
    Magnitude,
    /// Smallest |W|·‖X‖ per output row (Sun et al. 2023).
    Wanda,
    /// OBS pruning with weight reconstruction from the calibration Hessian (Frantar & Alistarh 2023).
    Sparsegpt,
}

impl PruneMethod {
    fn method(self) -> OneShotMethod {
        match self {
            Self::Magnitude => OneShotMethod::Magnitude,
            Self::Wanda => OneShotMethod::Wanda,
            Self::Sparsegpt => OneShotMethod::SparseGpt,
        }
    }
}

#[derive(Args)]
struct PruneArgs {
    /// A finished dense run folder (written by `sparseburn train --method dense --out DIR`); its final weights are pruned.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["model", "init_weights", "width"])]
    run: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    /// Or: torchvision-format weights of --model (a safetensors file).
    #[arg(long, value_name = "FILE", requires = "model")]
    init_weights: Option<PathBuf>,
    /// The one-shot method.
    #[arg(long, value_enum)]
    method: PruneMethod,
    /// Target sparsity in [0, 1) of the pruned layers [default: 0.5, or 1 - N/M with --pattern N:M].
    #[arg(long)]
    sparsity: Option<f64>,
    /// unstructured, or N:M (keep N of every M consecutive fan-in weights, e.g. 2:4).
    #[arg(long, value_name = "PATTERN", default_value = "unstructured")]
    pattern: Pattern,
    /// Leave the first conv/linear layer dense.
    #[arg(long)]
    dense_first_layer: bool,
    /// Leave the last layer (the classifier) dense.
    #[arg(long)]
    dense_last_layer: bool,
    /// Leave the weights matching this glob dense (e.g. 'layer1.*'), repeatable.
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// The dataset: calibration images from its training split, accuracies on its test split [default with --run: the run's].
    #[arg(long, value_enum, value_name = "DATASET")]
    calibration: Option<DatasetKind>,
    /// Folder with the dataset files.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Image folders: side of the resized images.
    #[arg(long, value_name = "PIXELS")]
    image_size: Option<usize>,
    /// Image folders: 1 or 3 channels.
    #[arg(long)]
    channels: Option<usize>,
    /// With --init-weights: the per-channel mean, comma-separated, of the pixels scaled to [0, 1] that the weights expect (images are fed as (x − mean)/std); torchvision's ImageNet weights: 0.485,0.456,0.406 [default: the dataset's own, as `train` normalises].
    #[arg(
        long,
        value_name = "M,...",
        value_delimiter = ',',
        requires = "init_weights",
        allow_negative_numbers = true
    )]
    mean: Vec<f32>,
    /// With --init-weights: the per-channel standard deviation, comma-separated, that the weights expect; torchvision's ImageNet weights: 0.229,0.224,0.225 [default: the dataset's own].
    #[arg(long, value_name = "S,...", value_delimiter = ',', requires = "init_weights")]
    std: Vec<f32>,
    /// Calibration images, drawn from the training split (Wanda and SparseGPT used 128 sequences).
    #[arg(long, value_name = "N", default_value_t = 128)]
    calibration_samples: usize,
    /// Seed of the calibration images' choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Evaluate on the first N test images only [default with --run: the run's --test-limit, else all].
    #[arg(long, value_name = "N")]
    test_limit: Option<usize>,
    /// Images per batch (calibration and evaluation).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,
    /// The layers' format in the file.
    #[arg(long, value_enum, default_value = "auto")]
    format: ExportFormat,
    /// The model file to write (e.g. pruned.safetensors).
    #[arg(short, long, value_name = "FILE")]
    out: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
    /// Also write the report (accuracies, per-layer sparsity and error) as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct MethodsArgs {
    /// Print the table of docs/methods.md (Markdown).
    #[arg(long)]
    markdown: bool,
}

/// The name clap shows for a choice.
fn choice_name(value: &impl clap::ValueEnum) -> String {
    value
        .to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

/// `[default: ...]` texts appended to the help of options whose default lives in
/// the configs (the run's and the library's), so the help cannot drift from them.
fn defaults() -> Vec<(&'static str, String)> {
    let d = RunConfig::default();
    let t = &d.training;
    let data = crate::data::DataConfig::default();
    let sparsity = d.sparsity.clone().unwrap_or_else(SparsitySection::new);
    let (optimizer, momentum, weight_decay) = match &d.optimizer {
        OptimizerConfig::Sgd(s) => ("sgd", s.momentum, s.weight_decay),
        OptimizerConfig::Adam(a) => (if a.decoupled { "adamw" } else { "adam" }, 0.0, a.weight_decay),
    };
    vec![
        ("model", d.model.name.name().into()),
        ("width", format!("{:?}", MobileNetV1Config::new().width)),
        ("dataset", choice_name(&d.data.dataset)),
        (
            "validation",
            format!(
                "min({}, 10% of the training set); none below {} images",
                split::DEFAULT_MAX,
                split::DEFAULT_MIN_SET
            ),
        ),
        ("image_size", data.image_size.to_string()),
        ("channels", data.channels.to_string()),
        ("sparsity", d.target_sparsity().to_string()),
        (
            "distribution",
            format!(
                "{}; the method's reference where it differs: global for snip and grasp, uniform for gmp and mest",
                sparsity.distribution
            ),
        ),
        ("method", d.method.name().into()),
        (
            "penalty_strength",
            RegularizationConfig::new(Penalty::L1).strength.to_string(),
        ),
        ("epochs", t.epochs.to_string()),
        ("batch_size", t.batch_size.to_string()),
        ("grad_accumulation", t.grad_accumulation.to_string()),
        ("eval_batch_size", t.eval_batch_size.to_string()),
        ("optimizer", optimizer.into()),
        ("lr", t.lr.to_string()),
        ("momentum", momentum.to_string()),
        ("weight_decay", weight_decay.to_string()),
        ("schedule", choice_name(&t.schedule)),
        ("gamma", STEP_GAMMA.to_string()),
        ("warmup_epochs", t.warmup_epochs.to_string()),
        ("label_smoothing", t.label_smoothing.to_string()),
        ("augment", "true for cifar10, else false".into()),
        ("seed", t.seed.to_string()),
        ("execution", choice_name(&t.execution)),
        ("device", d.device.name().into()),
    ]
}

/// The command with the defaults in its help and the methods' switches after `train --help`.
pub fn command() -> clap::Command {
    let defaults = defaults();
    let mut cmd = Cli::command();
    for sub in ["train", "sweep", "info"] {
        cmd = cmd.mut_subcommand(sub, |mut c| {
            for (id, text) in &defaults {
                // `info` without --dataset takes the model's natural input
                let no_default = sub == "info" && *id == "dataset";
                if !no_default && c.get_arguments().any(|a| a.get_id() == id) {
                    c = c.mut_arg(id, |a| {
                        let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                        a.help(format!("{help} [default: {text}]"))
                    });
                }
            }
            c
        });
    }
    cmd.mut_subcommand("train", |c| {
        c.after_long_help(methods::switch_help())
            .after_help("Method switches (-m): see `sparseburn train --help` or `sparseburn methods`.")
    })
}

/// The config that `sparseburn train ARGS` runs, without running it (`args`
/// without the program name and `train`).
pub fn train_config(args: &[&str]) -> anyhow::Result<RunConfig> {
    let argv = ["sparseburn", "train"].into_iter().chain(args.iter().copied());
    let matches = command().try_get_matches_from(argv)?;
    match Cli::from_arg_matches(&matches)?.command {
        Command::Train(train) => train.run.resolve(),
        _ => unreachable!("parsed as train"),
    }
}

fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let _ = ctrlc::set_handler(move || {
        if !crate::run::train::interrupt::in_training_loop() {
            // nothing to checkpoint (loading, scoring, plotting, between runs): stop now
            eprintln!("\ninterrupted");
            std::process::exit(130);
        }
        if f.swap(true, Ordering::SeqCst) {
            std::process::exit(130); // second Ctrl-C: stop now
        }
        eprintln!("\nstopping after this batch (checkpoint will be written); press Ctrl-C again to abort");
    });
    flag
}

/// The side-by-side comparison of a sparse run and its dense twin.
pub fn compare(sparse: &Summary, dense: &Summary) -> String {
    let pct = |x: f64| format!("{:.2}%", 100.0 * x);
    let opt_pct = |x: Option<f64>| x.map_or("—".to_string(), pct);
    let metric = SweepMetric::of(sparse);
    let mut rows = match metric {
        SweepMetric::Accuracy => vec![(
            "test accuracy (last epoch)",
            opt_pct(dense.test_accuracy),
            opt_pct(sparse.test_accuracy),
        )],
        SweepMetric::BitsPerToken => vec![(
            "test bits per token",
            format!("{:.4}", metric.value(dense)),
            format!("{:.4}", metric.value(sparse)),
        )],
        SweepMetric::Return => vec![(
            "evaluation return",
            format!("{:.1}", metric.value(dense)),
            format!("{:.1}", metric.value(sparse)),
        )],
    };
    if metric == SweepMetric::Accuracy && dense.best_validation_accuracy.is_some() {
        rows.push((
            "test acc., best val. epoch",
            opt_pct(dense.test_accuracy_at_best),
            opt_pct(sparse.test_accuracy_at_best),
        ));
    }
    rows.extend([
        ("sparsity (sparse layers)", pct(dense.sparsity), pct(sparse.sparsity)),
        (
            "nonzero weights",
            dense.nonzeros.to_string(),
            sparse.nonzeros.to_string(),
        ),
        (
            "forward multiply-adds",
            dense.sparse_macs.to_string(),
            sparse.sparse_macs.to_string(),
        ),
        ("ITOP rate", format!("{:.3}", dense.itop), format!("{:.3}", sparse.itop)),
        (
            "wall time",
            format!("{:.0} s", dense.wall_seconds),
            format!("{:.0} s", sparse.wall_seconds),
        ),
    ]);
    let mut s = format!(
        "\n{:<28} {:>12} {:>12}\n",
        "",
        "dense",
        format!("{} {:.0}%", sparse.method, 100.0 * sparse.target_sparsity)
    );
    for (k, d, v) in rows {
        s.push_str(&format!("{k:<28} {d:>12} {v:>12}\n"));
    }
    let ratio = dense.nonzeros as f64 / sparse.nonzeros.max(1) as f64;
    s.push_str(&match metric {
        SweepMetric::Accuracy => format!(
            "accuracy gap: {:+.2} points with {ratio:.1}x fewer weights and multiply-adds in the sparse layers\n",
            100.0 * (metric.value(sparse) - metric.value(dense))
        ),
        SweepMetric::BitsPerToken => format!(
            "bits-per-token gap: {:+.4} with {ratio:.1}x fewer weights in the sparse layers\n",
            metric.value(sparse) - metric.value(dense)
        ),
        SweepMetric::Return => format!(
            "return gap: {:+.1} with {ratio:.1}x fewer weights in the sparse layers\n",
            metric.value(sparse) - metric.value(dense)
        ),
    });
    s.push_str("ITOP rate: the fraction of the sparse layers' weights active at some point of training\n");
    s
}

/// The value at `path` (dotted) of a config table, as text.
fn value_at(table: &toml::Table, path: &str) -> String {
    let mut v: Option<&toml::Value> = None;
    let mut t = Some(table);
    for part in path.split('.') {
        v = t.and_then(|t| t.get(part));
        t = v.and_then(toml::Value::as_table);
    }
    v.map_or("(unset)".into(), ToString::to_string)
}

/// Refuses options given with `--resume` that would change the run.
fn refuse_changes(dir: &Path, saved: &RunConfig, run: &RunArgs) -> anyhow::Result<()> {
    if run.config.config.is_some() {
        bail!("--resume continues with the run's own config.toml; drop --config");
    }
    let saved_table = saved.to_table();
    let mut changed = Vec::new();
    for (path, given) in run.each_given()? {
        let mut table = saved_table.clone();
        merge(&mut table, given.clone());
        let same = RunConfig::from_table(table).is_ok_and(|c| &c == saved);
        if !same {
            changed.push(format!(
                "{} (the run has {}, given {})",
                flag_name(&path),
                value_at(&saved_table, &path),
                value_at(&given, &path)
            ));
        }
    }
    if !changed.is_empty() {
        bail!(
            "{} is resumed with its own settings; drop {} (or train a new run)",
            dir.display(),
            changed.join(", ")
        );
    }
    Ok(())
}

/// The run `saved` (in `dir`) resumed with `execution`, when given: a
/// checkpoint is the same in both executions, so a run may switch at a
/// resume; its `config.toml` then records the new one (written by `train`
/// once it holds the folder's lock).
fn switch_execution(dir: &Path, mut saved: RunConfig, execution: Option<Execution>) -> anyhow::Result<RunConfig> {
    let Some(execution) = execution.filter(|e| *e != saved.training.execution) else {
        return Ok(saved);
    };
    let before = saved.training.execution;
    saved.training.execution = execution;
    crate::run::execution::check_config(&saved)?;
    eprintln!(
        "{}: resuming with --execution {} (it trained {} so far; the checkpoint is the same in both)",
        dir.display(),
        execution.name(),
        before.name()
    );
    Ok(saved)
}

fn train_command(args: TrainArgs) -> anyhow::Result<()> {
    let (cfg, out, resume) = match &args.resume {
        Some(dir) => {
            if args.out.as_ref().is_some_and(|o| o != dir) {
                bail!("--resume continues the run in its own folder; drop --out");
            }
            let saved = RunConfig::load(&dir.join("config.toml"))
                .with_context(|| format!("{} is not a sparseburn run folder", dir.display()))?;
            let mut run = args.run.clone();
            let execution = run.training.execution.take();
            refuse_changes(dir, &saved, &run)?;
            (switch_execution(dir, saved, execution)?, dir.clone(), true)
        }
        None => {
            let cfg = args.run.resolve()?;
            let out = args.out.clone().unwrap_or_else(|| cfg.default_out());
            (cfg, out, false)
        }
    };
    if args.compare_dense && cfg.is_dense() {
        bail!("--compare-dense trains the dense twin of a sparse run; this run is the dense baseline already");
    }
    let opts = TrainOptions {
        out: out.clone(),
        resume,
        interrupt: interrupt_flag(),
        verbose: true,
        stop_after_epochs: args.stop_after,
    };
    let summary = train(&cfg, &opts)?;
    let metric = match (&summary.lm, &summary.rl) {
        (Some(lm), _) => format!("test {:.4} bits per {}", lm.test_bits_per_token, lm.tokens),
        (_, Some(rl)) => format!(
            "evaluation return {:.1} ± {:.1} over {} episodes",
            rl.eval_return,
            rl.eval_return_std,
            rl.eval_seeds.len()
        ),
        _ => format!("test accuracy {:.2}%", 100.0 * SweepMetric::Accuracy.value(&summary)),
    };
    println!(
        "\n{} {} on {}: {metric}, sparsity {:.2}%, {} nonzeros; report: {}",
        summary.model,
        summary.method,
        summary.dataset,
        100.0 * summary.sparsity,
        summary.nonzeros,
        out.join("report.md").display()
    );
    if args.compare_dense {
        let dense = cfg.dense_twin()?;
        let dense_out = out.join("dense");
        println!("\ntraining the dense twin in {}", dense_out.display());
        let resume = dense_out.join("checkpoint").is_dir() && !dense_out.join("summary.json").is_file();
        let dense_summary = if dense_out.join("summary.json").is_file() {
            serde_json::from_str(&std::fs::read_to_string(dense_out.join("summary.json"))?)?
        } else {
            train(
                &dense,
                &TrainOptions {
                    out: dense_out,
                    resume,
                    ..opts
                },
            )?
        };
        print!("{}", compare(&summary, &dense_summary));
    }
    Ok(())
}

fn sweep_command(args: SweepArgs) -> anyhow::Result<()> {
    let mut overrides = toml::Table::new();
    let run = RunArgs {
        task: args.task,
        config: ConfigArgs::default(),
        model: args.model,
        model_run: args.model_run,
        data: args.data,
        sparsity: None,
        shape: args.shape,
        method: MethodArgs::default(),
        penalty: args.penalty,
        training: args.training,
        env: args.env,
    };
    merge(&mut overrides, run.overrides()?);
    let mut base = args.config.table()?;
    if base.contains_key("stage") {
        bail!(
            "a sweep trains one method per run and cannot sweep a recipe's [[stage]] blocks yet: train each recipe with `sparseburn train --config FILE`, or drop [[stage]] from the config"
        );
    }
    let file_method = base.remove("method");
    if file_method.is_some() {
        bail!("a sweep takes its methods from --methods: remove [method] from the config file");
    }
    merge(&mut base, overrides);
    let switches: toml::Table = switches(&args.method_args)?.into_iter().collect();
    let methods: Vec<MethodConfig> = args.methods.iter().map(|m| m.0.default_config()).collect();
    if let Some(key) = switches
        .keys()
        .find(|key| !methods.iter().any(|m| m.registered().has_switch(key)))
    {
        bail!("no swept method has the switch `{key}`; see `sparseburn methods`");
    }
    let spec = SweepSpec {
        base,
        methods,
        switches,
        sparsities: args.sparsities,
        seeds: (1..=args.seeds).collect(),
        out: args.out,
    };
    spec.check()?;
    // every run's config resolves before the first one starts
    for m in &spec.methods {
        spec.run_config(m, spec.sparsities[0], 1)?;
    }
    let opts = TrainOptions {
        out: spec.out.clone(),
        resume: false,
        interrupt: interrupt_flag(),
        verbose: true,
        stop_after_epochs: None,
    };
    let table = sweep(&spec, &opts)?;
    println!("\n{table}\nresults: {}", spec.out.join("results.md").display());
    Ok(())
}

fn parse_shape(s: &str) -> anyhow::Result<[usize; 3]> {
    let bad =
        || anyhow::anyhow!("input shape `{s}` must look like 3x224x224 (channels x height x width, each at least 1)");
    let parts: Vec<usize> = s
        .split('x')
        .map(|p| p.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    match parts[..] {
        [c, h, w] if c > 0 && h > 0 && w > 0 => Ok([c, h, w]),
        _ => Err(bad()),
    }
}

fn info_command(args: InfoArgs) -> anyhow::Result<()> {
    let mut table = toml::Table::new();
    let run = RunArgs {
        model: args.model.clone(),
        sparsity: args.sparsity,
        shape: args.shape.clone(),
        method: MethodArgs {
            method: args.method,
            method_args: Vec::new(),
        },
        ..RunArgs::default()
    };
    merge(&mut table, run.overrides()?);
    let cfg = RunConfig::from_table(table)?;
    let (natural, natural_classes) = cfg.model.name.natural_input();
    let (dataset_input, dataset_classes) = match args.dataset {
        Some(DatasetKind::Cifar10) => (Some([3, 32, 32]), Some(10)),
        Some(DatasetKind::FashionMnist | DatasetKind::Mnist | DatasetKind::Synthetic) => (Some([1, 28, 28]), Some(10)),
        Some(DatasetKind::Folder) => {
            bail!("an image folder's input is its --image-size: pass --input CxHxW and --classes")
        }
        None => (None, None),
    };
    let input = match &args.input {
        Some(s) => parse_shape(s)?,
        None => dataset_input.unwrap_or(natural),
    };
    let classes = args.classes.or(dataset_classes).unwrap_or(natural_classes);
    print!("{}", info(&cfg, input, classes, &cfg.device.device()?)?);
    Ok(())
}

fn export_command(args: ExportArgs) -> anyhow::Result<()> {
    let (model, bytes) = crate::run::export::export(&args.run_dir, args.format.kind(), &args.out, args.force)?;
    let formats = model.layer_formats();
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for f in formats.values() {
        *counts.entry(f).or_default() += 1;
    }
    let counts: Vec<String> = counts.iter().map(|(f, n)| format!("{n} {f}")).collect();
    println!(
        "wrote {} ({bytes} bytes): {}; layers: {}",
        args.out.display(),
        model.describe(),
        counts.join(", ")
    );
    Ok(())
}

fn infer_command(args: InferArgs) -> anyhow::Result<()> {
    if let Some(json) = &args.json {
        crate::run::bench::json_target(Some(json))?;
    }
    if args.model.is_dir() {
        bail!(
            "{} is a folder; `infer` takes a model file: export the run first (`sparseburn export {} -o model.safetensors`)",
            args.model.display(),
            args.model.display()
        );
    }
    if crate::run::bench_lm::is_language_model(&args.model)? {
        return infer_lm_command(&args);
    }
    let Some(dataset) = args.dataset else {
        bail!(
            "{} is an image model: name the dataset to evaluate it on with --dataset",
            args.model.display()
        );
    };
    let d = crate::data::DataConfig::default();
    let data = crate::data::DataConfig {
        dataset,
        data_dir: args.data_dir.clone(),
        image_size: args.image_size.unwrap_or(d.image_size),
        channels: args.channels.unwrap_or(d.channels),
        test_limit: args.test_limit.unwrap_or(0),
        ..d
    };
    let r = crate::run::infer::infer(
        &args.model,
        &data,
        args.batch_size as usize,
        &sparse_core::backend::device(&args.device)?,
    )?;
    println!(
        "{} on {} ({} images): accuracy {:.2}% ({}), loss {:.4}; the run recorded {:.2}%",
        r.model_file,
        r.dataset,
        r.images,
        100.0 * r.accuracy,
        r.accuracy,
        r.loss,
        100.0 * r.recorded_accuracy
    );
    if let Some(json) = &args.json {
        crate::run::artifacts::write_atomic(json, serde_json::to_string_pretty(&r)?.as_bytes())?;
    }
    Ok(())
}

fn infer_lm_command(args: &InferArgs) -> anyhow::Result<()> {
    if args.dataset.is_some() || args.image_size.is_some() || args.channels.is_some() || args.test_limit.is_some() {
        bail!(
            "{} is a language model: it is evaluated on the test split of its corpus (--data-dir, else fortunes), as its run was; drop --dataset, --image-size, --channels and --test-limit",
            args.model.display()
        );
    }
    let r = crate::run::export_lm::infer_lm(
        &args.model,
        args.data_dir.as_deref(),
        args.batch_size as usize,
        &sparse_core::backend::device(&args.device)?,
    )?;
    println!(
        "{} on {} ({} test tokens): {:.6} bits per token; the run recorded {:.6}",
        r.model_file, r.corpus, r.tokens, r.bits_per_token, r.recorded_bits_per_token
    );
    if let Some(json) = &args.json {
        crate::run::artifacts::write_atomic(json, serde_json::to_string_pretty(&r)?.as_bytes())?;
    }
    Ok(())
}

fn bench_command(args: BenchArgs) -> anyhow::Result<()> {
    use crate::run::bench;
    if let Some(side) = &args.memory_of {
        let backend = args.device.parse::<sparse_core::BackendKind>()?;
        println!(
            "{}",
            bench::memory_probe(&args.source, side == bench::side_name(true), backend)?
        );
        return Ok(());
    }
    let json = bench::json_target(args.json.as_deref())?;
    let opts = bench::BenchOptions {
        quick: args.quick,
        memory: !args.no_memory,
        backend: args.device.parse()?,
    };
    if crate::run::bench_lm::is_language_model(&args.source)? {
        let report = crate::run::bench_lm::bench(&args.source, opts)?;
        print!("{}", crate::run::bench_lm::render(&report));
        if let Some(path) = json {
            crate::run::artifacts::write_atomic(&path, serde_json::to_string_pretty(&report)?.as_bytes())?;
            println!("wrote {}", path.display());
        }
        return Ok(());
    }
    let report = bench::bench(&args.source, opts)?;
    print!("{}", bench::render(&report));
    if let Some(path) = json {
        crate::run::artifacts::write_atomic(&path, serde_json::to_string_pretty(&report)?.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn prune_command(args: PruneArgs) -> anyhow::Result<()> {
    use crate::run::prune::{Normalisation, PruneOptions, Source, prune, render};
    if args.run.is_some() && !(args.mean.is_empty() && args.std.is_empty()) {
        bail!(
            "--mean and --std say how --init-weights expect their images; a run folder's model is normalised as it was trained: drop --mean and --std"
        );
    }
    let source = match (&args.run, &args.init_weights, args.model.model) {
        (Some(dir), _, _) => Source::Run(dir.clone()),
        (None, Some(path), Some(name)) => Source::Weights {
            model: crate::run::config::ModelSection {
                width: args.model.width,
                ..crate::run::config::ModelSection::new().with_name(name)
            },
            path: path.clone(),
        },
        _ => bail!(
            "no model to prune: pass --run DIR (a finished dense run) or --model NAME --init-weights FILE (torchvision-format safetensors)"
        ),
    };
    let data = args.calibration.map(|dataset| {
        let d = crate::data::DataConfig::default();
        crate::data::DataConfig {
            dataset,
            data_dir: args.data_dir.clone(),
            image_size: args.image_size.unwrap_or(d.image_size),
            channels: args.channels.unwrap_or(d.channels),
            ..d
        }
    });
    if data.is_none() && (args.data_dir.is_some() || args.image_size.is_some() || args.channels.is_some()) {
        bail!("--data-dir, --image-size and --channels describe the --calibration dataset; pass --calibration too");
    }
    let sparsity = match (args.sparsity, &args.pattern) {
        (Some(s), _) => s,
        (None, Pattern::NM { n, m }) if *m > 0 => 1.0 - *n as f64 / *m as f64,
        (None, _) => 0.5,
    };
    let filter = sparse_core::LayerFilter::new()
        .with_exclude(args.exclude.clone())
        .with_skip_first(args.dense_first_layer)
        .with_skip_last(args.dense_last_layer);
    let oneshot = OneShotConfig::new(args.method.method())
        .with_sparsity(sparsity)
        .with_pattern(args.pattern.clone())
        .with_filter(filter);
    if let Some(json) = &args.json {
        crate::run::bench::json_target(Some(json))?;
    }
    let opts = PruneOptions {
        source,
        data,
        test_limit: args.test_limit,
        oneshot,
        samples: args.calibration_samples,
        normalisation: Normalisation {
            mean: (!args.mean.is_empty()).then(|| args.mean.clone()),
            std: (!args.std.is_empty()).then(|| args.std.clone()),
        },
        seed: args.seed,
        batch: args.batch_size as usize,
        format: args.format.kind(),
        out: args.out.clone(),
        force: args.force,
    };
    let report = prune(&opts, &burn::tensor::Device::flex())?;
    print!("{}", render(&report));
    if let Some(json) = &args.json {
        crate::run::artifacts::write_atomic(json, serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Prune(args) => prune_command(args),
        Command::Export(args) => export_command(args),
        Command::Infer(args) => infer_command(args),
        Command::Bench(args) => bench_command(args),
        Command::Train(args) => train_command(args),
        Command::Sweep(args) => sweep_command(args),
        Command::Info(args) => info_command(args),
        Command::Methods(args) => {
            print!(
                "{}",
                if args.markdown {
                    methods::markdown()
                } else {
                    methods::listing()
                }
            );
            Ok(())
        }
    }
}

/// The `sparseburn` program.
pub fn main() -> ExitCode {
    let matches = command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<Interrupted>().is_some() => {
            eprintln!("{e}");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
