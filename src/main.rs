//! `sparseburn`: train, sweep and inspect sparse models from the command line.
//! A thin layer over `sparseburn::run`.

// Burn allocates a fresh buffer per tensor op; mimalloc reuses them instead of
// paying page faults for every large activation (about 25% faster conv training).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use sparseburn::data::DatasetKind;
use sparseburn::run::build::apply_method_args;
use sparseburn::run::sweep::{SweepSpec, sweep};
use sparseburn::run::{Interrupted, RunConfig, Summary, TrainOptions, info::info, train};

/// Sparse training for Burn.
#[derive(Parser)]
#[command(name = "sparseburn", version, about)]
struct Cli {
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
    /// Methods × sparsities × seeds, then a table and a plot.
    Sweep(SweepArgs),
    /// Per-layer shapes, densities, nonzeros and multiply-adds of a model, without training.
    Info(InfoArgs),
}

/// Options that define a run; each overrides the `--config` file.
#[derive(Args, Default, Clone)]
struct RunArgs {
    /// TOML file with every option (e.g. a previous run's config.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// mlp, cnn, resnet18, resnet34, resnet50, mobilenet-v1.
    #[arg(long)]
    model: Option<String>,
    /// MobileNetV1 width multiplier.
    #[arg(long)]
    width: Option<f64>,
    /// Start from torchvision weights in a safetensors file (dense-to-sparse fine-tuning).
    #[arg(long, value_name = "FILE")]
    init_weights: Option<PathBuf>,
    /// The sparse layer whose mask is plotted over time.
    #[arg(long, value_name = "PATH")]
    mask_layer: Option<String>,
    /// fashion-mnist, mnist, cifar10, folder, synthetic.
    #[arg(long)]
    dataset: Option<String>,
    /// Folder with the dataset files.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Download the dataset if missing (needs internet).
    #[arg(long)]
    download: bool,
    /// Image folders: side of the resized images.
    #[arg(long)]
    image_size: Option<usize>,
    /// Image folders: 1 or 3 channels.
    #[arg(long)]
    channels: Option<usize>,
    /// Image folders: stop at an unreadable image instead of skipping it.
    #[arg(long)]
    strict_images: bool,
    /// Use only the first N training images.
    #[arg(long)]
    train_limit: Option<usize>,
    /// Use only the first N test images.
    #[arg(long)]
    test_limit: Option<usize>,
    /// Target sparsity in [0, 1).
    #[arg(long)]
    sparsity: Option<f64>,
    /// erk, er, uniform, uniform-dense-first, global.
    #[arg(long)]
    distribution: Option<String>,
    /// unstructured, N:M (2:4), constant-fan-in, block:RxC, channel.
    #[arg(long)]
    pattern: Option<String>,
    /// Keep the first layer dense.
    #[arg(long)]
    dense_first_layer: bool,
    /// dense, static, snip, grasp, lth, one-shot, gmp, set, rigl, srigl, autosparse, mest, srste.
    #[arg(long)]
    method: Option<String>,
    /// Method switch `key=value` (see docs/methods.md), repeatable: -m delta_t=50 -m drop_fraction=0.5.
    #[arg(short = 'm', long = "method-arg")]
    method_args: Vec<String>,
    /// Epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Batch size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// sgd, adam, adamw.
    #[arg(long)]
    optimizer: Option<String>,
    /// Learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// SGD momentum.
    #[arg(long)]
    momentum: Option<f64>,
    /// Nesterov momentum.
    #[arg(long)]
    nesterov: bool,
    /// Weight decay.
    #[arg(long)]
    weight_decay: Option<f64>,
    /// cosine, step, constant.
    #[arg(long)]
    schedule: Option<String>,
    /// Step schedule milestones (epochs), comma separated.
    #[arg(long, value_delimiter = ',')]
    milestones: Option<Vec<usize>>,
    /// Step schedule factor.
    #[arg(long)]
    gamma: Option<f64>,
    /// Linear warm-up epochs.
    #[arg(long)]
    warmup_epochs: Option<f64>,
    /// Label smoothing.
    #[arg(long)]
    label_smoothing: Option<f32>,
    /// Seed.
    #[arg(long)]
    seed: Option<u64>,
    /// flex (default), ndarray, wgpu, cuda.
    #[arg(long)]
    device: Option<String>,
}

impl RunArgs {
    /// The config file (or defaults) with every given option applied.
    fn resolve(&self) -> anyhow::Result<RunConfig> {
        let mut c = match &self.config {
            Some(p) => RunConfig::load(p)?,
            None => RunConfig::default(),
        };
        macro_rules! set {
            ($($field:ident => $target:expr),* $(,)?) => { $(if let Some(v) = &self.$field { $target = v.clone(); })* };
        }
        set!(model => c.model.name, width => c.model.width, image_size => c.data.image_size,
             channels => c.data.channels, train_limit => c.data.train_limit, test_limit => c.data.test_limit,
             sparsity => c.sparsity.sparsity, distribution => c.sparsity.distribution, pattern => c.sparsity.pattern,
             method => c.method.name, epochs => c.training.epochs, batch_size => c.training.batch_size,
             optimizer => c.training.optimizer, lr => c.training.lr, momentum => c.training.momentum,
             weight_decay => c.training.weight_decay, schedule => c.training.schedule, milestones => c.training.milestones,
             gamma => c.training.gamma, warmup_epochs => c.training.warmup_epochs,
             label_smoothing => c.training.label_smoothing, seed => c.training.seed, device => c.device);
        if let Some(p) = &self.data_dir {
            c.data.data_dir = Some(p.clone());
        }
        if let Some(p) = &self.init_weights {
            c.model.init_weights = Some(p.clone());
        }
        if let Some(p) = &self.mask_layer {
            c.model.mask_layer = Some(p.clone());
        }
        if let Some(d) = &self.dataset {
            c.data.dataset = d.parse::<DatasetKind>().map_err(anyhow::Error::msg)?;
        }
        c.data.download |= self.download;
        c.data.strict_images |= self.strict_images;
        c.sparsity.dense_first_layer |= self.dense_first_layer;
        c.training.nesterov |= self.nesterov;
        apply_method_args(&mut c.method, &self.method_args)?;
        sparse_core::error::check_sparsity(c.sparsity.sparsity)?;
        Ok(c)
    }

    /// Whether any run-defining option was given (not allowed with --resume).
    fn given(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        macro_rules! check { ($($f:ident),*) => { $(if self.$f.is_some() { v.push(stringify!($f)); })* }; }
        check!(
            config,
            model,
            width,
            dataset,
            data_dir,
            image_size,
            channels,
            train_limit,
            test_limit,
            sparsity,
            distribution,
            pattern,
            method,
            epochs,
            batch_size,
            optimizer,
            lr,
            momentum,
            weight_decay,
            schedule,
            milestones,
            gamma,
            warmup_epochs,
            label_smoothing,
            seed,
            device
        );
        if !self.method_args.is_empty() {
            v.push("method-arg");
        }
        v
    }
}

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Run folder (default runs/<model>-<method>-<sparsity>-s<seed>-<time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in this folder from its last checkpoint.
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
    /// Also train the dense twin (same settings, method dense) and compare.
    #[arg(long)]
    compare_dense: bool,
    /// Stop cleanly (checkpoint, exit code 130) after this many epochs; continue with --resume.
    #[arg(long, value_name = "EPOCHS")]
    stop_after: Option<u64>,
}

#[derive(Args)]
struct SweepArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Methods, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "dense,static,set,rigl")]
    methods: Vec<String>,
    /// Sparsities, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "0.9,0.95")]
    sparsities: Vec<f64>,
    /// Number of seeds (1, 2, ...).
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Sweep folder.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct InfoArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Input shape CxHxW (default: the dataset's, e.g. 1x28x28).
    #[arg(long)]
    input: Option<String>,
    /// Classes (default 10; 1000 for 224-pixel inputs).
    #[arg(long)]
    classes: Option<usize>,
}

fn parse_shape(s: &str) -> anyhow::Result<[usize; 3]> {
    let parts: Vec<usize> = s
        .split('x')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("input shape `{s}` must look like 3x224x224"))?;
    match parts[..] {
        [c, h, w] if c > 0 && h > 0 && w > 0 => Ok([c, h, w]),
        _ => bail!("input shape `{s}` must look like 3x224x224"),
    }
}

fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let _ = ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            std::process::exit(130); // second Ctrl-C: stop now
        }
        eprintln!("\nstopping after this batch (checkpoint will be written); press Ctrl-C again to abort");
    });
    flag
}

fn compare(sparse: &Summary, dense: &Summary) -> String {
    let pct = |x: f64| format!("{:.2}%", 100.0 * x);
    let rows = [
        ("test accuracy", pct(dense.test_accuracy), pct(sparse.test_accuracy)),
        (
            "best test accuracy",
            pct(dense.best_test_accuracy),
            pct(sparse.best_test_accuracy),
        ),
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
    ];
    let mut s = format!(
        "\n{:<26} {:>14} {:>14}\n",
        "",
        "dense",
        format!("{} {:.0}%", sparse.method, 100.0 * sparse.target_sparsity)
    );
    for (k, d, v) in rows {
        s.push_str(&format!("{k:<26} {d:>14} {v:>14}\n"));
    }
    s.push_str(&format!(
        "accuracy gap: {:+.2} points with {:.1}x fewer weights and multiply-adds in the sparse layers\n",
        100.0 * (sparse.test_accuracy - dense.test_accuracy),
        dense.nonzeros as f64 / sparse.nonzeros.max(1) as f64
    ));
    s
}

fn train_command(args: TrainArgs) -> anyhow::Result<()> {
    let interrupt = interrupt_flag();
    let (cfg, out, resume) = match &args.resume {
        Some(dir) => {
            let saved = RunConfig::load(&dir.join("config.toml"))
                .with_context(|| format!("{} is not a sparseburn run folder", dir.display()))?;
            if let Some(m) = &args.run.model
                && *m != saved.model.name
            {
                bail!(
                    "{} was trained with model `{}`, not `{m}`; drop --model to resume it",
                    dir.display(),
                    saved.model.name
                );
            }
            let given: Vec<_> = args.run.given().into_iter().filter(|g| *g != "model").collect();
            if !given.is_empty() {
                bail!(
                    "--resume continues a run with its own settings; drop --{}",
                    given.join(", --").replace('_', "-")
                );
            }
            (saved, dir.clone(), true)
        }
        None => {
            let cfg = args.run.resolve()?;
            let out = args.out.clone().unwrap_or_else(|| cfg.default_out());
            (cfg, out, false)
        }
    };
    let opts = TrainOptions {
        out: out.clone(),
        resume,
        interrupt,
        verbose: true,
        stop_after_epochs: args.stop_after,
    };
    println!("run folder: {}", out.display());
    let summary = train(&cfg, &opts)?;
    println!(
        "\n{} {} on {}: test accuracy {:.2}%, sparsity {:.1}%, {} nonzeros; report: {}",
        summary.model,
        summary.method,
        summary.dataset,
        100.0 * summary.test_accuracy,
        100.0 * summary.sparsity,
        summary.nonzeros,
        out.join("report.md").display()
    );
    if args.compare_dense && cfg.method.name != "dense" {
        let mut dense = cfg.clone();
        dense.method.name = "dense".into();
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

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(args) => train_command(args),
        Command::Sweep(args) => {
            let base = args.run.resolve()?;
            let spec = SweepSpec {
                base,
                methods: args.methods,
                sparsities: args.sparsities,
                seeds: (1..=args.seeds).collect(),
                out: args.out,
            };
            for s in &spec.sparsities {
                sparse_core::error::check_sparsity(*s)?;
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
        Command::Info(args) => {
            let cfg = args.run.resolve()?;
            let input = match &args.input {
                Some(s) => parse_shape(s)?,
                None => match cfg.data.dataset {
                    DatasetKind::Cifar10 => [3, 32, 32],
                    DatasetKind::Folder => [cfg.data.channels, cfg.data.image_size, cfg.data.image_size],
                    _ => [1, 28, 28],
                },
            };
            let classes = args.classes.unwrap_or(if input[1] >= 128 { 1000 } else { 10 });
            let device: sparse_core::BackendKind = cfg.device.parse()?;
            print!("{}", info(&cfg, input, classes, &device.device()?)?);
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
