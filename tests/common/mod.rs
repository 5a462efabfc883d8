//! Helpers shared by the CLI tests: running the binary, one-line errors, a short
//! training run on Fashion-MNIST, `infer` with its JSON, a run's metrics and
//! weights. Each test binary uses a part of them.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs the `sparseburn` binary with `args`.
pub fn sparseburn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sparseburn"))
        .args(args)
        .output()
        .expect("run sparseburn")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A one-line error (exit code 1, not a panic's 101) containing every needle.
pub fn assert_error(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "expected a clean failure: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` missing from: {err}");
    }
}

/// Trains `model` (RigL, 90%, unless `extra` names another method or sparsity; `--method dense` without one) for one epoch on a slice of Fashion-MNIST (the first `test_limit` test images) into `out`.
pub fn train(out: &Path, model: &str, train_limit: &str, test_limit: &str, extra: &[&str]) {
    let mut args = vec![
        "train",
        "--dataset",
        "fashion-mnist",
        "--model",
        model,
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--train-limit",
        train_limit,
        "--test-limit",
        test_limit,
        "--validation",
        "0",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    // RigL at 90% unless `extra` says otherwise; a dense run takes no sparsity
    let dense = extra.windows(2).any(|w| w == ["--method", "dense"]);
    for (flag, default) in [("--method", "rigl"), ("--sparsity", "0.9")] {
        let given = extra.contains(&flag);
        let unwanted = dense && flag == "--sparsity";
        if !given && !unwanted {
            args.extend([flag, default]);
        }
    }
    let o = sparseburn(&args);
    assert!(o.status.success(), "training {model}: {}", stderr(&o));
}

pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `infer` on the first `test_limit` test images; returns its JSON.
pub fn infer(file: &Path, test_limit: &str, json_out: &Path) -> serde_json::Value {
    let o = sparseburn(&[
        "infer",
        file.to_str().unwrap(),
        "--dataset",
        "fashion-mnist",
        "--test-limit",
        test_limit,
        "--json",
        json_out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "infer: {}", stderr(&o));
    json(json_out)
}

/// `metrics.csv` without the two timing columns (the last two).
pub fn metrics_without_timings(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("metrics.csv"))
        .unwrap()
        .lines()
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            cells[..cells.len() - 2].join(",")
        })
        .collect()
}

/// `model` (fresh) with the weights of the checkpoint of the run in `dir`, in
/// either layout (a run in sparse execution saves its compact model).
pub fn checkpoint_model<M: sparseburn::sparse_models::Classifier + 'static>(dir: &Path, model: M) -> M {
    let cfg = sparseburn::run::RunConfig::load(&dir.join("config.toml")).unwrap();
    sparseburn::run::train::compact_checkpoint::load_weights(&cfg, model, &dir.join("checkpoint")).unwrap()
}

/// Every parameter of a run's saved MLP, as bits (parameter ids differ between processes).
pub fn weights(dir: &Path) -> Vec<Vec<u32>> {
    let device = burn::tensor::Device::flex();
    let model = checkpoint_model(dir, sparseburn::sparse_models::MlpConfig::new().init(&device));
    model
        .layers
        .iter()
        .flat_map(|l| [l.weight.val(), l.bias.as_ref().unwrap().val().unsqueeze()])
        .map(|t| {
            t.into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect()
        })
        .collect()
}
