//! `--execution`: a run in sparse execution makes the same topology
//! decisions and reaches the same weights as the masked-dense run, reports
//! how each layer trained, resumes across the two executions, exports like
//! any run, and refuses what it cannot train with an error naming the
//! alternative.

use std::path::Path;

use crate::common::{assert_error, json, sparseburn, stderr, train};

fn masks(dir: &Path) -> Vec<(String, Vec<usize>, sparseburn::sparse_core::Mask)> {
    sparseburn::sparse_core::state::read_masks(dir.join("checkpoint/sparse.safetensors")).unwrap()
}

/// Every parameter of a run's saved MLP.
fn weights(dir: &Path) -> Vec<Vec<f32>> {
    crate::common::weights(dir)
        .into_iter()
        .map(|w| w.into_iter().map(f32::from_bits).collect())
        .collect()
}

/// The weights of a run's saved small CNN (convolutions, linear layers and biases).
fn cnn_weights(dir: &Path) -> Vec<Vec<f32>> {
    let fresh = sparseburn::sparse_models::SmallCnnConfig::new().init(&burn::tensor::Device::flex());
    let model = crate::common::checkpoint_model(dir, fresh);
    let flat = |t: burn::tensor::Tensor<2>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    vec![
        flat(model.conv1.weight.val().flatten(0, 3)),
        flat(model.conv2.weight.val().flatten(0, 3)),
        flat(model.fc1.weight.val()),
        flat(model.fc2.weight.val()),
        flat(model.fc2.bias.unwrap().val().unsqueeze()),
    ]
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

const RIGL: [&str; 6] = ["--method", "rigl", "-m", "delta_t=5", "--sparsity", "0.9"];

#[test]
fn rigl_in_sparse_execution_matches_the_masked_dense_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (dense, sparse) = (tmp.path().join("dense"), tmp.path().join("sparse"));
    train(&dense, "mlp", "640", "200", &RIGL);
    let mut extra = RIGL.to_vec();
    extra.extend(["--execution", "sparse"]);
    train(&sparse, "mlp", "640", "200", &extra);
    let (d, s) = (json(&dense.join("summary.json")), json(&sparse.join("summary.json")));
    // same topology decisions: identical masks, and RigL did explore
    assert_eq!(masks(&dense), masks(&sparse));
    assert!(
        s["itop"].as_f64().unwrap() > 0.1 + 1e-3,
        "RigL changed no mask: {}",
        s["itop"]
    );
    assert_eq!(d["itop"], s["itop"]);
    // the checkpoint in sparse execution holds the active values and their moments only
    let size = |run: &Path, file: &str| std::fs::metadata(run.join("checkpoint").join(file)).unwrap().len();
    assert!(!sparse.join("checkpoint/model.bpk").exists());
    let (compact, full) = (size(&sparse, "compact.bpk"), size(&dense, "model.bpk"));
    assert!(compact * 4 < full, "compact model {compact} bytes, dense {full}");
    let (compact, full) = (size(&sparse, "sparse.safetensors"), size(&dense, "sparse.safetensors"));
    assert!(compact * 4 < full, "compact moments {compact} bytes, dense {full}");
    let diff = max_diff(&weights(&dense), &weights(&sparse));
    assert!(diff < 1e-4, "the weights differ by {diff}");
    let (da, sa) = (
        d["test_accuracy"].as_f64().unwrap(),
        s["test_accuracy"].as_f64().unwrap(),
    );
    assert!((da - sa).abs() <= 0.01, "test accuracy {da} dense vs {sa} sparse");

    // the summary says how each layer trained and what it stored
    let layers = s["execution"]["layers"].as_array().unwrap();
    assert_eq!(s["execution"]["requested"], "sparse");
    assert_eq!(layers.len(), 3);
    for (layer, (_, shape, mask)) in layers.iter().zip(masks(&sparse)) {
        assert_eq!(layer["execution"], "sparse");
        assert_eq!(layer["stored_weights"].as_u64().unwrap() as usize, mask.count_ones());
        assert!(mask.count_ones() < shape.iter().product::<usize>() || shape == [100, 10]);
    }
    assert_eq!(d["execution"]["layers"][0]["execution"], "dense");
    assert_eq!(d["execution"]["layers"][0]["stored_weights"], 784 * 300);
    // the run's peak, split where its steps began
    let peak = |k: &str| s["execution"][k].as_u64().unwrap_or_else(|| panic!("{k}: {s}"));
    let (whole, setup, steps) = (
        peak("peak_rss_bytes"),
        peak("setup_peak_rss_bytes"),
        peak("steps_peak_rss_bytes"),
    );
    assert!(steps > 0 && setup > 0 && whole >= setup.max(steps), "{s}");
    assert!(s["train_samples_per_second"].as_f64().unwrap() > 0.0);
    let report = std::fs::read_to_string(sparse.join("report.md")).unwrap();
    assert!(
        report.contains("| execution | sparse (3 of 3 sparse layers on the sparse kernels")
            && report.contains("(setup "),
        "{report}"
    );

    // `auto`: the layers below the crossover density run the sparse kernels, the
    // others multiply densely; the same run again
    let auto = tmp.path().join("auto");
    let mut extra = RIGL.to_vec();
    extra.extend(["--execution", "auto"]);
    train(&auto, "mlp", "640", "200", &extra);
    let a = json(&auto.join("summary.json"));
    assert_eq!(masks(&auto), masks(&dense));
    let diff = max_diff(&weights(&dense), &weights(&auto));
    assert!(diff < 1e-4, "auto: the weights differ by {diff}");
    let kinds: Vec<(f64, String)> = a["execution"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["density"].as_f64().unwrap(),
                l["execution"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (density, kind) in &kinds {
        let want = if *density <= 0.15 { "sparse" } else { "dense" };
        assert_eq!(kind, want, "auto at density {density}: {kinds:?}");
    }
    assert!(
        kinds.iter().any(|(_, k)| k == "sparse") && kinds.iter().any(|(_, k)| k == "dense"),
        "{kinds:?}"
    );
    assert_eq!(
        a["execution"]["layers"][0]["stored_weights"],
        s["execution"]["layers"][0]["stored_weights"]
    );

    // the run exports and infers like any run
    let file = tmp.path().join("m.sparseburn");
    let o = sparseburn(&["export", sparse.to_str().unwrap(), "-o", file.to_str().unwrap()]);
    assert!(o.status.success(), "export: {}", stderr(&o));
    let inferred = crate::common::infer(&file, "200", &tmp.path().join("infer.json"));
    assert_eq!(inferred["accuracy"].as_f64(), Some(sa));
}

/// The small CNN in sparse execution (sparse convolutions with their
/// handwritten backward): the same masks and weights as the masked-dense
/// run, every layer reported sparse; interrupted there and resumed
/// masked-dense, it ends where the uninterrupted run ends.
#[test]
fn the_cnn_in_sparse_execution_matches_the_masked_dense_run() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str, execution: &str, stop: bool| {
        let out = tmp.path().join(name);
        let mut args = vec!["train", "--model", "cnn", "--epochs", "2", "--batch-size", "32"];
        args.extend(["--train-limit", "192", "--test-limit", "64", "--validation", "0"]);
        args.extend(["--execution", execution, "--out", out.to_str().unwrap()]);
        args.extend(RIGL);
        if stop {
            args.extend(["--stop-after", "1"]);
        }
        let o = sparseburn(&args);
        assert_eq!(o.status.code(), Some(if stop { 130 } else { 0 }), "{}", stderr(&o));
        out
    };
    let (dense, sparse) = (run("dense", "dense", false), run("sparse", "sparse", false));
    assert_eq!(masks(&dense), masks(&sparse));
    let diff = max_diff(&cnn_weights(&dense), &cnn_weights(&sparse));
    assert!(diff < 1e-4, "the weights differ by {diff}");
    let s = json(&sparse.join("summary.json"));
    assert!(s["itop"].as_f64().unwrap() > 0.1 + 1e-3, "RigL changed no mask");
    let layers = s["execution"]["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 4, "{layers:?}");
    assert!(layers.iter().all(|l| l["execution"] == "sparse"), "{layers:?}");

    let stopped = run("stopped", "sparse", true);
    let o = sparseburn(&["train", "--resume", stopped.to_str().unwrap(), "--execution", "dense"]);
    assert!(o.status.success(), "resume sparse → dense: {}", stderr(&o));
    assert_eq!(masks(&stopped), masks(&sparse));
    let diff = max_diff(&cnn_weights(&stopped), &cnn_weights(&sparse));
    assert!(diff < 1e-4, "resumed: the weights differ by {diff}");
}

/// Interrupted in one execution and resumed in the other, either way, a run
/// ends where the uninterrupted run in sparse execution ends; resumed in
/// sparse execution from its compact checkpoint, it ends bit for bit there.
#[test]
fn a_run_resumes_across_the_executions() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |out: &Path, execution: &str, stop: bool| {
        let mut args = vec![
            "train",
            "--model",
            "mlp",
            "--epochs",
            "2",
            "--batch-size",
            "32",
            "--train-limit",
            "320",
            "--test-limit",
            "100",
            "--validation",
            "0",
            "--execution",
            execution,
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(RIGL);
        if stop {
            args.extend(["--stop-after", "1"]);
        }
        sparseburn(&args)
    };
    let whole = tmp.path().join("whole");
    assert!(run(&whole, "sparse", false).status.success());
    for (first, then) in [("sparse", "dense"), ("dense", "sparse"), ("sparse", "sparse")] {
        let out = tmp.path().join(format!("{first}-{then}"));
        assert_eq!(run(&out, first, true).status.code(), Some(130));
        let o = sparseburn(&["train", "--resume", out.to_str().unwrap(), "--execution", then]);
        assert!(o.status.success(), "resume {first} → {then}: {}", stderr(&o));
        let switched = stderr(&o).contains(&format!("--execution {then}"));
        assert_eq!(switched, first != then, "{}", stderr(&o));
        assert_eq!(masks(&out), masks(&whole), "{first} → {then}");
        let diff = max_diff(&weights(&out), &weights(&whole));
        assert!(diff < 1e-4, "{first} → {then}: the weights differ by {diff}");
        let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
        assert!(config.contains(&format!("execution = \"{then}\"")), "{config}");
        if first == then {
            // from its compact checkpoint, bit for bit
            assert_eq!(weights(&out), weights(&whole), "{first} → {then}");
            assert_eq!(
                crate::common::metrics_without_timings(&out),
                crate::common::metrics_without_timings(&whole)
            );
        }
    }
}

#[test]
fn sparse_execution_refuses_what_it_cannot_train() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r");
    let args = |extra: &[&'static str]| {
        let mut a = vec!["train", "--epochs", "1", "--train-limit", "64", "--execution", "sparse"];
        a.extend(["--out", out.to_str().unwrap()]);
        a.extend(extra);
        a
    };
    for method in ["snip", "gmp", "srste", "autosparse"] {
        let o = sparseburn(&args(&["--model", "mlp", "--method", method]));
        assert_error(&o, &[method, "--execution dense"]);
        assert!(!out.exists(), "a refused run left its folder");
    }
    // MobileNetV1 trains sparse (its depthwise convolutions dense) and resumes from its compact checkpoint
    let mobile = tmp.path().join("mobile");
    let mut m = vec![
        "train",
        "--model",
        "mobilenet",
        "--width",
        "0.25",
        "--epochs",
        "2",
        "--batch-size",
        "32",
    ];
    m.extend([
        "--train-limit",
        "64",
        "--test-limit",
        "32",
        "--validation",
        "0",
        "--execution",
        "sparse",
    ]);
    m.extend(["--stop-after", "1", "--out", mobile.to_str().unwrap()]);
    assert_eq!(sparseburn(&m).status.code(), Some(130));
    assert!(mobile.join("checkpoint/compact.bpk").is_file());
    let o = sparseburn(&["train", "--resume", mobile.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let layers = json(&mobile.join("summary.json"))["execution"]["layers"].clone();
    let layers = layers.as_array().unwrap();
    assert_eq!(
        layers.len(),
        14,
        "13 pointwise convolutions and the classifier: {layers:?}"
    );
    assert!(layers.iter().all(|l| l["execution"] == "sparse"), "{layers:?}");
    let o = sparseburn(&[
        "train",
        "--task",
        "lm",
        "--execution",
        "sparse",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_error(&o, &["lm", "--execution dense"]);
    // a sweep refuses before its first run trains
    let sweep_out = tmp.path().join("sweep");
    let o = sparseburn(&[
        "sweep",
        "--model",
        "mlp",
        "--methods",
        "static,snip",
        "--sparsities",
        "0.9",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--train-limit",
        "64",
        "--execution",
        "sparse",
        "--out",
        sweep_out.to_str().unwrap(),
    ]);
    assert_error(&o, &["snip", "--execution dense"]);
    assert!(!sweep_out.exists(), "the sweep trained before refusing");
    // `auto` falls back to masked-dense instead, and the dense baseline has nothing to sparsify
    let o = sparseburn(&[
        "train",
        "--model",
        "mlp",
        "--method",
        "snip",
        "--epochs",
        "1",
        "--train-limit",
        "64",
        "--batch-size",
        "32",
        "--validation",
        "0",
        "--test-limit",
        "50",
        "--execution",
        "auto",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        json(&out.join("summary.json"))["execution"]["layers"][0]["execution"],
        "dense"
    );
}

/// With gradient accumulation (the probe of an update step sees every
/// micro-batch) the two executions still make the same run.
#[test]
fn gradient_accumulation_trains_sparse_as_masked_dense() {
    let tmp = tempfile::tempdir().unwrap();
    let (dense, sparse) = (tmp.path().join("dense"), tmp.path().join("sparse"));
    let mut extra = RIGL.to_vec();
    extra.extend(["--grad-accumulation", "2"]);
    train(&dense, "mlp", "640", "100", &extra);
    extra.extend(["--execution", "sparse"]);
    train(&sparse, "mlp", "640", "100", &extra);
    assert_eq!(masks(&dense), masks(&sparse));
    let diff = max_diff(&weights(&dense), &weights(&sparse));
    assert!(diff < 1e-4, "the weights differ by {diff}");
    let itop = json(&sparse.join("summary.json"))["itop"].as_f64().unwrap();
    assert!(itop > 0.1 + 1e-3, "RigL changed no mask: {itop}");
}

/// `--mlp-hidden` sets the MLP's widths (the wide MLP of the benchmarks); it
/// applies to the MLP only.
#[test]
fn mlp_hidden_sets_the_widths() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("wide");
    train(
        &out,
        "mlp",
        "64",
        "50",
        &["--mlp-hidden", "40,24", "--execution", "sparse"],
    );
    let s = json(&out.join("summary.json"));
    assert_eq!(s["parameters"], 784 * 40 + 40 + 40 * 24 + 24 + 24 * 10 + 10);
    let config: toml::Table = std::fs::read_to_string(out.join("config.toml"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        config["model"]["hidden"],
        toml::Value::try_from([40, 24]).unwrap(),
        "{config}"
    );
    let o = sparseburn(&[
        "train",
        "--model",
        "cnn",
        "--mlp-hidden",
        "40",
        "--out",
        tmp.path().join("c").to_str().unwrap(),
    ]);
    assert_error(&o, &["hidden", "mlp"]);
}

/// A model whose weights cannot fit in any machine's memory (a trillion
/// dense weights: 4 TB as f32) is refused before any of it is allocated, in
/// either execution, with the sizes and the way to train a network whose
/// dense twin does not fit; the refused run leaves no folder. (Linux: the
/// check reads `/proc/meminfo`.)
#[cfg(target_os = "linux")]
#[test]
fn a_model_too_large_for_the_machine_is_refused_before_it_allocates() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("huge");
    for execution in ["dense", "sparse"] {
        let o = sparseburn(&[
            "train",
            "--model",
            "mlp",
            "--mlp-hidden",
            "1000000,1000000",
            "--sparsity",
            "0.999",
            "--method",
            "set",
            "--epochs",
            "1",
            "--train-limit",
            "64",
            "--batch-size",
            "32",
            "--execution",
            execution,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_error(&o, &["1000796000010 weights", "TiB", "available", "truly_sparse"]);
        assert!(!out.exists(), "a refused run left its folder");
    }
}

/// The binary's allocator commits memory as it is used (`sparseburn::allocator`),
/// set before `main`, and a setting in the environment still wins. It reads
/// the option table mimalloc prints when it starts, after the binary's
/// constructor with a gcc-built mimalloc (the `cc` crate's default on Linux;
/// a clang build's prioritised constructor would print the table first).
#[cfg(target_os = "linux")]
#[test]
fn the_binary_commits_allocator_arenas_on_demand() {
    let option = |env: &[(&str, &str)]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sparseburn"))
            .arg("--version")
            .env("MIMALLOC_VERBOSE", "1")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| l.contains("option 'arena_eager_commit'"));
        line.map(|l| l.trim().to_string())
            .unwrap_or_else(|| panic!("no option line in: {text}"))
    };
    assert!(option(&[]).ends_with(": 0"), "{}", option(&[]));
    let set = option(&[("MIMALLOC_ARENA_EAGER_COMMIT", "1")]);
    assert!(set.ends_with(": 1"), "{set}");
}
