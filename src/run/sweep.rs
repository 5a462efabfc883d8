//! `sparseburn sweep`: methods × sparsities × seeds on one model and dataset,
//! one run after the other (each in its own folder; finished runs with the same
//! settings are reused, interrupted ones resumed), then a table of mean ± std
//! of the final test accuracy and a plot. The dense baseline runs once per seed;
//! a method made for a pattern (SRigL: constant fan-in) gets it unless the sweep
//! sets one. The metric is the task's (`--task`): the final test accuracy of an
//! image classifier, the final test bits per token of a language model
//! (lower is better), the final mean evaluation return of a DQN agent.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sparse_methods::MethodConfig;

use super::artifacts::{RunDir, Summary};
use super::config::RunConfig;
use super::lock::FolderLock;
use super::plots;
use super::train::{Interrupted, TrainOptions, train};

/// What to sweep.
#[derive(Clone, Debug)]
pub struct SweepSpec {
    /// Settings shared by every run, as given (a config file's table with the
    /// command-line options laid over it).
    pub base: toml::Table,
    /// Methods (`dense` runs once per seed, at sparsity 0); a switch set away
    /// from the method's default is kept.
    pub methods: Vec<MethodConfig>,
    /// Switches for every method (`-m key=value`), each laid on the methods that
    /// have it; a switch neither here nor set in `methods` takes the run's
    /// default (the task's, then the method's).
    pub switches: toml::Table,
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

/// The key a sparsity's results are grouped under: two sparsities with the same
/// key are one entry (and listing both is refused).
fn sparsity_key(sparsity: f64) -> u64 {
    (sparsity * 1e6).round() as u64
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
            if let Some(o) = self.sparsities[..i]
                .iter()
                .find(|o| sparsity_key(**o) == sparsity_key(*s))
            {
                bail!("sparsity {s} is listed twice in --sparsities (as {o}; sparsities are told apart to 1e-6)");
            }
        }
        Ok(())
    }

    /// The `[method]` table of `method`'s runs: its name, the switches it sets
    /// away from its defaults, and those of [`SweepSpec::switches`] it has.
    fn method_table(&self, method: &MethodConfig) -> anyhow::Result<toml::Table> {
        let registered = method.registered();
        let defaults = registered.default_config().switches();
        let mut table = toml::Table::new();
        table.insert("name".into(), toml::Value::String(method.name().into()));
        for (key, value) in method.switches() {
            if defaults.get(&key) != Some(&value) {
                table.insert(key, toml::Value::try_from(value)?);
            }
        }
        for (key, value) in self.switches.iter().filter(|(k, _)| registered.has_switch(k)) {
            table.insert(key.clone(), value.clone());
        }
        Ok(table)
    }

    /// The config of one run.
    pub fn run_config(&self, method: &MethodConfig, sparsity: f64, seed: u64) -> anyhow::Result<RunConfig> {
        let mut table = self.base.clone();
        table.insert("method".into(), toml::Value::Table(self.method_table(method)?));
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

impl SweepSpec {
    /// Builds every cell's config before any trains, so that a cell the
    /// settings rule out (e.g. a method `--execution sparse` refuses) fails
    /// the sweep at once rather than after the cells before it.
    fn check_cells(&self) -> anyhow::Result<()> {
        for method in &self.methods {
            let sparsities = if method.is_dense() {
                vec![0.0]
            } else {
                self.sparsities.clone()
            };
            for sparsity in sparsities {
                let seed = self.seeds.first().copied().unwrap_or(1);
                self.run_config(method, sparsity, seed)
                    .with_context(|| format!("the {} run at sparsity {sparsity}", method.name()))?;
            }
        }
        Ok(())
    }
}

/// Runs the sweep and writes `results.md`, `results.csv` and the plot of the
/// task's metric (`accuracy_vs_sparsity.png`, `bits_vs_sparsity.png`,
/// `return_vs_sparsity.png`).
pub fn sweep(spec: &SweepSpec, opts: &TrainOptions) -> anyhow::Result<String> {
    spec.check()?;
    spec.check_cells()?;
    std::fs::create_dir_all(&spec.out).with_context(|| format!("creating {}", spec.out.display()))?;
    let _lock = FolderLock::acquire(&spec.out)?; // one sweep per folder, held to the end
    let mut results: BTreeMap<(String, u64), Vec<Summary>> = BTreeMap::new();
    let mut curves: Curves = BTreeMap::new();
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
                let summary = run_one(&cfg, &dir, opts).map_err(|mut e| {
                    if let Some(i) = e.downcast_mut::<Interrupted>() {
                        i.sweep = Some(spec.out.clone());
                    }
                    e
                })?;
                let key = (method.name().to_string(), sparsity_key(sparsity));
                if summary.rl.is_some() {
                    match super::train::rl::eval_curve(&dir.join("metrics.csv")) {
                        Ok(curve) => curves.entry(key.clone()).or_default().push(curve),
                        Err(e) => tracing::warn!("{}: left out of the learning curves: {e:#}", dir.display()),
                    }
                }
                results.entry(key).or_default().push(summary);
            }
        }
    }
    let mut md = write_results(&spec.out, &order, &results)?;
    if !curves.is_empty() {
        md.push_str(&learning_curves(&spec.out, &order, &curves)?);
    }
    Ok(md)
}

/// Each DQN run's evaluation curve (environment steps, mean return), by method
/// and sparsity key, one per seed.
type Curves = BTreeMap<(String, u64), Vec<Vec<(u64, f64)>>>;

/// Mean ± std over the runs of the evaluation return at each environment-step
/// count that every run reached.
fn mean_curve(runs: &[Vec<(u64, f64)>]) -> Vec<(f64, f64, Option<f64>)> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    first
        .iter()
        .filter_map(|(steps, _)| {
            let at = |run: &Vec<(u64, f64)>| run.iter().find(|(s, _)| s == steps).map(|(_, v)| *v);
            let values: Option<Vec<f64>> = runs.iter().map(at).collect();
            values.map(|v| {
                let (mean, std) = mean_std(&v);
                (*steps as f64, mean, std)
            })
        })
        .collect()
}

/// `5k` for whole thousands of environment steps.
fn steps_label(steps: f64) -> String {
    if steps >= 1000.0 && steps % 1000.0 == 0.0 {
        format!("{:.0}k", steps / 1000.0)
    } else {
        format!("{steps:.0}")
    }
}

/// A DQN sweep's learning curves: `return_vs_steps.png` and a table appended
/// to `results.md` (and returned), the evaluation return (mean ± std over
/// seeds) of each method and sparsity after each epoch.
fn learning_curves(out: &Path, order: &[String], curves: &Curves) -> anyhow::Result<String> {
    let mut series: Vec<plots::Series> = Vec::new();
    for method in order {
        for ((m, s), runs) in curves.iter().filter(|((m, _), _)| m == method) {
            let name = if *s == 0 {
                m.clone()
            } else {
                format!("{m} {}%", *s as f64 / 1e4)
            };
            series.push((name, mean_curve(runs)));
        }
    }
    let mut steps: Vec<f64> = series.iter().flat_map(|(_, p)| p.iter().map(|(x, _, _)| *x)).collect();
    steps.sort_by(f64::total_cmp);
    steps.dedup();
    let mut md = String::from("\nEvaluation return by environment steps (mean ± std over seeds):\n\n| run |");
    for x in &steps {
        let _ = write!(md, " {} |", steps_label(*x));
    }
    let _ = writeln!(md, "\n|---|{}", "---|".repeat(steps.len()));
    for (name, pts) in &series {
        let _ = write!(md, "| {name} |");
        for x in &steps {
            let cell = match pts.iter().find(|(px, _, _)| px == x) {
                Some((_, m, Some(s))) => format!("{m:.1} ± {s:.1}"),
                Some((_, m, None)) => format!("{m:.1}"),
                None => "—".into(),
            };
            let _ = write!(md, " {cell} |");
        }
        md.push('\n');
    }
    let mut file = std::fs::OpenOptions::new().append(true).open(out.join("results.md"))?;
    std::io::Write::write_all(&mut file, md.as_bytes())?;
    let axis = plots::SweepAxis {
        caption: "evaluation return vs environment steps (mean ± std over seeds)",
        y_desc: "evaluation return",
        scale: 1.0,
    };
    let path = out.join("return_vs_steps.png");
    super::report::or_warn("return_vs_steps.png", plots::curves_over_seeds(&path, &series, &axis));
    Ok(md)
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
    // a run without a checkpoint starts again in its folder (see `folder_state`)
    let resume = RunDir {
        path: dir.to_path_buf(),
    }
    .checkpoint()
    .join("trainer.json")
    .is_file();
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

/// What a sweep compares: the final metric of its task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SweepMetric {
    /// Test accuracy (image classification).
    Accuracy,
    /// Test bits per token (language model; lower is better).
    BitsPerToken,
    /// Mean evaluation return (DQN agent).
    Return,
}

impl SweepMetric {
    /// The metric of a run's summary.
    pub fn of(summary: &Summary) -> Self {
        match (&summary.lm, &summary.rl) {
            (Some(_), _) => Self::BitsPerToken,
            (_, Some(_)) => Self::Return,
            _ => Self::Accuracy,
        }
    }

    /// The run's value.
    pub fn value(self, summary: &Summary) -> f64 {
        match self {
            Self::Accuracy => summary.test_accuracy.unwrap_or(f64::NAN),
            Self::BitsPerToken => summary.lm.as_ref().map_or(f64::NAN, |l| l.test_bits_per_token),
            Self::Return => summary.rl.as_ref().map_or(f64::NAN, |r| r.eval_return),
        }
    }

    /// The table's column, the CSV's name, the plot's file and axis.
    fn text(self) -> (&'static str, &'static str, &'static str, plots::SweepAxis<'static>) {
        match self {
            Self::Accuracy => (
                "final test accuracy, %",
                "test_acc",
                "accuracy_vs_sparsity.png",
                plots::SweepAxis::ACCURACY,
            ),
            Self::BitsPerToken => (
                "final test bits per token",
                "test_bits_per_token",
                "bits_vs_sparsity.png",
                plots::SweepAxis {
                    caption: "final test bits per token vs sparsity (mean ± std over seeds; lower is better)",
                    y_desc: "test bits per token",
                    scale: 1.0,
                },
            ),
            Self::Return => (
                "final evaluation return",
                "eval_return",
                "return_vs_sparsity.png",
                plots::SweepAxis {
                    caption: "final mean evaluation return vs sparsity (mean ± std over seeds)",
                    y_desc: "evaluation return",
                    scale: 1.0,
                },
            ),
        }
    }

    /// Values are shown multiplied by this (accuracy in %).
    fn scale(self) -> f64 {
        self.text().3.scale
    }
}

fn write_results(
    out: &Path,
    order: &[String],
    results: &BTreeMap<(String, u64), Vec<Summary>>,
) -> anyhow::Result<String> {
    let metric = results
        .values()
        .flatten()
        .next()
        .map_or(SweepMetric::Accuracy, SweepMetric::of);
    let (column, csv_name, plot_file, axis) = metric.text();
    let scale = metric.scale();
    let decimals = match metric {
        SweepMetric::Accuracy => 2,
        SweepMetric::BitsPerToken => 3,
        SweepMetric::Return => 1,
    };
    let mut md = String::new();
    let mut csv = format!("method,sparsity,seeds,mean_{csv_name},std_{csv_name},mean_nonzeros,mean_sparse_macs\n");
    let _ = writeln!(
        md,
        "| method | sparsity | {column} (mean ± std) | seeds | nonzeros | forward MACs |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    let mut series: Vec<plots::Series> = Vec::new();
    for method in order {
        let mut pts = Vec::new();
        for ((m, s), runs) in results.iter().filter(|((m, _), _)| m == method) {
            let accs: Vec<f64> = runs.iter().map(|r| metric.value(r)).collect();
            let (mean, std) = mean_std(&accs);
            let sparsity = *s as f64 / 1e6;
            let nnz = runs.iter().map(|r| r.nonzeros as f64).sum::<f64>() / runs.len() as f64;
            let macs = runs.iter().map(|r| r.sparse_macs as f64).sum::<f64>() / runs.len() as f64;
            let spread = std.map_or("—".to_string(), |s| format!("{:.*}", decimals, scale * s));
            let _ = writeln!(
                md,
                "| {m} | {:.0}% | {:.*} ± {spread} | {} | {:.0} | {:.0} |",
                100.0 * sparsity,
                decimals,
                scale * mean,
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
    super::report::or_warn(
        plot_file,
        plots::metric_vs_sparsity(&out.join(plot_file), &series, &axis),
    );
    Ok(md)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(sparsities: Vec<f64>) -> SweepSpec {
        SweepSpec {
            base: toml::Table::new(),
            methods: vec![sparse_methods::RigLConfig::new().into()],
            switches: toml::Table::new(),
            sparsities,
            seeds: vec![1],
            out: PathBuf::from("unused"),
        }
    }

    #[test]
    fn learning_curves_average_the_seeds_at_the_steps_every_run_reached() {
        let runs = vec![vec![(100, 10.0), (200, 20.0)], vec![(100, 30.0)]];
        let curve = mean_curve(&runs);
        assert_eq!(curve.len(), 1, "200 steps are missing from the second run: {curve:?}");
        let (x, mean, std) = curve[0];
        assert_eq!((x, mean), (100.0, 20.0));
        assert!((std.unwrap() - 200f64.sqrt()).abs() < 1e-12, "sample std of 10 and 30");
        assert_eq!(mean_curve(&runs[..1])[1], (200.0, 20.0, None));
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("results.md"), "table\n").unwrap();
        let curves: Curves = [
            (("b".to_string(), 900_000), runs),
            (("a".to_string(), 0), vec![vec![(100, 5.0), (200, 7.0)]]),
        ]
        .into_iter()
        .collect();
        let md = learning_curves(tmp.path(), &["a".into(), "b".into()], &curves).unwrap();
        assert!(md.contains("| run | 100 | 200 |"), "{md}");
        assert!(md.contains("| a | 5.0 | 7.0 |"), "{md}");
        assert!(md.contains("| b 90% | 20.0 ± 14.1 | — |"), "{md}");
        let written = std::fs::read_to_string(tmp.path().join("results.md")).unwrap();
        assert_eq!(written, format!("table\n{md}"));
        assert!(image::open(tmp.path().join("return_vs_steps.png")).is_ok());
    }

    #[test]
    fn a_run_takes_the_switches_given_and_the_task_s_defaults_for_the_rest() {
        let mut spec = spec(vec![0.9]);
        spec.base.insert("task".into(), toml::Value::String("rl".into()));
        let switches = |spec: &SweepSpec| spec.run_config(&spec.methods[0], 0.9, 1).unwrap().method.switches();
        let m = switches(&spec);
        assert_eq!(
            (&m["delta_t"], &m["drop_fraction"]),
            (&json!(1000), &json!(0.5)),
            "{m:?}"
        );
        // a switch given wins, even at RigL's own default
        let own = sparse_methods::RigLConfig::new().delta_t;
        spec.switches.insert("delta_t".into(), toml::Value::Integer(own as i64));
        let m = switches(&spec);
        assert_eq!(
            (&m["delta_t"], &m["drop_fraction"]),
            (&json!(own), &json!(0.5)),
            "{m:?}"
        );
        // a switch the method lacks is not laid on it
        spec.switches
            .insert("prune_begin_fraction".into(), toml::Value::Float(0.1));
        assert!(!switches(&spec).contains_key("prune_begin_fraction"));
        // a library caller's method config keeps what it sets away from the defaults
        spec.switches.clear();
        spec.methods = vec![sparse_methods::RigLConfig::new().with_drop_fraction(0.2).into()];
        let m = switches(&spec);
        assert_eq!(
            (&m["delta_t"], &m["drop_fraction"]),
            (&json!(1000), &json!(0.2)),
            "{m:?}"
        );
    }

    #[test]
    fn sparsities_equal_within_float_noise_are_one_entry_and_refused() {
        spec(vec![0.9, 0.95]).check().unwrap();
        // 0.1 + 0.8 is 0.9000000000000001 in binary floating point
        for twice in [vec![0.9, 0.9], vec![0.9, 0.1 + 0.8], vec![0.9, 0.900_000_1]] {
            let e = spec(twice).check().unwrap_err().to_string();
            assert!(e.contains("listed twice"), "{e}");
        }
    }

    #[test]
    fn one_seed_has_no_spread() {
        assert_eq!(mean_std(&[0.9]), (0.9, None));
        let (m, s) = mean_std(&[0.8, 1.0]);
        assert!((m - 0.9).abs() < 1e-12);
        // sample std of {0.8, 1.0}: sqrt(0.02 / 1)
        assert!((s.unwrap() - 0.02f64.sqrt()).abs() < 1e-12);
    }
}
