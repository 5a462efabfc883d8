//! The tasks besides image classification, through the `sparseburn` binary:
//! a language-model run (`--task lm`) writes the same run folder as an image
//! run, with bits per character and a generated sample, resumes bit for bit, and
//! bad corpora get one-line errors. Tiny models and budgets: the file runs in
//! seconds.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use common::{metrics_without_timings, sparseburn, stderr};
use serde_json::json;
use sparseburn::sparse_core::walk::{self, ParamPath, PathVisitor};
use sparseburn::sparse_models::{CharTransformer, CharTransformerConfig};

/// A corpus of `lines` lines of eight words from a small vocabulary, from a
/// fixed linear congruential generator (no file of ours is needed).
fn corpus(dir: &Path, lines: usize) -> PathBuf {
    let words = [
        "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "and", "sleeps",
    ];
    let mut state = 12345u64;
    let mut text = String::new();
    for _ in 0..lines {
        let line: Vec<&str> = (0..8)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                words[(state >> 33) as usize % words.len()]
            })
            .collect();
        text.push_str(&line.join(" "));
        text.push('\n');
    }
    let folder = dir.join("corpus");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("words.txt"), text).unwrap();
    folder
}

/// The characters of the corpus: its vocabulary (the loader's rule, computed here).
fn vocabulary(folder: &Path) -> usize {
    let text = std::fs::read_to_string(folder.join("words.txt")).unwrap();
    let mut chars: Vec<char> = text.chars().collect();
    chars.sort_unstable();
    chars.dedup();
    chars.len()
}

/// A tiny language-model run: 1 block of width 16, windows of 16 characters,
/// 3 epochs of 5 batches of 4 windows, evaluated on 200 characters.
fn lm_args(corpus: &Path, out: &Path) -> Vec<String> {
    [
        "train",
        "--task",
        "lm",
        "--data-dir",
        corpus.to_str().unwrap(),
        "--block",
        "16",
        "--layers",
        "1",
        "--heads",
        "2",
        "--d-model",
        "16",
        "--dropout",
        "0.1",
        "--batch-size",
        "4",
        "--batches-per-epoch",
        "5",
        "--epochs",
        "3",
        "--eval-tokens",
        "200",
        "--lr",
        "0.003",
        "--method",
        "rigl",
        "--sparsity",
        "0.8",
        "-m",
        "delta_t=3",
        "--out",
        out.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run(args: &[String]) -> Output {
    sparseburn(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn column(dir: &Path, name: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let i = header.iter().position(|h| *h == name).unwrap();
    lines.map(|l| l.split(',').nth(i).unwrap().parse().unwrap()).collect()
}

#[derive(Default)]
struct Bits(Vec<(String, Vec<u32>)>);

impl PathVisitor for Bits {
    fn visit<const D: usize>(&mut self, path: &ParamPath, param: &Param<Tensor<D>>) {
        let values = param.val().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        self.0
            .push((path.dotted(), values.iter().map(|x| x.to_bits()).collect()));
    }
}

/// Every parameter of the saved char transformer, as bits.
fn weights(dir: &Path, vocab: usize) -> Vec<(String, Vec<u32>)> {
    let device = burn::tensor::Device::flex();
    let model: CharTransformer = CharTransformerConfig::new(vocab)
        .with_block(16)
        .with_layers(1)
        .with_heads(2)
        .with_d_model(16)
        .init(&device)
        .unwrap()
        .load_file(dir.join("checkpoint/model"));
    let mut bits = Bits::default();
    walk::visit(&model, &mut bits);
    bits.0
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn a_language_model_run_writes_the_run_folder_with_bits_per_character_and_a_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = corpus(tmp.path(), 300);
    let out = tmp.path().join("run");
    let o = run(&lm_args(&folder, &out));
    assert!(o.status.success(), "{}", stderr(&o));
    for file in [
        "config.toml",
        "metrics.csv",
        "checkpoint/model.bpk",
        "checkpoint/sparse.safetensors",
        "summary.json",
        "report.md",
        "plots/learning_curves.png",
        "plots/layer_density.png",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(config.starts_with("task = \"lm\""), "{config}");
    assert!(!config.contains("[model]"), "an lm run has no image model: {config}");
    // a uniform guess costs log2(V) bits per character; 15 steps on a text of 11
    // words must do better, on every split
    let uniform = (vocabulary(&folder) as f64).log2();
    let s = summary(&out);
    let lm = &s["lm"];
    assert_eq!(lm["vocab"].as_u64(), Some(vocabulary(&folder) as u64));
    let (val, test) = (
        lm["validation_bits_per_token"].as_f64().unwrap(),
        lm["test_bits_per_token"].as_f64().unwrap(),
    );
    for bpc in [val, test] {
        assert!(
            bpc.is_finite() && bpc > 0.0 && bpc < uniform,
            "{bpc} vs uniform {uniform}"
        );
    }
    assert_eq!(column(&out, "val_loss").last().copied(), Some(val));
    assert_eq!(column(&out, "test_loss").len(), 3);
    // the best epoch is the first with the lowest validation bits per character
    // (metrics.csv's val_loss), not the one with the best accuracy
    let val_bpc = column(&out, "val_loss");
    let lowest = val_bpc.iter().copied().fold(f64::INFINITY, f64::min);
    let at = val_bpc.iter().position(|v| *v == lowest).unwrap();
    assert_eq!(s["best_epoch"].as_u64(), Some(at as u64 + 1), "{val_bpc:?}");
    assert_eq!(lm["best_validation_bits_per_token"].as_f64(), Some(lowest));
    assert_eq!(
        lm["test_bits_per_token_at_best"].as_f64(),
        Some(column(&out, "test_loss")[at])
    );
    assert_eq!(
        s["best_validation_accuracy"].as_f64(),
        Some(column(&out, "val_acc")[at])
    );
    assert!((s["sparsity"].as_f64().unwrap() - 0.8).abs() < 0.01);
    let sample = lm["sample"].as_str().unwrap();
    // the prompt "The " starts with a character the corpus lacks: "he " and 300 more
    assert_eq!(sample.chars().count(), 3 + 300, "{sample:?}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("## Generated text") && report.contains(sample),
        "{report}"
    );
    assert!(report.contains("bits per token"), "{report}");
    assert!(
        report.contains(&format!(
            "best epoch (by validation bits per token) | epoch {}: validation {lowest:.4}",
            at + 1
        )),
        "{report}"
    );
}

#[test]
fn a_language_model_run_resumes_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = corpus(tmp.path(), 300);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let full = run(&lm_args(&folder, &a));
    assert!(full.status.success(), "{}", stderr(&full));
    let mut first = lm_args(&folder, &b);
    first.extend(["--stop-after".into(), "1".into()]);
    let stopped = run(&first);
    assert_eq!(stopped.status.code(), Some(130), "{}", stderr(&stopped));
    assert_eq!(metrics_without_timings(&b).len(), 2);
    let resumed = sparseburn(&["train", "--resume", b.to_str().unwrap()]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(metrics_without_timings(&a), metrics_without_timings(&b));
    let state = "checkpoint/sparse.safetensors";
    assert!(std::fs::read(a.join(state)).unwrap() == std::fs::read(b.join(state)).unwrap());
    let vocab = vocabulary(&folder);
    assert!(weights(&a, vocab) == weights(&b, vocab), "weights differ");
    assert_eq!(summary(&a)["lm"], summary(&b)["lm"]);
}

#[test]
fn an_lm_checkpoint_whose_best_epoch_was_chosen_by_accuracy_is_refused_on_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = corpus(tmp.path(), 300);
    let out = tmp.path().join("run");
    let mut first = lm_args(&folder, &out);
    first.extend(["--stop-after".into(), "1".into()]);
    let stopped = run(&first);
    assert_eq!(stopped.status.code(), Some(130), "{}", stderr(&stopped));
    // what an older sparseburn wrote: the best epoch without its losses (with
    // checksums that fit, as that version recorded them)
    let ckpt = out.join("checkpoint");
    let path = ckpt.join("trainer.json");
    let mut state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let best = state["best"].as_object_mut().unwrap();
    assert!(
        best.remove("val_loss").is_some() && best.remove("test_loss").is_some(),
        "{best:?}"
    );
    std::fs::write(&path, serde_json::to_string_pretty(&state).unwrap()).unwrap();
    sparseburn::run::train::checksum::record(&ckpt).unwrap();
    let resumed = sparseburn(&["train", "--resume", out.to_str().unwrap()]);
    assert!(!resumed.status.success());
    let e = stderr(&resumed);
    assert!(
        e.contains("lowest validation bits per token") && e.contains("new folder"),
        "{e}"
    );
}

/// One line on stderr starting with `error: `, holding every needle; no run folder left.
fn assert_corpus_error(o: &Output, out: &Path, needles: &[&str]) {
    assert!(!o.status.success());
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
    assert!(!out.exists(), "a failed start leaves no folder");
}

#[test]
fn a_missing_empty_or_non_utf8_corpus_gets_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let missing = tmp.path().join("nowhere");
    let o = run(&lm_args(&missing, &out));
    assert_corpus_error(&o, &out, &["nowhere", "no such folder", "fortunes"]);

    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("a.txt"), "").unwrap();
    let o = run(&lm_args(&empty, &out));
    assert_corpus_error(&o, &out, &["no text found", "1 files"]);

    let latin1 = tmp.path().join("latin1");
    std::fs::create_dir_all(&latin1).unwrap();
    std::fs::write(latin1.join("caf.txt"), b"caf\xe9 au lait\n").unwrap();
    let o = run(&lm_args(&latin1, &out));
    assert_corpus_error(&o, &out, &["caf.txt", "not UTF-8", "offset 3", "iconv", "byte"]);

    let short = corpus(tmp.path(), 3);
    let o = run(&lm_args(&short, &out));
    assert_corpus_error(&o, &out, &["too few for a context of 16"]);
}

#[test]
fn language_model_options_belong_to_the_lm_task() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = sparseburn(&["train", "--block", "16", "--out", out.to_str().unwrap()]);
    assert_corpus_error(&o, &out, &["[lm]", "--task lm"]);
    let folder = corpus(tmp.path(), 30);
    let mut args = lm_args(&folder, &out);
    args.extend(["--model".into(), "cnn".into()]);
    assert_corpus_error(&run(&args), &out, &["[model] name", "image classification only"]);
}

/// A tiny DQN run on CartPole-v1: a 32-32 Q-network, 3 epochs of 300
/// environment steps (100 random), 3 evaluation episodes per epoch.
fn rl_args(out: &Path) -> Vec<String> {
    [
        "train",
        "--task",
        "rl",
        "--env",
        "cartpole",
        "--hidden",
        "32,32",
        "--steps-per-epoch",
        "300",
        "--warmup-steps",
        "100",
        "--epochs",
        "3",
        "--eval-episodes",
        "3",
        "--batch-size",
        "16",
        "--method",
        "rigl",
        "--sparsity",
        "0.8",
        "-m",
        "delta_t=50",
        "--out",
        out.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn a_dqn_run_writes_returns_per_episode_and_a_seeded_evaluation() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = run(&rl_args(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    for file in [
        "config.toml",
        "metrics.csv",
        "episodes.csv",
        "checkpoint/replay.safetensors",
        "checkpoint/env.json",
        "checkpoint/checksums.json",
        "checkpoint/trainer.json",
        "summary.json",
        "report.md",
        "plots/returns.png",
        "plots/layer_density.png",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    // CartPole pays 1 per step: every training episode's return is its length,
    // and the episodes end at increasing environment steps within the budget
    let episodes = std::fs::read_to_string(out.join("episodes.csv")).unwrap();
    let rows: Vec<Vec<f64>> = episodes
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|c| c.parse().unwrap()).collect())
        .collect();
    assert!(rows.len() >= 3, "{episodes}");
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[0], i as f64);
        assert_eq!(r[2], r[3], "return = length: {r:?}");
        assert!(r[1] <= 900.0);
    }
    assert!(rows.windows(2).all(|w| w[0][1] < w[1][1]));
    let s = summary(&out);
    let rl = &s["rl"];
    assert_eq!(rl["env"], "CartPole-v1");
    assert_eq!(rl["env_steps"].as_u64(), Some(900));
    let seeds: Vec<u64> = rl["eval_seeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(seeds, [1_000_000, 1_000_001, 1_000_002]);
    let returns: Vec<f64> = rl["eval_returns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(returns.len(), 3);
    assert!(returns.iter().all(|r| (1.0..=500.0).contains(r)), "{returns:?}");
    let mean = returns.iter().sum::<f64>() / 3.0;
    let eval = rl["eval_return"].as_f64().unwrap();
    assert!(eval.is_finite() && (eval - mean).abs() < 1e-9, "{eval} vs {mean}");
    assert_eq!(column(&out, "eval_return").last().copied(), Some(eval));
    assert_eq!(column(&out, "env_steps"), [300.0, 600.0, 900.0]);
    // the best evaluation: the first epoch with the highest mean return in metrics.csv
    let (evals, stds) = (column(&out, "eval_return"), column(&out, "eval_return_std"));
    let top = evals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let at = evals.iter().position(|r| *r == top).unwrap();
    let best = &rl["best"];
    assert_eq!(best["eval_return"].as_f64(), Some(top));
    assert_eq!(best["eval_return_std"].as_f64(), Some(stds[at]));
    assert_eq!(best["epoch"].as_u64(), Some(at as u64 + 1));
    assert_eq!(s["best_epoch"].as_u64(), Some(at as u64 + 1));
    assert_eq!(best["env_steps"].as_u64(), Some(300 * (at as u64 + 1)));
    // a DQN run has no test set: no accuracy or loss field with a made-up value
    for field in ["test_accuracy", "test_loss", "train_accuracy", "test_accuracy_at_best"] {
        assert!(s.get(field).is_none(), "{field} in an RL summary: {s}");
    }
    assert!(s["best_validation_accuracy"].is_null(), "{s}");
    assert!((s["sparsity"].as_f64().unwrap() - 0.8).abs() < 0.01);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("evaluation return") && report.contains("1000000..=1000002"),
        "{report}"
    );
    // its Q-network is not exported: a clear error, no file
    let file = tmp.path().join("q.safetensors");
    let o = sparseburn(&["export", out.to_str().unwrap(), "-o", file.to_str().unwrap()]);
    common::assert_error(&o, &["DQN run", "not exported"]);
    assert!(!file.exists());
}

#[test]
fn a_dqn_run_resumes_bit_for_bit_with_its_replay_buffer_and_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let full = run(&rl_args(&a));
    assert!(full.status.success(), "{}", stderr(&full));
    let mut first = rl_args(&b);
    first.extend(["--stop-after".into(), "1".into()]);
    let stopped = run(&first);
    assert_eq!(stopped.status.code(), Some(130), "{}", stderr(&stopped));
    assert!(stderr(&stopped).contains("--resume"), "{}", stderr(&stopped));
    assert_eq!(metrics_without_timings(&b).len(), 2);
    let resumed = sparseburn(&["train", "--resume", b.to_str().unwrap()]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(metrics_without_timings(&a), metrics_without_timings(&b));
    let read = |dir: &Path, f: &str| std::fs::read(dir.join(f)).unwrap();
    assert!(read(&a, "episodes.csv") == read(&b, "episodes.csv"));
    for f in ["sparse.safetensors", "replay.safetensors", "agent.json", "env.json"] {
        let f = format!("checkpoint/{f}");
        assert!(read(&a, &f) == read(&b, &f), "{f} differs");
    }
    assert_eq!(summary(&a)["rl"], summary(&b)["rl"]);
}

#[test]
fn an_unknown_environment_or_a_method_without_data_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = sparseburn(&["train", "--task", "rl", "--env", "pong", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    for n in ["pong", "cartpole", "acrobot", "breakout"] {
        assert!(stderr(&o).contains(n), "{}", stderr(&o));
    }
    let file = tmp.path().join("rl.toml");
    std::fs::write(&file, "task = \"rl\"\n[rl]\nenv = \"pong\"\n").unwrap();
    let o = sparseburn(&[
        "train",
        "--config",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_corpus_error(&o, &out, &["pong", "cartpole"]);
    let args: Vec<String> = rl_args(&out)
        .into_iter()
        .filter(|a| a != "-m" && a != "delta_t=50")
        .map(|a| if a == "rigl" { "snip".into() } else { a })
        .collect();
    assert_corpus_error(&run(&args), &out, &["snip", "labelled batch"]);
}

/// `results.csv` rows as (method, sparsity, mean) and the table's header.
fn sweep_results(dir: &Path) -> (String, Vec<(String, f64, f64)>) {
    let csv = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap().to_string();
    let rows = lines
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            (c[0].to_string(), c[1].parse().unwrap(), c[3].parse().unwrap())
        })
        .collect();
    (header, rows)
}

/// The mean of `pick` over the summaries of `runs` (an independent reading of the run folders).
fn mean_of(dir: &Path, runs: &[&str], pick: &dyn Fn(&serde_json::Value) -> f64) -> f64 {
    runs.iter().map(|r| pick(&summary(&dir.join(r)))).sum::<f64>() / runs.len() as f64
}

#[test]
fn a_language_model_sweep_compares_bits_per_character() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = corpus(tmp.path(), 300);
    let out = tmp.path().join("sweep");
    let o = sparseburn(&[
        "sweep",
        "--task",
        "lm",
        "--data-dir",
        folder.to_str().unwrap(),
        "--block",
        "16",
        "--layers",
        "1",
        "--heads",
        "2",
        "--d-model",
        "16",
        "--batch-size",
        "4",
        "--batches-per-epoch",
        "3",
        "--epochs",
        "1",
        "--eval-tokens",
        "100",
        "--methods",
        "dense,rigl",
        "--sparsities",
        "0.8",
        "--seeds",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (header, rows) = sweep_results(&out);
    assert!(header.contains("mean_test_bits_per_token"), "{header}");
    assert!(out.join("bits_vs_sparsity.png").is_file());
    let bits = |s: &serde_json::Value| s["lm"]["test_bits_per_token"].as_f64().unwrap();
    let dense = mean_of(&out, &["dense-s0-seed1", "dense-s0-seed2"], &bits);
    let rigl = mean_of(&out, &["rigl-s800-seed1", "rigl-s800-seed2"], &bits);
    assert_eq!(rows.len(), 2);
    assert!(
        (rows[0].2 - dense).abs() < 1e-12 && rows[0].0 == "dense",
        "{rows:?} vs {dense}"
    );
    assert!(
        (rows[1].2 - rigl).abs() < 1e-12 && rows[1].1 == 0.8,
        "{rows:?} vs {rigl}"
    );
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("final test bits per token"), "{md}");
}

#[test]
fn a_dqn_sweep_compares_mean_evaluation_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sweep");
    let o = sparseburn(&[
        "sweep",
        "--task",
        "rl",
        "--env",
        "cartpole",
        "--hidden",
        "16",
        "--steps-per-epoch",
        "200",
        "--warmup-steps",
        "100",
        "--epochs",
        "1",
        "--eval-episodes",
        "2",
        "--batch-size",
        "8",
        "--methods",
        "dense,set",
        "--sparsities",
        "0.8",
        "--seeds",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (header, rows) = sweep_results(&out);
    assert!(header.contains("mean_eval_return"), "{header}");
    assert!(out.join("return_vs_sparsity.png").is_file());
    // the mean over seeds of each run's mean over its evaluation episodes
    let ret = |s: &serde_json::Value| {
        let r = s["rl"]["eval_returns"].as_array().unwrap();
        r.iter().map(|v| v.as_f64().unwrap()).sum::<f64>() / r.len() as f64
    };
    let dense = mean_of(&out, &["dense-s0-seed1", "dense-s0-seed2"], &ret);
    let set = mean_of(&out, &["set-s800-seed1", "set-s800-seed2"], &ret);
    assert!(
        (rows[0].2 - dense).abs() < 1e-9 && (rows[1].2 - set).abs() < 1e-9,
        "{rows:?}"
    );
    assert!(dense.is_finite() && set.is_finite());
    // the learning curves: one point per epoch (here one, at 200 steps)
    assert!(out.join("return_vs_steps.png").is_file());
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    let std = |runs: &[&str]| {
        let v: Vec<f64> = runs.iter().map(|r| ret(&summary(&out.join(r)))).collect();
        let mean = v.iter().sum::<f64>() / 2.0;
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>()).sqrt()
    };
    let dense_row = format!(
        "| dense | {dense:.1} ± {:.1} |",
        std(&["dense-s0-seed1", "dense-s0-seed2"])
    );
    assert!(
        md.contains("| run | 200 |") && md.contains(&dense_row),
        "{dense_row} in {md}"
    );
}

#[test]
fn supervised_training_settings_are_refused_for_a_dqn_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    for (flag, value, fix) in [
        ("--schedule", "cosine", "--schedule constant"),
        ("--grad-accumulation", "2", "--grad-accumulation 1"),
    ] {
        let mut args = rl_args(&out);
        args.extend([flag.into(), value.into()]);
        assert_corpus_error(&run(&args), &out, &["DQN agent", fix]);
    }
}

#[test]
fn compare_dense_compares_bits_per_character_for_a_language_model() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = corpus(tmp.path(), 300);
    let out = tmp.path().join("run");
    let mut args = lm_args(&folder, &out);
    args.push("--compare-dense".into());
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let sparse = summary(&out)["lm"]["test_bits_per_token"].as_f64().unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("test bits per token"))
        .expect("a bits row");
    assert!(line.ends_with(&format!("{sparse:.4}")), "{line} vs {sparse}");
    assert!(text.contains("bits-per-token gap"), "{text}");
}

#[test]
fn task_configs_read_back_as_written() {
    use sparseburn::run::RunConfig;
    for args in [
        vec![
            "--task",
            "lm",
            "--block",
            "32",
            "--tokens",
            "byte",
            "--data-dir",
            "texts",
            "--method",
            "set",
        ],
        vec![
            "--task",
            "rl",
            "--env",
            "breakout",
            "--steps-per-epoch",
            "100",
            "--method",
            "rigl",
        ],
        vec![
            "--task", "rl", "--env", "acrobot", "--hidden", "64,32", "--method", "dense",
        ],
    ] {
        let cfg = sparseburn::cli::train_config(&args).unwrap();
        let text = cfg.to_toml();
        let table: toml::Table = toml::from_str(&text).unwrap();
        let again = RunConfig::from_table(table).unwrap();
        assert_eq!(again, cfg, "{text}");
        assert_eq!(again.to_toml(), text);
    }
    // MinAtar's settings under the keys not given; classic control's otherwise
    let breakout = sparseburn::cli::train_config(&["--task", "rl", "--env", "breakout"]).unwrap();
    let rl = breakout.rl.unwrap();
    assert_eq!((rl.warmup_steps, rl.target_update_every), (5000, 1000));
    assert_eq!((breakout.training.batch_size, breakout.training.lr), (32, 2.5e-4));
    let cartpole = sparseburn::cli::train_config(&["--task", "rl", "--warmup-steps", "7"]).unwrap();
    assert_eq!(cartpole.rl.unwrap().warmup_steps, 7);
    assert_eq!(cartpole.training.batch_size, 128);
    let bad = sparseburn::cli::train_config(&["--task", "lm", "--d-model", "30", "--heads", "4"]);
    assert!(format!("{:#}", bad.unwrap_err()).contains("multiple of heads 4"));
}

/// The method's switches of the run `args` configure.
fn method_switches(args: &[&str]) -> serde_json::Map<String, serde_json::Value> {
    sparseburn::cli::train_config(args).unwrap().method.switches()
}

#[test]
fn a_dqn_run_takes_graesser_et_al_s_mask_update_schedule_unless_told_otherwise() {
    // Graesser et al. (ICML 2022), classic control: an update every 1000 steps,
    // drop fraction 0.5 decayed by a cosine (each unlike the image task's
    // defaults, checked first), no update after 75% of training
    let image = method_switches(&["--method", "set"]);
    assert_eq!((&image["delta_t"], &image["drop_fraction"]), (&json!(100), &json!(0.3)));
    assert_eq!(image["drop_schedule"], "constant");
    for method in ["rigl", "set"] {
        let m = method_switches(&["--task", "rl", "--method", method]);
        assert_eq!(m["delta_t"], 1000, "{method}: {m:?}");
        assert_eq!(m["drop_fraction"], 0.5, "{method}: {m:?}");
        assert_eq!(m["drop_schedule"], "cosine", "{method}: {m:?}");
        assert_eq!(m["end_fraction"], 0.75, "{method}: {m:?}");
    }
    // the default method (no --method) takes it too
    assert_eq!(method_switches(&["--task", "rl"])["delta_t"], 1000);
    // pruning from 20% (GMP's own default: 0) to 75% of training, every 1000 steps
    let gmp = method_switches(&["--task", "rl", "--method", "gmp"]);
    let pruning = (
        &gmp["prune_begin_fraction"],
        &gmp["prune_end_fraction"],
        &gmp["delta_t"],
    );
    assert_eq!(pruning, (&json!(0.2), &json!(0.75), &json!(1000)), "{gmp:?}");
    // MEST counts delta_t steps (its own default: a mutation every 5 epochs)
    let mest = method_switches(&["--task", "rl", "--method", "mest"]);
    assert_eq!(
        (&mest["delta_epochs"], &mest["delta_t"]),
        (&json!(0.0), &json!(1000)),
        "{mest:?}"
    );
    // a switch given wins, even when it equals the image task's default, and
    // the switches not given keep the task's defaults
    let m = method_switches(&[
        "--task",
        "rl",
        "--method",
        "set",
        "-m",
        "delta_t=100",
        "-m",
        "drop_fraction=0.1",
    ]);
    assert_eq!((&m["delta_t"], &m["drop_fraction"]), (&json!(100), &json!(0.1)));
    assert_eq!(m["drop_schedule"], "cosine");
    // MinAtar: their Atari DQN's every 5000 steps at 0.3, cosine; the end stays the method's
    let breakout = method_switches(&["--task", "rl", "--env", "breakout", "--method", "set"]);
    assert_eq!(
        (&breakout["delta_t"], &breakout["drop_fraction"]),
        (&json!(5000), &json!(0.3))
    );
    assert_eq!(breakout["drop_schedule"], "cosine");
    // a method without these switches is untouched
    assert_eq!(
        method_switches(&["--task", "rl", "--method", "dense"]),
        method_switches(&["--method", "dense"])
    );
}

#[test]
fn a_damaged_dqn_checkpoint_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut args = rl_args(&out);
    args.extend(["--stop-after".into(), "1".into()]);
    assert_eq!(run(&args).status.code(), Some(130));
    let replay = out.join("checkpoint/replay.safetensors");
    let mut bytes = std::fs::read(&replay).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&replay, bytes).unwrap();
    let o = sparseburn(&["train", "--resume", out.to_str().unwrap()]);
    assert!(!o.status.success());
    for n in ["replay.safetensors", "SHA-256"] {
        assert!(stderr(&o).contains(n), "{}", stderr(&o));
    }
}

/// `sparseburn export` of a language-model run writes its sparse twin with the
/// vocabulary; `infer` gives the test bits per token the run recorded (in
/// `auto`, which keeps these tiny projections dense, and forced to CSR), and
/// `bench` reports tokens per second; a wrong corpus or image options are refused.
#[test]
fn a_language_model_exports_infers_its_recorded_bits_and_benchmarks_tokens_per_second() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = corpus(tmp.path(), 300);
    let out = tmp.path().join("run");
    let o = run(&lm_args(&folder, &out));
    assert!(o.status.success(), "{}", stderr(&o));
    let recorded = summary(&out)["lm"]["test_bits_per_token"].as_f64().unwrap();
    let (dir, corpus_dir) = (out.to_str().unwrap(), folder.to_str().unwrap());
    for format in ["auto", "csr"] {
        let file = tmp.path().join(format!("{format}.safetensors"));
        let o = sparseburn(&["export", dir, "--format", format, "-o", file.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        let json = tmp.path().join(format!("{format}.json"));
        let o = sparseburn(&[
            "infer",
            file.to_str().unwrap(),
            "--data-dir",
            corpus_dir,
            "--json",
            json.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let r = common::json(&json);
        let bits = r["bits_per_token"].as_f64().unwrap();
        assert!(
            (bits - recorded).abs() <= 1e-5 * recorded,
            "{format}: {bits} vs {recorded}"
        );
        assert_eq!(r["recorded_bits_per_token"].as_f64(), Some(recorded));
        assert_eq!(r["tokens"].as_u64(), Some(200));
        let formats: Vec<&str> = r["formats"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(formats.len(), 7, "6 projections and the head: {r}");
        let want = if format == "auto" { "dense" } else { "csr" };
        assert!(formats.iter().all(|f| *f == want), "{format}: {formats:?}");
    }
    let file = tmp.path().join("csr.safetensors");
    let json = tmp.path().join("bench.json");
    let o = sparseburn(&[
        "bench",
        file.to_str().unwrap(),
        "--quick",
        "--no-memory",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("tokens/s"));
    let b = common::json(&json);
    let e2e = b["end_to_end"].as_array().unwrap();
    assert_eq!(e2e.len(), 2);
    for (race, windows) in e2e.iter().zip([1u64, 32]) {
        assert_eq!(race["tokens"].as_u64(), Some(16 * windows));
        let ms = race["race"]["sparse_ms"]["median"].as_f64().unwrap();
        let rate = race["sparse_tokens_per_s"].as_f64().unwrap();
        assert!((rate - (16 * windows) as f64 * 1e3 / ms).abs() <= 1e-6 * rate, "{race}");
    }
    assert_eq!(b["layers"].as_array().unwrap().len(), 7);
    assert_eq!(b["backend"], "flex");
    let (sparse_bytes, dense_bytes) = (
        b["sparse_file_bytes"].as_u64().unwrap(),
        b["dense_file_bytes"].as_u64().unwrap(),
    );
    assert_eq!(sparse_bytes, std::fs::metadata(&file).unwrap().len());
    assert!(sparse_bytes < dense_bytes, "{b}");
    let ratio = b["size_ratio"].as_f64().unwrap();
    assert!((ratio - sparse_bytes as f64 / dense_bytes as f64).abs() < 1e-12);
    assert!(b["sparse_peak_rss_bytes"].is_null(), "--no-memory: {b}");
    // a run folder benchmarks too
    let o = sparseburn(&["bench", dir, "--quick", "--no-memory"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // a backend that is not in this build, or none at all
    #[cfg(not(feature = "cuda"))]
    common::assert_error(
        &sparseburn(&["infer", file.to_str().unwrap(), "--device", "cuda"]),
        &["not in this build", "--features cuda"],
    );
    common::assert_error(
        &sparseburn(&["bench", file.to_str().unwrap(), "--device", "tpu"]),
        &["unknown backend `tpu`", "flex"],
    );

    // image options, and a corpus with another vocabulary, are refused
    let o = sparseburn(&["infer", file.to_str().unwrap(), "--dataset", "fashion-mnist"]);
    common::assert_error(&o, &["language model", "--dataset"]);
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("t.txt"), "xyz xyz xyz\n".repeat(200)).unwrap();
    let o = sparseburn(&["infer", file.to_str().unwrap(), "--data-dir", other.to_str().unwrap()]);
    common::assert_error(&o, &["another vocabulary", "--data-dir"]);
}
