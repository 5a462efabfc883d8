//! Recipes (`[[stage]]` in the run's TOML) as a user runs them: the stages in
//! `metrics.csv`, `summary.json` and the report; each stage's own learning-rate
//! schedule; the target sparsity reached; exact resume when interrupted in either
//! stage; and clear errors for recipes that cannot run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common;
use common::{metrics_without_timings, sparseburn, stderr, weights};

use sparseburn::run::RunConfig;

/// The run's sections: the MLP on 1280 synthetic images in batches of 64 (20
/// steps per epoch), no `[method]` of its own (the stages give theirs).
const RUN: &str = r#"
[model]
name = "mlp"

[data]
dataset = "synthetic"
train_limit = 1280
test_limit = 300

[training]
batch_size = 64
"#;

const STEPS_PER_EPOCH: u64 = 1280 / 64;

/// Dense warm-up (constant lr 0.05) for `warmup` epochs, then GMP to 80% over
/// `prune` epochs (the run's cosine schedule from lr 0.1).
fn two_stages(warmup: usize, prune: usize) -> String {
    format!(
        r#"{RUN}
[[stage]]
name = "warmup"
epochs = {warmup}
method = "dense"
lr = 0.05
schedule = "constant"

[[stage]]
name = "prune"
epochs = {prune}
method = {{ name = "gmp", delta_t = 5, prune_end_fraction = 0.5 }}
sparsity = 0.8
"#
    )
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("recipe.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn train(config: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    sparseburn(&args)
}

/// `metrics.csv` as rows of cells, header first.
fn metrics(dir: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(dir.join("metrics.csv"))
        .unwrap()
        .lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// The column `name` of `metrics.csv`, one cell per epoch.
fn column(dir: &Path, name: &str) -> Vec<String> {
    let rows = metrics(dir);
    let at = rows[0]
        .iter()
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("no column {name}"));
    rows[1..].iter().map(|r| r[at].clone()).collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1e-12)
}

#[test]
fn a_recipe_runs_its_stages_with_their_own_schedules_and_reaches_the_target() {
    let tmp = tempfile::tempdir().unwrap();
    // warm-up → GMP → fine-tune of the fixed masks with a step schedule
    let text = two_stages(1, 2)
        + r#"
[[stage]]
name = "finetune"
epochs = 2
method = "static"
sparsity = 0.8
lr = 0.02
schedule = "step"
milestones = [1]
gamma = 0.5
"#;
    let config = write_config(tmp.path(), &text);
    let out = tmp.path().join("run");
    let o = train(&config, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));

    assert_eq!(
        column(&out, "stage"),
        ["warmup", "prune", "prune", "finetune", "finetune"]
    );
    assert_eq!(column(&out, "epoch"), ["1", "2", "3", "4", "5"]);
    let spe = STEPS_PER_EPOCH;
    let steps: Vec<String> = (1..=5).map(|e| (e * spe).to_string()).collect();
    assert_eq!(column(&out, "step"), steps);

    // the learning rate of each epoch's last step, from each stage's own schedule:
    // constant 0.05; cosine from 0.1 over the 40 steps of the GMP stage
    // (Loshchilov & Hutter: ½·lr·(1 + cos(π·t/T))); 0.02 halved after one epoch
    let cosine = |t: u64| 0.1 * 0.5 * (1.0 + (std::f64::consts::PI * t as f64 / (2 * spe) as f64).cos());
    let expected = [0.05, cosine(spe - 1), cosine(2 * spe - 1), 0.02, 0.01];
    let lr: Vec<f64> = column(&out, "lr").iter().map(|v| v.parse().unwrap()).collect();
    for (epoch, (got, want)) in lr.iter().zip(expected).enumerate() {
        assert!(close(*got, want), "epoch {}: lr {got}, expected {want}", epoch + 1);
    }

    // dense, then pruned to the target, then the masks stay fixed
    let sparsity: Vec<f64> = column(&out, "sparsity").iter().map(|v| v.parse().unwrap()).collect();
    assert_eq!(sparsity[0], 0.0);
    assert!(sparsity[1] > 0.0 && sparsity[1] < 0.8, "{sparsity:?}");
    for s in &sparsity[2..] {
        assert!((s - 0.8).abs() < 1e-3, "{sparsity:?}");
    }
    let nonzeros = column(&out, "nonzeros");
    assert_eq!(nonzeros[2], nonzeros[3]);
    assert_eq!(nonzeros[3], nonzeros[4]);

    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["method"], "dense+gmp+static");
    assert_eq!(summary["epochs"], 5);
    assert_eq!(summary["steps"], 5 * spe);
    assert!((summary["sparsity"].as_f64().unwrap() - 0.8).abs() < 1e-3);
    let stages = summary["stages"].as_array().unwrap();
    let got: Vec<(String, u64, u64, u64, u64)> = stages
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["start_epoch"].as_u64().unwrap(),
                s["end_epoch"].as_u64().unwrap(),
                s["start_step"].as_u64().unwrap(),
                s["end_step"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("warmup".to_string(), 0, 1, 0, spe),
            ("prune".to_string(), 1, 3, spe, 3 * spe),
            ("finetune".to_string(), 3, 5, 3 * spe, 5 * spe),
        ]
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("## Stages") && report.contains("| prune | gmp | 80.00% | 1–3 | 20–60 |"),
        "{report}"
    );
    assert!(out.join("plots/learning_curves.png").is_file());

    // the saved config repeats the run
    let again = tmp.path().join("again");
    let o = train(&out.join("config.toml"), &again, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(metrics_without_timings(&out), metrics_without_timings(&again));
}

/// Trains `text` in full into `a` once, and for each of `stops` into `b<stop>`
/// stopped after that many epochs and resumed: metrics (timings aside), sparse
/// state and weights agree bit for bit with the uninterrupted run.
fn assert_resumes_exactly(text: &str, stops: &[&str], tmp: &Path) {
    let config = write_config(tmp, text);
    let a = tmp.join("a");
    let full = train(&config, &a, &[]);
    assert!(full.status.success(), "{}", stderr(&full));
    for stop in stops {
        let b = tmp.join(format!("b{stop}"));
        let stopped = train(&config, &b, &["--stop-after", stop]);
        assert_eq!(stopped.status.code(), Some(130), "{}", stderr(&stopped));
        assert_eq!(metrics(&b).len(), 1 + stop.parse::<usize>().unwrap());
        let resumed = sparseburn(&["train", "--resume", b.to_str().unwrap()]);
        assert!(resumed.status.success(), "{}", stderr(&resumed));
        assert_eq!(
            metrics_without_timings(&a),
            metrics_without_timings(&b),
            "stopped after {stop}"
        );
        let state = "checkpoint/sparse.safetensors";
        assert!(
            std::fs::read(a.join(state)).unwrap() == std::fs::read(b.join(state)).unwrap(),
            "sparse state differs (stopped after {stop})"
        );
        assert_eq!(weights(&a), weights(&b), "weights differ (stopped after {stop})");
    }
}

/// The fraction of pruned weights in a run's saved masks.
fn saved_sparsity(dir: &Path) -> f64 {
    let masks = sparseburn::sparse_core::state::read_masks(dir.join("checkpoint/sparse.safetensors")).unwrap();
    let total: usize = masks.iter().map(|(_, _, m)| m.len()).sum();
    let active: usize = masks.iter().map(|(_, _, m)| m.count_ones()).sum();
    1.0 - active as f64 / total as f64
}

#[test]
fn a_one_shot_gmp_stage_after_a_sparse_stage_prunes_to_its_target() {
    // GMP to 50%, then GMP with a flat schedule at 90% (one-shot pruning, as
    // docs/recipes.md writes it): the second stage prunes the handed-over masks
    // to 90% at its first step
    let tmp = tempfile::tempdir().unwrap();
    let text = format!(
        r#"{RUN}
[[stage]]
name = "half"
epochs = 1
method = {{ name = "gmp", delta_t = 5, prune_end_fraction = 0.5 }}
sparsity = 0.5

[[stage]]
name = "oneshot"
epochs = 1
method = {{ name = "gmp", initial_sparsity = 0.9 }}
sparsity = 0.9
"#
    );
    let config = write_config(tmp.path(), &text);
    let out = tmp.path().join("run");
    let o = train(&config, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let saved = saved_sparsity(&out);
    assert!((saved - 0.9).abs() < 1e-3, "saved masks at sparsity {saved}");
    let sparsity: Vec<f64> = column(&out, "sparsity").iter().map(|v| v.parse().unwrap()).collect();
    assert!((sparsity[0] - 0.5).abs() < 1e-3, "{sparsity:?}");
    assert!((sparsity[1] - 0.9).abs() < 1e-3, "{sparsity:?}");
}

#[test]
fn a_two_stage_recipe_resumes_exactly_when_interrupted_in_either_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let text = two_stages(2, 2);
    // inside the warm-up, at the boundary, inside the GMP stage
    assert_resumes_exactly(&text, &["1", "2", "3"], tmp.path());
    let stages = column(&tmp.path().join("b3"), "stage");
    assert_eq!(stages, ["warmup", "warmup", "prune", "prune"]);
}

#[test]
fn a_three_stage_recipe_resumes_exactly_at_the_sparse_hand_over_and_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    // warm-up → GMP → a fixed-mask fine-tune with its own optimizer (Adam)
    let text = two_stages(1, 1)
        + r#"
[[stage]]
name = "finetune"
epochs = 2
method = "static"
sparsity = 0.8
optimizer = { name = "adam" }
lr = 0.001
"#;
    // at the GMP → static boundary (the masks handed over), inside the fine-tune
    assert_resumes_exactly(&text, &["2", "3"], tmp.path());
    let stages = column(&tmp.path().join("b3"), "stage");
    assert_eq!(stages, ["warmup", "prune", "finetune", "finetune"]);
}

#[test]
fn ctrl_c_in_the_second_stage_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), &two_stages(2, 10));
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let full = train(&config, &a, &[]);
    assert!(full.status.success(), "{}", stderr(&full));
    let child = Command::new(env!("CARGO_BIN_EXE_sparseburn"))
        .args([
            "train",
            "--config",
            config.to_str().unwrap(),
            "--out",
            b.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // interrupt once the GMP stage's first epoch is written: inside that stage,
    // wherever the run is then
    let file = b.join("metrics.csv");
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&file).map_or(0, |m| m.lines().count()) < 4 {
        assert!(started.elapsed().as_secs() < 120, "the run did not finish its warm-up");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(metrics(&b).len() < 13, "the run finished before the interrupt");
    let trainer = std::fs::read_to_string(b.join("checkpoint/trainer.json")).unwrap();
    assert!(trainer.contains("\"stage\": 1"), "{trainer}");
    let resumed = sparseburn(&["train", "--resume", b.to_str().unwrap()]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(metrics_without_timings(&a), metrics_without_timings(&b));
    assert_eq!(weights(&a), weights(&b));
}

#[test]
fn a_one_stage_recipe_trains_the_same_as_the_run_without_stages() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = format!("{RUN}epochs = 2\n[method]\nname = \"rigl\"\ndelta_t = 5\n[sparsity]\nsparsity = 0.8\n");
    let staged = format!(
        "{RUN}[method]\nname = \"rigl\"\ndelta_t = 5\n[sparsity]\nsparsity = 0.8\n[[stage]]\nname = \"only\"\nepochs = 2\n"
    );
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (ca, cb) = (tmp.path().join("plain.toml"), tmp.path().join("staged.toml"));
    std::fs::write(&ca, plain).unwrap();
    std::fs::write(&cb, staged).unwrap();
    assert!(train(&ca, &a, &[]).status.success());
    let o = train(&cb, &b, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // a run without stages has no stage column
    assert!(!metrics(&a)[0].contains(&"stage".to_string()));
    let drop_stage = |dir: &Path| -> Vec<String> {
        metrics(dir)
            .iter()
            .map(|cells| {
                let mut c: Vec<String> = cells[..cells.len() - 2].to_vec();
                if c.len() == 15 {
                    c.remove(14);
                }
                c.join(",")
            })
            .collect()
    };
    assert_eq!(drop_stage(&a), drop_stage(&b));
    assert_eq!(weights(&a), weights(&b));
}

/// The error of resolving `stages` (TOML) after the run's sections.
fn error(stages: &str) -> String {
    // a top-level key (`stage = []`) goes before the run's tables
    let text = if stages.starts_with("[[") {
        format!("{RUN}{stages}")
    } else {
        format!("{stages}\n{RUN}")
    };
    let table: toml::Table = toml::from_str(&text).unwrap();
    match RunConfig::from_table(table) {
        Ok(_) => panic!("accepted:\n{stages}"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn recipes_that_cannot_run_are_refused_with_the_fix() {
    let cases: [(&str, &str); 12] = [
        ("stage = []", "at least one [[stage]]"),
        ("[[stage]]\nname = \"a\"\nepochs = 0", "at least 1"),
        ("[[stage]]\nepochs = 1", "needs a name"),
        ("[[stage]]\nname = \"a\"", "needs its epochs"),
        (
            "[[stage]]\nname = \"a\"\nepochs = 1\n[[stage]]\nname = \"a\"\nepochs = 1",
            "used twice",
        ),
        ("[[stage]]\nname = \"a,b\"\nepochs = 1", "letters, digits"),
        (
            "[[stage]]\nname = \"a\"\nepochs = 1\nlearning_rate = 0.1",
            "unknown key `learning_rate`",
        ),
        (
            "[[stage]]\nname = \"a\"\nepochs = 1\nmethod = \"prune-it\"",
            "unknown method `prune-it`",
        ),
        (
            "[[stage]]\nname = \"a\"\nepochs = 1\nmethod = \"gmp\"\nsparsity = 0.9\n[[stage]]\nname = \"b\"\nepochs = 1\nmethod = \"gmp\"\nsparsity = 0.5",
            "set its sparsity to 0.9 or more",
        ),
        (
            "[[stage]]\nname = \"a\"\nepochs = 1\nmethod = \"gmp\"\nsparsity = 0.9\n[[stage]]\nname = \"b\"\nepochs = 1\nmethod = \"static\"\nsparsity = 0.8",
            "pruned weights come back only in a dense stage",
        ),
        (
            "[[stage]]\nname = \"a\"\nepochs = 1\nmethod = \"dense\"\nsparsity = 0.5",
            "dense baseline trains without sparsity",
        ),
        (
            "[[stage]]\nname = \"a\"\nepochs = 1\nmethod = \"gmp\"\nsparsity = 0.9\n[[stage]]\nname = \"b\"\nepochs = 1\nmethod = \"static\"\nsparsity = { sparsity = 0.9, distribution = \"erk\" }",
            "drop its distribution (it inherits theirs)",
        ),
    ];
    for (stages, expected) in cases {
        let e = error(stages);
        assert!(e.contains(expected), "{stages}\n→ {e}");
    }
}

#[test]
fn stages_whose_method_cannot_run_there_are_refused_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[stage]]\nname = \"a\"\nepochs = 1\nmethod = \"lth\"\nsparsity = 0.8\n",
            "trains in rounds",
        ),
        (
            "[[stage]]\nname = \"a\"\nepochs = 1\nmethod = \"dense\"\n[[stage]]\nname = \"b\"\nepochs = 1\nmethod = \"srste\"\n",
            "changes the model's forward pass",
        ),
        (
            "[[stage]]\nname = \"a\"\nepochs = 1\nmethod = { name = \"gmp\", delta_t = 5 }\nsparsity = 0.8\n[[stage]]\nname = \"b\"\nepochs = 1\nmethod = \"static\"\nsparsity = 0.9\n",
            "cannot reach 0.9; set its sparsity to 0.8, or use a method that prunes gradually",
        ),
        // a stage that continues masks gets its method's plan check too
        (
            "[[stage]]\nname = \"a\"\nepochs = 1\nmethod = { name = \"gmp\", delta_t = 5 }\nsparsity = { sparsity = 0.5, distribution = \"global\" }\n[[stage]]\nname = \"b\"\nepochs = 1\nmethod = \"mest\"\nsparsity = { sparsity = 0.5, distribution = \"global\" }\n",
            "mutates per layer: use the unstructured pattern with a per-layer distribution",
        ),
    ];
    for (i, (stages, expected)) in cases.iter().enumerate() {
        let config = write_config(tmp.path(), &format!("{RUN}{stages}"));
        let out = tmp.path().join(format!("run{i}"));
        let o = train(&config, &out, &[]);
        assert!(!o.status.success(), "{stages}");
        let e = stderr(&o);
        assert!(e.contains(expected) && !e.contains("panicked"), "{stages}\n→ {e}");
        // nothing was trained, and the folder does not block a retry
        assert!(!out.join("metrics.csv").exists(), "{stages}");
    }
}

#[test]
fn epochs_task_and_sweep_conflicts_are_refused() {
    let table: toml::Table =
        toml::from_str(&format!("{}\nepochs = 5\n[[stage]]\nname = \"a\"\nepochs = 2\n", RUN)).unwrap();
    let e = format!("{:#}", RunConfig::from_table(table).unwrap_err());
    assert!(e.contains("add up to 2") && e.contains("drop epochs"), "{e}");
    let table: toml::Table = toml::from_str("task = \"lm\"\n[[stage]]\nname = \"a\"\nepochs = 2\n").unwrap();
    let e = format!("{:#}", RunConfig::from_table(table).unwrap_err());
    assert!(e.contains("image classification only"), "{e}");

    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), &two_stages(1, 1));
    let o = sparseburn(&[
        "sweep",
        "--config",
        config.to_str().unwrap(),
        "--methods",
        "rigl",
        "--sparsities",
        "0.5",
        "--out",
        tmp.path().join("sweep").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot sweep a recipe"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}

#[test]
fn the_example_recipes_resolve() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/recipes");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let cfg = RunConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        assert!(cfg.stages.len() >= 2, "{}", path.display());
        // each ends sparse, and its epochs are the stages'
        assert!(cfg.target_sparsity() > 0.0);
        assert_eq!(cfg.training.epochs, cfg.stages.iter().map(|s| s.epochs).sum::<usize>());
        // a sparse stage after a sparse one trains (and records) its masks' distribution
        for pair in cfg.stages.windows(2) {
            if let (Some(a), Some(b)) = (&pair[0].config.sparsity, &pair[1].config.sparsity) {
                assert_eq!(a.distribution, b.distribution, "{}: {}", path.display(), pair[1].name);
            }
        }
        // the written config reads back to the same config and the same text
        let text = cfg.to_toml();
        let again = RunConfig::from_table(toml::from_str(&text).unwrap()).unwrap();
        assert_eq!(cfg, again);
        assert_eq!(text, again.to_toml());
        names.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    names.sort();
    assert_eq!(
        names,
        [
            "oneshot-finetune.toml",
            "wanda-24-finetune.toml",
            "warmup-gmp-finetune.toml"
        ]
    );
}

#[test]
fn a_recipe_run_exports_its_last_stage() {
    let tmp = tempfile::tempdir().unwrap();
    // the run's own [method] (SR-STE, which changes the forward pass and so
    // cannot be exported) is not the model's: the stages' methods are
    let text = format!("{RUN}[method]\nname = \"srste\"\n{}", &two_stages(1, 1)[RUN.len()..]);
    let config = write_config(tmp.path(), &text);
    let out = tmp.path().join("run");
    let o = train(&config, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let file = tmp.path().join("model.safetensors");
    let o = sparseburn(&["export", out.to_str().unwrap(), "-o", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = sparseburn(&[
        "infer",
        file.to_str().unwrap(),
        "--dataset",
        "synthetic",
        "--test-limit",
        "300",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let recorded = format!("{:.2}%", 100.0 * summary["test_accuracy"].as_f64().unwrap());
    let said = String::from_utf8_lossy(&o.stdout).into_owned() + &stderr(&o);
    assert!(said.contains(&format!("accuracy {recorded}")), "{said}");
}

#[test]
fn prune_and_compare_dense_judge_a_recipe_by_its_stages() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let prune = |run: &Path, file: &str| {
        sparseburn(&[
            "prune",
            "--run",
            run.to_str().unwrap(),
            "--method",
            "magnitude",
            "--sparsity",
            "0.5",
            "-o",
            t.join(file).to_str().unwrap(),
        ])
    };

    // sparse stages under a dense top-level [method] (which no stage uses):
    // sparse, refused with the stage's method
    let sparse = format!("{RUN}[method]\nname = \"dense\"\n{}", &two_stages(1, 1)[RUN.len()..]);
    let config = write_config(t, &sparse);
    let run = t.join("sparse");
    let o = train(&config, &run, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = prune(&run, "a.safetensors");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("trained sparse with `gmp` (stage `prune`)"),
        "{}",
        stderr(&o)
    );

    // dense stages without a [method] of the run's own (the default is RigL): dense
    let dense = format!(
        "{RUN}[[stage]]\nname = \"a\"\nepochs = 1\nmethod = \"dense\"\nlr = 0.05\n[[stage]]\nname = \"b\"\nepochs = 1\nmethod = \"dense\"\n"
    );
    let config = write_config(t, &dense);
    let run = t.join("dense");
    let o = train(&config, &run, &["--compare-dense"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("dense baseline already"), "{}", stderr(&o));
    let o = train(&config, &run, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = prune(&run, "b.safetensors");
    assert!(o.status.success(), "{}", stderr(&o));
}

// ---- one-shot pruning at a stage's start (`prune = { method = ... }`) ----

/// Dense training for `dense` epochs, then a static fine-tune of `finetune`
/// epochs at 50% (uniform) that starts with one-shot pruning by `prune` on the
/// first 2 training batches; `lr` is the fine-tune's learning rate.
fn one_shot_recipe(dense: usize, finetune: usize, prune: &str, lr: &str) -> String {
    format!(
        r#"{RUN}
[[stage]]
name = "dense"
epochs = {dense}
method = "dense"
lr = 0.05
schedule = "constant"

[[stage]]
name = "finetune"
epochs = {finetune}
method = "static"
sparsity = {{ sparsity = 0.5, distribution = "uniform" }}
prune = {{ method = "{prune}", calibration_batches = 2 }}
lr = {lr}
schedule = "constant"
"#
    )
}

/// The MLP's layers of a run folder as `(W [fan-in × neurons] row-major, bias)` in f64.
fn layers(dir: &Path) -> Vec<(Vec<f64>, Vec<f64>)> {
    let w = weights(dir);
    let f = |bits: &Vec<u32>| bits.iter().map(|b| f64::from(f32::from_bits(*b))).collect::<Vec<f64>>();
    w.chunks(2).map(|p| (f(&p[0]), f(&p[1]))).collect()
}

/// The run's saved masks by weight path, with their shapes.
fn masks(dir: &Path) -> Vec<(String, Vec<usize>, sparseburn::sparse_core::Mask)> {
    let mut m = sparseburn::sparse_core::state::read_masks(dir.join("checkpoint/sparse.safetensors")).unwrap();
    m.sort_by(|a, b| a.0.cmp(&b.0));
    m
}

/// The calibration images of `config`'s run, flattened: the first `batches`
/// batches of its first epoch's order (loaded with the crate's data pipeline;
/// everything computed from them in these tests is the test's own).
fn calibration_images(config: &Path, batches: usize) -> Vec<Vec<f64>> {
    use sparseburn::data::{BatchOrder, ImageBatcher};
    let mut cfg = RunConfig::load(config).unwrap();
    let data = sparseburn::run::train::load_data(&mut cfg).unwrap();
    let train = data.train;
    let size = cfg.training.batch_size;
    let order = BatchOrder {
        len: train.len(),
        batch_size: size,
        seed: cfg.training.seed,
    }
    .epoch(0);
    let batcher = ImageBatcher::new(&train);
    let device = burn::tensor::Device::flex();
    order[..batches * size]
        .chunks(size)
        .flat_map(|chunk| {
            let images = batcher.batch_indices(&train, chunk, &device, None).images;
            let b = images.dims()[0];
            let v = images.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
            let per = v.len() / b;
            v.chunks(per)
                .map(|r| r.iter().map(|x| f64::from(*x)).collect())
                .collect::<Vec<Vec<f64>>>()
        })
        .collect()
}

/// `x·W + b` for every row of `x` (W is `fan-in × neurons`), with ReLU when `relu`.
fn linear(x: &[Vec<f64>], w: &[f64], b: &[f64], relu: bool) -> Vec<Vec<f64>> {
    let out = b.len();
    x.iter()
        .map(|row| {
            let mut y = b.to_vec();
            for (j, xj) in row.iter().enumerate() {
                if *xj != 0.0 {
                    for (o, yo) in y.iter_mut().enumerate() {
                        *yo += xj * w[j * out + o];
                    }
                }
            }
            if relu {
                y.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            y
        })
        .collect()
}

/// `‖X·A − X·B‖²_F` for `fan-in × neurons` matrices A and B.
fn output_error(x: &[Vec<f64>], a: &[f64], b: &[f64], out: usize) -> f64 {
    let d: Vec<f64> = a.iter().zip(b).map(|(p, q)| p - q).collect();
    linear(x, &d, &vec![0.0; out], false)
        .iter()
        .flatten()
        .map(|v| v * v)
        .sum()
}

/// Trains `recipe` twice under `dir`: stopped after its first (dense) stage
/// into `dense/`, and to the end into `run/`; returns the config file and both
/// folders.
fn dense_stage_and_run(dir: &Path, recipe: &str) -> (PathBuf, PathBuf, PathBuf) {
    let config = write_config(dir, recipe);
    let (dense_dir, run) = (dir.join("dense"), dir.join("run"));
    let o = train(&config, &dense_dir, &["--stop-after", "1"]);
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let o = train(&config, &run, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    (config, dense_dir, run)
}

#[test]
fn a_wanda_stage_prunes_by_weight_times_input_norm_per_row_and_the_fine_tune_keeps_the_masks() {
    let tmp = tempfile::tempdir().unwrap();
    // the dense weights pruned: the checkpoint at the end of the dense stage
    let (config, dense_dir, run) = dense_stage_and_run(tmp.path(), &one_shot_recipe(1, 2, "wanda", "0.05"));

    let dense = layers(&dense_dir);
    let saved = masks(&run);
    assert_eq!(saved.len(), dense.len(), "every layer is pruned");
    // Wanda (Sun et al. 2023): S_ij = |W_ij|·‖X_j‖₂ over the calibration tokens,
    // the ⌊0.5·fan-in⌋ lowest of each output neuron pruned; each layer's inputs
    // come from the model whose earlier layers are already pruned
    let mut x = calibration_images(&config, 2);
    assert_eq!(x.len(), 2 * 64);
    let last = dense.len() - 1;
    for (l, ((w, b), (path, shape, mask))) in dense.iter().zip(&saved).enumerate() {
        assert_eq!(path, &format!("layers.{l}.weight"));
        let (fan_in, out) = (shape[0], shape[1]);
        let norms: Vec<f64> = (0..fan_in)
            .map(|j| x.iter().map(|row| row[j] * row[j]).sum::<f64>().sqrt())
            .collect();
        let pruned = fan_in / 2;
        let mut disagree = 0;
        for o in 0..out {
            let score = |j: usize| w[j * out + o].abs() * norms[j];
            let mut order: Vec<usize> = (0..fan_in).collect();
            order.sort_by(|&a, &c| score(a).total_cmp(&score(c)).then(a.cmp(&c)));
            // the cut between the last pruned and the first kept score
            let cut = 0.5 * (score(order[pruned - 1]) + score(order[pruned]));
            for (rank, &j) in order.iter().enumerate() {
                let kept = rank >= pruned;
                if mask.get(j * out + o) != kept {
                    // only a near-tie at the cut may differ (f32 activations in the run)
                    assert!(
                        (score(j) - cut).abs() <= 1e-5 * cut,
                        "{path} neuron {o} input {j}: kept {} but score {} vs cut {cut}",
                        mask.get(j * out + o),
                        score(j)
                    );
                    disagree += 1;
                }
            }
            let kept = (0..fan_in).filter(|&j| mask.get(j * out + o)).count();
            assert_eq!(kept, fan_in - pruned, "{path} neuron {o}");
        }
        assert!(disagree * 1000 <= fan_in * out, "{path}: {disagree} near-ties differ");
        // the next layer's inputs: this layer pruned
        let pruned_w: Vec<f64> = w
            .iter()
            .enumerate()
            .map(|(i, v)| if mask.get(i) { *v } else { 0.0 })
            .collect();
        x = linear(&x, &pruned_w, b, l < last);
    }

    // the fine-tune keeps the masks: same nonzeros in every fine-tune epoch, the
    // pruned weights exactly 0 in the final model, and the weights trained on
    assert_eq!(column(&run, "stage"), ["dense", "finetune", "finetune"]);
    let nonzeros = column(&run, "nonzeros");
    assert_eq!(nonzeros[1], nonzeros[2]);
    let active: usize = saved.iter().map(|(_, _, m)| m.count_ones()).sum();
    assert_eq!(nonzeros[1].parse::<usize>().unwrap(), active);
    let last_weights = layers(&run);
    for ((w, _), (path, _, mask)) in last_weights.iter().zip(&saved) {
        for (i, v) in w.iter().enumerate() {
            if !mask.get(i) {
                assert_eq!(*v, 0.0, "{path}[{i}] pruned but {v}");
            }
        }
    }
    // and the fine-tune trained the kept weights: Wanda leaves them as they
    // were (the dense values), so in every layer some kept weight moved from
    // its dense value (a pruning that froze the weights would fail here)
    for (((w, _), (w_dense, _)), (path, _, mask)) in last_weights.iter().zip(&dense).zip(&saved) {
        let moved = (0..w.len()).filter(|&i| mask.get(i) && w[i] != w_dense[i]).count();
        assert!(moved > 0, "{path}: no kept weight trained in the fine-tune");
    }
    // the stage's pruning in the summary and the report
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["stages"][1]["prune"], "wanda");
    assert!(summary["stages"][0].get("prune").is_none());
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        report.contains("| finetune | one-shot wanda, then static | 50.00% |"),
        "{report}"
    );
}

#[test]
fn a_sparsegpt_stage_prunes_exactly_and_reconstructs_better_than_magnitude() {
    let tmp = tempfile::tempdir().unwrap();
    // a fine-tune step of lr 1e-20 leaves every weight as the pruning wrote it
    // (|lr·g| is far below half an f32 ulp of any weight that is not 0)
    let (config, dense_dir, run) = dense_stage_and_run(tmp.path(), &one_shot_recipe(1, 1, "sparsegpt", "1e-20"));

    let dense = layers(&dense_dir);
    let pruned = layers(&run);
    let saved = masks(&run);
    let mut x = calibration_images(&config, 2);
    let last = dense.len() - 1;
    for (l, (((w, _), (w_hat, b_hat)), (path, shape, mask))) in dense.iter().zip(&pruned).zip(&saved).enumerate() {
        let (fan_in, out) = (shape[0], shape[1]);
        // sparsity exact: half of the layer's weights pruned, and 0 in the model
        assert_eq!(mask.count_ones() * 2, fan_in * out, "{path}");
        for (i, v) in w_hat.iter().enumerate() {
            if !mask.get(i) {
                assert_eq!(*v, 0.0, "{path}[{i}]");
            }
        }
        // SparseGPT updates the kept weights (magnitude and Wanda keep them as they are)
        let changed = (0..w.len()).filter(|&i| mask.get(i) && w_hat[i] != w[i]).count();
        assert!(
            changed * 2 > mask.count_ones(),
            "{path}: {changed} kept weights updated"
        );
        // on this layer's calibration inputs (from the already pruned layers
        // before it): ‖WX − ŴX‖² of SparseGPT ≤ that of magnitude pruning at the
        // same sparsity (the largest |W| of the layer kept)
        let mut by_size: Vec<usize> = (0..w.len()).collect();
        by_size.sort_by(|&a, &c| w[c].abs().total_cmp(&w[a].abs()).then(a.cmp(&c)));
        let mut magnitude = vec![0.0; w.len()];
        for &i in &by_size[..mask.count_ones()] {
            magnitude[i] = w[i];
        }
        let sparsegpt = output_error(&x, w, w_hat, out);
        let by_magnitude = output_error(&x, w, &magnitude, out);
        assert!(
            sparsegpt <= by_magnitude,
            "{path}: SparseGPT error {sparsegpt} > magnitude {by_magnitude}"
        );
        x = linear(&x, w_hat, b_hat, l < last);
    }
}

#[test]
fn a_rigl_stage_after_a_pruned_static_stage_starts_from_its_masks_and_keeps_the_sparsity() {
    // dense → (one-shot Wanda) static → RigL, which updates at its steps 0 and
    // 25 (of 40) and drops 5% of each layer's active weights at most
    let tmp = tempfile::tempdir().unwrap();
    let text = one_shot_recipe(1, 1, "wanda", "0.05")
        + r#"
[[stage]]
name = "rigl"
epochs = 2
method = { name = "rigl", delta_t = 25, end_fraction = 1.0, drop_fraction = 0.05 }
sparsity = 0.5
lr = 0.05
schedule = "constant"
"#;
    let config = write_config(tmp.path(), &text);
    let (pruned, early, run) = (
        tmp.path().join("pruned"),
        tmp.path().join("early"),
        tmp.path().join("run"),
    );
    for (dir, stop) in [(&pruned, "2"), (&early, "3")] {
        let o = train(&config, dir, &["--stop-after", stop]);
        assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    }
    let o = train(&config, &run, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(column(&run, "stage"), ["dense", "finetune", "rigl", "rigl"]);

    let (handed, first, last) = (masks(&pruned), masks(&early), masks(&run));
    assert_eq!(handed.len(), last.len());
    for (((path, _, m0), (_, _, m1)), (_, _, m2)) in handed.iter().zip(&first).zip(&last) {
        // RigL keeps each layer's count of active weights
        assert_eq!(m1.count_ones(), m0.count_ones(), "{path}");
        assert_eq!(m2.count_ones(), m0.count_ones(), "{path}");
        // its step-0 masks are the handed-over ones: after its step-0 update
        // (a drop and a regrowth of at most ⌈5%⌉ of the active weights each)
        // the masks differ from them in at most 2·⌈0.05·active⌉ places (masks
        // of its own, drawn at random at 50%, would differ in about half)
        let bound = 2 * m0.count_ones().div_ceil(20);
        let moved = (0..m0.len()).filter(|&i| m0.get(i) != m1.get(i)).count();
        assert!(moved <= bound, "{path}: {moved} of {} differ after step 0", m0.len());
    }
    // and RigL moved weights at step 25
    let moved: usize = first
        .iter()
        .zip(&last)
        .map(|((_, _, a), (_, _, b))| (0..a.len()).filter(|&i| a.get(i) != b.get(i)).count())
        .sum();
    assert!(moved > 0, "RigL moved no weight at its step 25");
    let sparsity: Vec<f64> = column(&run, "sparsity").iter().map(|v| v.parse().unwrap()).collect();
    for s in &sparsity[1..] {
        assert!((s - 0.5).abs() < 1e-3, "{sparsity:?}");
    }
}

#[test]
fn a_one_shot_stage_resumes_exactly_before_at_and_after_the_pruning() {
    let tmp = tempfile::tempdir().unwrap();
    // inside the dense stage, at its end (the pruning is the next step),
    // inside the pruned fine-tune (resumed from the checkpoint: no second pruning)
    let wanda = one_shot_recipe(2, 2, "wanda", "0.05");
    assert_resumes_exactly(&wanda, &["1", "2", "3"], tmp.path());
    let sparsegpt = tmp.path().join("sparsegpt");
    std::fs::create_dir(&sparsegpt).unwrap();
    assert_resumes_exactly(&one_shot_recipe(2, 2, "sparsegpt", "0.05"), &["2", "3"], &sparsegpt);
}

#[test]
fn one_shot_stages_that_cannot_run_are_refused_with_the_fix() {
    let dense = "[[stage]]\nname = \"a\"\nepochs = 1\nmethod = \"dense\"\n";
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{dense}[[stage]]\nname = \"b\"\nepochs = 1\nmethod = \"dense\"\nprune = \"wanda\""),
            "give the stage a sparsity and a sparse method",
        ),
        (
            "[[stage]]\nname = \"a\"\nepochs = 1\nmethod = \"gmp\"\nsparsity = 0.5\n[[stage]]\nname = \"b\"\nepochs = 1\nmethod = \"static\"\nsparsity = 0.5\nprune = \"wanda\"".into(),
            "put a dense stage between them, or drop prune",
        ),
        (
            format!("{dense}[[stage]]\nname = \"b\"\nepochs = 1\nmethod = \"static\"\nsparsity = 0.5\nprune = {{ method = \"sparsegpt\", calibration_batches = 0 }}"),
            "set calibration_batches to 1 or more",
        ),
        (
            format!("{dense}[[stage]]\nname = \"b\"\nepochs = 1\nmethod = \"static\"\nsparsity = 0.5\nprune = \"obs\""),
            "unknown one-shot pruning method `obs`; use magnitude, wanda, sparsegpt",
        ),
        (
            format!("{dense}[[stage]]\nname = \"b\"\nepochs = 1\nmethod = \"static\"\nsparsity = 0.5\nprune = {{ calibration_batches = 2 }}"),
            "prune must be a one-shot method",
        ),
        (
            format!("{dense}[[stage]]\nname = \"b\"\nepochs = 1\nmethod = \"static\"\nsparsity = 0.5\nprune = {{ method = \"wanda\", samples = 2 }}"),
            "[prune] has no key `samples`; its keys: block_size, calibration_batches, dampening, method",
        ),
        (
            format!("{dense}[[stage]]\nname = \"b\"\nepochs = 1\nmethod = \"static\"\nsparsity = 0.5\nprune = {{ method = \"sparsegpt\", dampening = -1.0 }}"),
            "dampening -1 must be a finite number >= 0",
        ),
        (
            format!("{dense}[[stage]]\nname = \"b\"\nepochs = 1\nmethod = \"static\"\nsparsity = {{ sparsity = 0.7, pattern = \"2:4\" }}\nprune = \"wanda\""),
            "pattern 2:4 fixes the sparsity at 0.5, but the target is 0.7; set the sparsity to 0.5",
        ),
        (
            format!("{dense}[[stage]]\nname = \"b\"\nepochs = 1\nmethod = \"static\"\nsparsity = {{ sparsity = 0.75, pattern = \"block:2x2\" }}\nprune = \"wanda\""),
            "supports the unstructured and N:M patterns, not block:2x2; use unstructured or e.g. 2:4",
        ),
        (
            format!("{dense}[[stage]]\nname = \"b\"\nepochs = 1\nmethod = \"static\"\nsparsity = {{ sparsity = 0.5, pattern = \"2:4\" }}\nprune = {{ method = \"sparsegpt\", block_size = 6 }}"),
            "must be a multiple of M = 4",
        ),
        (
            format!("{dense}[[stage]]\nname = \"b\"\nepochs = 1\nmethod = \"static\"\nsparsity = 0.5\nprune = {{ method = \"wanda\", dampening = 0.1 }}"),
            "prune = wanda: dampening applies only to sparsegpt, which reconstructs the kept weights; drop dampening, or use method = \"sparsegpt\"",
        ),
        (
            format!("{dense}[[stage]]\nname = \"b\"\nepochs = 1\nmethod = \"static\"\nsparsity = 0.5\nprune = {{ method = \"magnitude\", block_size = 64, dampening = 0.1 }}"),
            "block_size and dampening applies only to sparsegpt",
        ),
    ];
    for (stages, expected) in cases {
        let e = error(&stages);
        assert!(e.contains(expected), "{stages}\n→ {e}");
    }

    // refused when training starts, before the first step
    let tmp = tempfile::tempdir().unwrap();
    let starts = [
        // an epoch has 20 batches
        (
            format!(
                "{dense}[[stage]]\nname = \"b\"\nepochs = 1\nmethod = \"static\"\nsparsity = 0.5\nprune = {{ method = \"wanda\", calibration_batches = 21 }}\n"
            ),
            "set it to at most 20",
        ),
        // 3:8 and the hidden layer's fan-in of 300
        (
            format!(
                "{dense}[[stage]]\nname = \"b\"\nepochs = 1\nmethod = \"static\"\nsparsity = {{ sparsity = 0.625, pattern = \"3:8\" }}\nprune = \"wanda\"\n"
            ),
            "needs M to divide the fan-in 300",
        ),
    ];
    for (i, (stages, expected)) in starts.iter().enumerate() {
        let config = write_config(tmp.path(), &format!("{RUN}{stages}"));
        let out = tmp.path().join(format!("run{i}"));
        let o = train(&config, &out, &[]);
        assert!(!o.status.success(), "{stages}");
        let e = stderr(&o);
        assert!(e.contains(expected) && !e.contains("panicked"), "{stages}\n→ {e}");
        assert!(!out.join("metrics.csv").exists(), "{stages}");
    }
    // magnitude pruning needs no calibration data: more calibration batches
    // than an epoch has are not refused
    let stages = format!(
        "{dense}[[stage]]\nname = \"b\"\nepochs = 1\nmethod = \"static\"\nsparsity = 0.5\nprune = {{ method = \"magnitude\", calibration_batches = 21 }}\n"
    );
    let config = write_config(tmp.path(), &format!("{RUN}{stages}"));
    let o = train(&config, &tmp.path().join("magnitude"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
}
