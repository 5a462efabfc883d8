//! `sparseburn sweep`: methods × sparsities × seeds on one model and dataset,
//! one run after the other (each in its own folder, finished runs are reused,
//! interrupted ones resumed), then a table of mean ± std and a plot. `dense`
//! runs once per seed; `srigl` uses the constant fan-in pattern when the sweep's
//! pattern is unstructured.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::artifacts::{RunDir, Summary};
use super::config::RunConfig;
use super::plots;
use super::train::{TrainOptions, train};

/// What to sweep.
#[derive(Clone, Debug)]
pub struct SweepSpec {
    /// Settings shared by every run.
    pub base: RunConfig,
    /// Methods (`dense` runs once per seed, at sparsity 0).
    pub methods: Vec<String>,
    /// Target sparsities.
    pub sparsities: Vec<f64>,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// Folder of the sweep.
    pub out: PathBuf,
}

/// `rigl-s900-seed1` for 90%; sparsities off the per-mille grid keep their digits.
fn run_name(method: &str, sparsity: f64, seed: u64) -> String {
    let per_mille = sparsity * 1000.0;
    if (per_mille - per_mille.round()).abs() < 1e-9 {
        format!("{method}-s{per_mille:.0}-seed{seed}")
    } else {
        format!("{method}-s{per_mille}-seed{seed}")
    }
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// Runs the sweep and writes `results.md`, `results.csv` and `accuracy_vs_sparsity.png`.
pub fn sweep(spec: &SweepSpec, opts: &TrainOptions) -> anyhow::Result<String> {
    std::fs::create_dir_all(&spec.out)?;
    let mut results: BTreeMap<(String, u64), Vec<Summary>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for method in &spec.methods {
        super::build::check_method(method)?;
        order.push(method.clone());
        let sparsities: Vec<f64> = if method == "dense" {
            vec![0.0]
        } else {
            spec.sparsities.clone()
        };
        for &sparsity in &sparsities {
            for &seed in &spec.seeds {
                let dir = spec.out.join(run_name(method, sparsity, seed));
                let summary = run_one(spec, method, sparsity, seed, &dir, opts)?;
                results
                    .entry((method.clone(), (sparsity * 1e6).round() as u64))
                    .or_default()
                    .push(summary);
            }
        }
    }
    write_results(&spec.out, &order, &results)
}

fn run_one(
    spec: &SweepSpec,
    method: &str,
    sparsity: f64,
    seed: u64,
    dir: &Path,
    opts: &TrainOptions,
) -> anyhow::Result<Summary> {
    let summary_file = dir.join("summary.json");
    if summary_file.is_file() {
        let text = std::fs::read_to_string(&summary_file)?;
        return Ok(serde_json::from_str(&text)?);
    }
    let mut cfg = spec.base.clone();
    cfg.method.name = method.to_string();
    cfg.sparsity.sparsity = sparsity;
    cfg.training.seed = seed;
    if method == "srigl" && cfg.sparsity.pattern == "unstructured" {
        cfg.sparsity.pattern = "constant-fan-in".into(); // SRigL's own pattern
    }
    let resume = RunDir::open(dir).is_ok();
    if resume {
        cfg = RunConfig::load(&dir.join("config.toml"))?;
    } else if dir.exists() {
        std::fs::remove_dir_all(dir)?; // a run that never reached its first checkpoint
    }
    if opts.verbose {
        println!(
            "== {} ({}) ==",
            run_name(method, sparsity, seed),
            if resume { "resuming" } else { "new" }
        );
    }
    let run_opts = TrainOptions {
        out: dir.to_path_buf(),
        resume,
        ..opts.clone()
    };
    train(&cfg, &run_opts)
}

fn write_results(
    out: &Path,
    order: &[String],
    results: &BTreeMap<(String, u64), Vec<Summary>>,
) -> anyhow::Result<String> {
    let mut md = String::new();
    let mut csv = String::from("method,sparsity,seeds,mean_test_acc,std_test_acc,mean_nonzeros,mean_sparse_macs\n");
    let _ = writeln!(
        md,
        "| method | sparsity | test accuracy (mean ± std) | seeds | nonzeros | forward MACs |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    let mut series: Vec<plots::Series> = Vec::new();
    for method in order {
        let mut pts = Vec::new();
        for ((m, s), runs) in results.iter().filter(|((m, _), _)| m == method) {
            let accs: Vec<f64> = runs.iter().map(|r| r.test_accuracy).collect();
            let (mean, std) = mean_std(&accs);
            let sparsity = *s as f64 / 1e6;
            let nnz = runs.iter().map(|r| r.nonzeros as f64).sum::<f64>() / runs.len() as f64;
            let macs = runs.iter().map(|r| r.sparse_macs as f64).sum::<f64>() / runs.len() as f64;
            let _ = writeln!(
                md,
                "| {m} | {:.0}% | {:.2} ± {:.2} | {} | {:.0} | {:.0} |",
                100.0 * sparsity,
                100.0 * mean,
                100.0 * std,
                runs.len(),
                nnz,
                macs
            );
            let _ = writeln!(csv, "{m},{sparsity},{},{mean},{std},{nnz},{macs}", runs.len());
            pts.push((sparsity, mean, std));
        }
        series.push((method.clone(), pts));
    }
    std::fs::write(out.join("results.md"), &md)?;
    std::fs::write(out.join("results.csv"), csv)?;
    plots::accuracy_vs_sparsity(&out.join("accuracy_vs_sparsity.png"), &series)?;
    Ok(md)
}
