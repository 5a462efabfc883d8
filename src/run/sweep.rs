//! `sparseburn sweep`: methods × sparsities × seeds on one model and dataset,
//! one run after the other (each in its own folder; finished runs with the same
//! settings are reused, interrupted ones resumed), then a table of mean ± std
//! of the final test accuracy and a plot. The dense baseline runs once per seed;
//! a method made for a pattern (SRigL: constant fan-in) gets it unless the sweep
//! sets one.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::bail;
use sparse_methods::MethodConfig;

use super::artifacts::{RunDir, Summary};
use super::config::RunConfig;
use super::plots;
use super::train::{TrainOptions, train};

/// What to sweep.
#[derive(Clone, Debug)]
pub struct SweepSpec {
    /// Settings shared by every run, as given (a config file's table with the
    /// command-line options laid over it).
    pub base: toml::Table,
    /// Methods with their switches (`dense` runs once per seed, at sparsity 0).
    pub methods: Vec<MethodConfig>,
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

/// Mean and sample standard deviation (none for a single value).
fn mean_std(v: &[f64]) -> (f64, Option<f64>) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let std = (v.len() > 1).then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    (mean, std)
}

impl SweepSpec {
    /// Checks the lists: no duplicate method, sparsity or seed, at least one of each.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.methods.is_empty() || self.sparsities.is_empty() || self.seeds.is_empty() {
            bail!("a sweep needs at least one method, one sparsity and one seed");
        }
        for (i, m) in self.methods.iter().enumerate() {
            if self.methods[..i].iter().any(|o| o.name() == m.name()) {
                bail!("method `{}` is listed twice in --methods", m.name());
            }
        }
        for (i, s) in self.sparsities.iter().enumerate() {
            sparse_core::error::check_sparsity(*s)?;
            if self.sparsities[..i].iter().any(|o| (o - s).abs() < 1e-9) {
                bail!("sparsity {s} is listed twice in --sparsities");
            }
        }
        Ok(())
    }

    /// The config of one run.
    pub fn run_config(&self, method: &MethodConfig, sparsity: f64, seed: u64) -> anyhow::Result<RunConfig> {
        let mut table = self.base.clone();
        table.insert("method".into(), toml::Value::try_from(method)?);
        let sparsity_table = table
            .entry("sparsity")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = sparsity_table {
            t.insert("sparsity".into(), toml::Value::Float(sparsity));
        }
        if method.is_dense() {
            table.remove("sparsity");
        }
        let training = table
            .entry("training")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = training {
            t.insert("seed".into(), toml::Value::Integer(seed as i64));
        }
        RunConfig::from_table(table)
    }
}

/// Runs the sweep and writes `results.md`, `results.csv` and `accuracy_vs_sparsity.png`.
pub fn sweep(spec: &SweepSpec, opts: &TrainOptions) -> anyhow::Result<String> {
    spec.check()?;
    std::fs::create_dir_all(&spec.out)?;
    let mut results: BTreeMap<(String, u64), Vec<Summary>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for method in &spec.methods {
        order.push(method.name().to_string());
        let sparsities: Vec<f64> = if method.is_dense() {
            vec![0.0]
        } else {
            spec.sparsities.clone()
        };
        for &sparsity in &sparsities {
            for &seed in &spec.seeds {
                let dir = spec.out.join(run_name(method.name(), sparsity, seed));
                let cfg = spec.run_config(method, sparsity, seed)?;
                let summary = run_one(&cfg, &dir, opts)?;
                results
                    .entry((method.name().to_string(), (sparsity * 1e6).round() as u64))
                    .or_default()
                    .push(summary);
            }
        }
    }
    write_results(&spec.out, &order, &results)
}

fn run_one(cfg: &RunConfig, dir: &Path, opts: &TrainOptions) -> anyhow::Result<Summary> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let existing = dir.join("config.toml");
    if existing.is_file() {
        let saved = RunConfig::load(&existing)?;
        let mut wanted = cfg.clone();
        if wanted.data.validation.is_none() {
            wanted.data.validation = saved.data.validation; // the default, resolved when the run started
        }
        if saved != wanted {
            bail!(
                "{} was trained with other settings than this sweep's; use another --out or delete it",
                dir.display()
            );
        }
    }
    let summary_file = dir.join("summary.json");
    if summary_file.is_file() {
        let text = std::fs::read_to_string(&summary_file)?;
        return Ok(serde_json::from_str(&text)?);
    }
    let resume = RunDir::open(dir).is_ok();
    if !resume && dir.exists() {
        std::fs::remove_dir_all(dir)?; // a run that never reached its first checkpoint
    }
    if opts.verbose {
        println!("== {name} ({}) ==", if resume { "resuming" } else { "new" });
    }
    let run_opts = TrainOptions {
        out: dir.to_path_buf(),
        resume,
        ..opts.clone()
    };
    train(cfg, &run_opts)
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
        "| method | sparsity | final test accuracy, % (mean ± std) | seeds | nonzeros | forward MACs |"
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
            let spread = std.map_or("—".to_string(), |s| format!("{:.2}", 100.0 * s));
            let _ = writeln!(
                md,
                "| {m} | {:.0}% | {:.2} ± {spread} | {} | {:.0} | {:.0} |",
                100.0 * sparsity,
                100.0 * mean,
                runs.len(),
                nnz,
                macs
            );
            let std_csv = std.map(|s| s.to_string()).unwrap_or_default();
            let _ = writeln!(csv, "{m},{sparsity},{},{mean},{std_csv},{nnz},{macs}", runs.len());
            pts.push((sparsity, mean, std));
        }
        series.push((method.clone(), pts));
    }
    std::fs::write(out.join("results.md"), &md)?;
    std::fs::write(out.join("results.csv"), csv)?;
    plots::accuracy_vs_sparsity(&out.join("accuracy_vs_sparsity.png"), &series)?;
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_has_no_spread() {
        assert_eq!(mean_std(&[0.9]), (0.9, None));
        let (m, s) = mean_std(&[0.8, 1.0]);
        assert!((m - 0.9).abs() < 1e-12);
        // sample std of {0.8, 1.0}: sqrt(0.02 / 1)
        assert!((s.unwrap() - 0.02f64.sqrt()).abs() < 1e-12);
    }
}
