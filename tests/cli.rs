//! The `sparseburn` binary as a user runs it: exact resume, run folders,
//! gradient accumulation (with the samples SNIP and GraSP score on), and
//! one-line errors for bad input that leave existing runs untouched.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common;
use common::{metrics_without_timings, sparseburn, stderr, weights};

/// A small, fast run on the synthetic set.
fn base(out: &Path) -> Vec<String> {
    [
        "train",
        "--dataset",
        "synthetic",
        "--model",
        "mlp",
        "--method",
        "rigl",
        "--sparsity",
        "0.8",
        "--epochs",
        "4",
        "--batch-size",
        "64",
        "--train-limit",
        "1280",
        "--test-limit",
        "300",
        "-m",
        "delta_t=5",
        "--out",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([out.display().to_string()])
    .collect()
}

/// Sets the value that follows `flag` in `args` (a flag of [`base`]).
fn set(args: &mut [String], flag: &str, value: &str) {
    let at = args.iter().position(|a| a == flag).expect("a flag of base()");
    args[at + 1] = value.to_string();
}

fn run(args: &[String]) -> Output {
    sparseburn(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Trains `args` once in full into `a` and once stopped after `stop` epochs and
/// resumed into `b`; the metrics (timings aside) and the sparse state (masks,
/// optimizer moments, method state, step) must agree byte for byte.
fn assert_resumes_exactly(args: &dyn Fn(&Path) -> Vec<String>, stop: &str, a: &Path, b: &Path) {
    let full = run(&args(a));
    assert!(full.status.success(), "{}", stderr(&full));
    let mut first = args(b);
    first.extend(["--stop-after".into(), stop.into()]);
    let stopped = run(&first);
    assert_eq!(stopped.status.code(), Some(130), "{}", stderr(&stopped));
    assert!(stderr(&stopped).contains("--resume"), "{}", stderr(&stopped));
    assert_eq!(metrics_without_timings(b).len(), 1 + stop.parse::<usize>().unwrap());
    let resumed = sparseburn(&["train", "--resume", b.to_str().unwrap()]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(metrics_without_timings(a), metrics_without_timings(b));
    let state = "checkpoint/sparse.safetensors";
    assert!(
        std::fs::read(a.join(state)).unwrap() == std::fs::read(b.join(state)).unwrap(),
        "sparse state differs"
    );
}

#[test]
fn an_interrupted_and_resumed_run_equals_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    assert_resumes_exactly(&base, "2", &a, &b);
    // every weight and bias, bit for bit (parameter ids differ between processes)
    assert_eq!(weights(&a), weights(&b));
    for f in [
        "config.toml",
        "summary.json",
        "report.md",
        "plots/learning_curves.png",
        "plots/layer_density.png",
        "plots/mask_history.png",
        "masks/00-0004.bits",
    ] {
        assert!(b.join(f).is_file(), "missing {f}");
    }
}

#[test]
fn ctrl_c_checkpoints_and_the_run_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let long = |out: &Path| {
        let mut args = base(out);
        set(&mut args, "--epochs", "30");
        args
    };
    assert!(run(&long(&a)).status.success());

    let child = Command::new(env!("CARGO_BIN_EXE_sparseburn"))
        .args(long(&b))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // interrupt once the second epoch is written, wherever the run is then
    let metrics = b.join("metrics.csv");
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |m| m.lines().count()) < 3 {
        assert!(started.elapsed().as_secs() < 120, "the run did not reach epoch 2");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // SIGINT, what Ctrl-C sends (no `kill` binary needed)
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("--resume"), "{}", stderr(&out));
    assert!(
        metrics_without_timings(&b).len() < 31,
        "the run finished before the interrupt"
    );

    let resumed = sparseburn(&["train", "--resume", b.to_str().unwrap()]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(metrics_without_timings(&a), metrics_without_timings(&b));
    assert_eq!(weights(&a), weights(&b));
}

#[test]
fn the_saved_config_repeats_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let mut args = base(&a);
    set(&mut args, "--epochs", "2");
    assert!(run(&args).status.success());
    let again = tmp.path().join("again");
    let config = a.join("config.toml");
    let o = sparseburn(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(metrics_without_timings(&a), metrics_without_timings(&again));

    // summary.json: counts and throughput, consistent with metrics.csv
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(a.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["epochs"], 2);
    assert_eq!(summary["steps"], 2 * 1280 / 64);
    let metrics = std::fs::read_to_string(a.join("metrics.csv")).unwrap();
    let header: Vec<&str> = metrics.lines().next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let train_seconds: f64 = metrics
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .nth(column("train_seconds"))
                .unwrap()
                .parse::<f64>()
                .unwrap()
        })
        .sum();
    let train_rate = summary["train_samples_per_second"].as_f64().unwrap();
    let eval_rate = summary["eval_samples_per_second"].as_f64().unwrap();
    assert!(eval_rate.is_finite() && eval_rate > 0.0, "{summary}");
    let samples = train_rate * train_seconds;
    assert!(
        (samples / 2560.0 - 1.0).abs() < 0.1,
        "{train_rate}/s over {train_seconds} s is not 2560 samples"
    );
}

fn assert_one_line_error(o: &Output, needles: &[&str]) {
    assert!(!o.status.success());
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
}

/// A choice the command line does not know: rejected by the argument parser
/// (exit code 2) before anything is printed or created, naming the valid ones.
fn assert_rejected_choice(o: &Output, out: &Path, needles: &[&str]) {
    assert_eq!(o.status.code(), Some(2), "{}", stderr(o));
    assert!(o.stdout.is_empty(), "printed: {}", String::from_utf8_lossy(&o.stdout));
    assert!(!out.exists(), "created {}", out.display());
    let err = stderr(o);
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
}

#[test]
fn unknown_method_model_and_bad_sparsity() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x");
    for method in ["rigel", "RigL"] {
        let o = sparseburn(&[
            "train",
            "--dataset",
            "synthetic",
            "--method",
            method,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_rejected_choice(&o, &out, &[method, "rigl", "srste"]);
    }
    let o = sparseburn(&[
        "train",
        "--dataset",
        "synthetic",
        "--model",
        "vgg",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_rejected_choice(&o, &out, &["vgg", "resnet50"]);
    for s in ["1", "1.5", "-0.2"] {
        let o = sparseburn(&[
            "train",
            "--dataset",
            "synthetic",
            &format!("--sparsity={s}"),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_one_line_error(&o, &["sparsity", "[0, 1)"]);
    }
}

#[test]
fn a_config_file_with_a_typo_names_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("c.toml");
    std::fs::write(&cfg, "[training]\nepochs = 2\nlearning_rate = 0.1\n").unwrap();
    let o = sparseburn(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        tmp.path().join("x").to_str().unwrap(),
    ]);
    assert_one_line_error(&o, &["learning_rate", "c.toml"]);
}

#[test]
fn missing_data_says_how_to_get_it() {
    let tmp = tempfile::tempdir().unwrap();
    let o = sparseburn(&[
        "train",
        "--data-dir",
        "/nonexistent/fmnist",
        "--out",
        tmp.path().join("x").to_str().unwrap(),
    ]);
    assert_one_line_error(&o, &["/nonexistent/fmnist", "dataset-fashion-mnist", "--download"]);
    assert!(
        !tmp.path().join("x").exists(),
        "no run folder for a run that could not start"
    );
}

fn idx_images(n: u32, body: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [0x0803u32, n, 28, 28] {
        v.extend(x.to_be_bytes());
    }
    v.extend(std::iter::repeat_n(100u8, body));
    v
}

fn idx_labels(n: u32) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [0x0801u32, n] {
        v.extend(x.to_be_bytes());
    }
    v.extend((0..n).map(|i| (i % 10) as u8));
    v
}

fn write_idx(dir: &Path, train_images: Vec<u8>, gz: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let files = [
        ("train-images-idx3-ubyte", train_images),
        ("train-labels-idx1-ubyte", idx_labels(200)),
        ("t10k-images-idx3-ubyte", idx_images(50, 50 * 784)),
        ("t10k-labels-idx1-ubyte", idx_labels(50)),
    ];
    for (name, bytes) in files {
        if gz {
            let f = std::fs::File::create(dir.join(format!("{name}.gz"))).unwrap();
            let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
            e.write_all(&bytes).unwrap();
            e.finish().unwrap();
        } else {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}

fn train_on(dir: &Path, dataset: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--dataset",
        dataset,
        "--data-dir",
        dir.to_str().unwrap(),
        "--epochs",
        "1",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    sparseburn(&args)
}

#[test]
fn idx_files_plain_gzipped_truncated_and_wrong_magic() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    write_idx(&good, idx_images(200, 200 * 784), true);
    let o = train_on(&good, "fashion-mnist", &tmp.path().join("r1"), &["--batch-size", "50"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let truncated = tmp.path().join("truncated");
    write_idx(&truncated, idx_images(200, 200 * 784 - 10), false);
    let o = train_on(
        &truncated,
        "fashion-mnist",
        &tmp.path().join("r2"),
        &["--batch-size", "50"],
    );
    assert_one_line_error(&o, &["train-images-idx3-ubyte", "truncated", "replace the file"]);
    assert!(!tmp.path().join("r2").exists(), "a failed run left a folder");

    let magic = tmp.path().join("magic");
    let mut bytes = idx_images(200, 200 * 784);
    bytes[2] = 9;
    write_idx(&magic, bytes, false);
    let o = train_on(&magic, "mnist", &tmp.path().join("r3"), &["--batch-size", "50"]);
    assert_one_line_error(&o, &["train-images-idx3-ubyte", "magic", "replace the file"]);

    // a gzip stream cut short
    let cut = tmp.path().join("cut");
    write_idx(&cut, idx_images(200, 200 * 784), true);
    let gz = cut.join("train-images-idx3-ubyte.gz");
    let bytes = std::fs::read(&gz).unwrap();
    std::fs::write(&gz, &bytes[..bytes.len() / 2]).unwrap();
    let o = train_on(&cut, "fashion-mnist", &tmp.path().join("r4"), &["--batch-size", "50"]);
    assert_one_line_error(&o, &["train-images-idx3-ubyte.gz"]);
    assert!(!tmp.path().join("r4").exists(), "a failed run left a folder");
}

/// The folder CIFAR-10's binary batches unpack to, under `root`.
fn cifar_dir(root: &Path) -> PathBuf {
    let dir = root.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn cifar_batches_of_the_wrong_size() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = cifar_dir(tmp.path());
    for i in 1..=5 {
        std::fs::write(dir.join(format!("data_batch_{i}.bin")), vec![1u8; 3073 * 20]).unwrap();
    }
    std::fs::write(dir.join("test_batch.bin"), vec![1u8; 3073 * 20 + 7]).unwrap();
    let o = train_on(
        tmp.path(),
        "cifar10",
        &tmp.path().join("r"),
        &["--model", "cnn", "--batch-size", "50"],
    );
    assert_one_line_error(&o, &["test_batch.bin", "3073-byte records", "replace the file"]);
    assert!(!tmp.path().join("r").exists(), "a failed run left a folder");
}

#[test]
fn a_resumed_cifar_run_repeats_the_random_crops_and_flips() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = cifar_dir(tmp.path());
    let mut x = 7u32;
    let mut record = |label: u8| {
        let mut r = vec![label];
        r.extend((0..3072).map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 24) as u8 / 2 + label * 12
        }));
        r
    };
    for name in [
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
        "test_batch",
    ] {
        let bytes: Vec<u8> = (0..40).flat_map(|i| record((i % 10) as u8)).collect();
        std::fs::write(dir.join(format!("{name}.bin")), bytes).unwrap();
    }
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let data = tmp.path().to_str().unwrap();
    let args = |out: &Path| {
        let mut v: Vec<String> = [
            "train",
            "--dataset",
            "cifar10",
            "--data-dir",
            data,
            "--model",
            "mlp",
            "--batch-size",
            "20",
            "--epochs",
            "3",
            "--method",
            "set",
            "-m",
            "delta_t=4",
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.push(out.display().to_string());
        v
    };
    let o = run(&args(&a));
    assert!(o.status.success(), "{}", stderr(&o));
    let mut first = args(&b);
    first.extend(["--stop-after".into(), "1".into()]);
    let o = run(&first);
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let o = sparseburn(&["train", "--resume", b.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(metrics_without_timings(&a), metrics_without_timings(&b));
    let state = "checkpoint/sparse.safetensors";
    assert!(std::fs::read(a.join(state)).unwrap() == std::fs::read(b.join(state)).unwrap());
}

fn png(path: &Path, shade: u8) {
    let img = image::RgbImage::from_pixel(8, 8, image::Rgb([shade, 255 - shade, 0]));
    img.save(path).unwrap();
}

#[test]
fn image_folders_skip_or_stop_at_unreadable_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pets");
    for split in ["train", "test"] {
        for (c, shade) in [("cat", 10u8), ("dog", 240)] {
            let d = root.join(split).join(c);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..6 {
                png(&d.join(format!("{i}.png")), shade);
            }
        }
    }
    let common = ["--image-size", "16", "--model", "mlp", "--batch-size", "4"];
    // GraSP scores on `samples_per_class` (default 10) images of every class; 6 are too few
    let mut grasp = common.to_vec();
    grasp.extend(["--method", "grasp", "--sparsity", "0.5"]);
    let o = train_on(&root, "folder", &tmp.path().join("grasp"), &grasp);
    assert_one_line_error(
        &o,
        &["grasp", "10 samples of class `cat`", "has 6", "samples_per_class"],
    );
    assert!(
        !tmp.path().join("grasp").exists(),
        "a run that never started left its folder"
    );

    std::fs::write(root.join("train/cat/broken.png"), b"not a png").unwrap();
    let o = train_on(&root, "folder", &tmp.path().join("skip"), &common);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("broken.png"),
        "the skipped file is reported: {}",
        stderr(&o)
    );
    let mut strict = common.to_vec();
    strict.push("--strict-images");
    let o = train_on(&root, "folder", &tmp.path().join("strict"), &strict);
    assert_one_line_error(&o, &["broken.png", "--strict-images"]);
}

#[test]
fn existing_runs_are_never_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let mut args = base(&a);
    set(&mut args, "--epochs", "1");
    assert!(run(&args).status.success());
    let before: Vec<(PathBuf, Vec<u8>)> = files(&a);

    // training again into the same folder
    let o = run(&args);
    assert_one_line_error(&o, &["already exists", "--resume"]);
    // resuming it with another model
    let o = sparseburn(&["train", "--resume", a.to_str().unwrap(), "--model", "cnn"]);
    assert_one_line_error(&o, &["mlp", "cnn"]);
    // resuming it with other settings
    let o = sparseburn(&["train", "--resume", a.to_str().unwrap(), "--epochs", "9"]);
    assert_one_line_error(&o, &["--epochs"]);
    assert_eq!(before, files(&a));
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn info_prints_layers_and_totals_instantly() {
    let o = sparseburn(&[
        "info",
        "--model",
        "resnet50",
        "--input",
        "3x224x224",
        "--sparsity",
        "0.9",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("layer4.2.conv3.weight") && text.contains("fc.weight"),
        "{text}"
    );
    assert!(text.contains("parameters          25557032"), "{text}");
    assert!(text.contains("sparse-layer sparsity 90.00%"), "{text}");
}

#[test]
fn torchvision_weights_that_do_not_fit_name_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("resnet18.safetensors");
    let data = vec![0u8; 64 * 3 * 7 * 7 * 4];
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![64, 3, 7, 7], &data).unwrap();
    std::fs::write(&file, safetensors::serialize([("conv1.weight", view)], None).unwrap()).unwrap();
    let o = sparseburn(&[
        "train",
        "--dataset",
        "synthetic",
        "--model",
        "resnet18",
        "--method",
        "gmp",
        "--init-weights",
        file.to_str().unwrap(),
        "--out",
        tmp.path().join("r").to_str().unwrap(),
    ]);
    assert_one_line_error(&o, &["conv1.weight", "[64, 3, 7, 7]"]);
    assert!(
        !tmp.path().join("r").exists(),
        "a run that never started left its folder"
    );
    let o = sparseburn(&[
        "train",
        "--dataset",
        "synthetic",
        "--mask-layer",
        "layers.9.weight",
        "--out",
        tmp.path().join("m").to_str().unwrap(),
    ]);
    assert_one_line_error(&o, &["layers.9.weight", "layers.0.weight"]);
}

#[test]
fn each_subcommand_shows_only_its_options_with_choices_and_defaults() {
    let help = |args: &[&str]| {
        let o = sparseburn(args);
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let info = help(&["info", "--help"]);
    for absent in ["--lr", "--epochs", "--download", "--out", "--optimizer"] {
        assert!(!info.contains(absent), "info --help lists {absent}");
    }
    assert!(info.contains("--input") && info.contains("--sparsity"), "{info}");
    // without --dataset, info takes the model's natural input, not a dataset's
    assert!(!info.contains("[default: fashion-mnist]"), "{info}");
    let train = help(&["train", "--help"]);
    for present in [
        "[default: 0.1]",
        "[default: rigl]",
        "[default: mlp]",
        "possible values",
        "mobilenet-v1",
        "fashion-mnist",
        // the methods' switches follow the options
        "-m delta_t=100",
        "-m gamma_sal=0.3",
    ] {
        assert!(train.contains(present), "train --help lacks {present}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("s");
    for wrong in [["--method", "rigl"], ["--sparsity", "0.9"]] {
        let mut args = vec!["sweep", "--out", out.to_str().unwrap()];
        args.extend(wrong);
        let o = sparseburn(&args);
        assert_rejected_choice(&o, &out, &[wrong[0]]);
    }
}

#[test]
fn a_switch_the_method_does_not_have_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x");
    let o = sparseburn(&[
        "train",
        "--dataset",
        "synthetic",
        "--method",
        "set",
        "-m",
        "grad_window=2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_one_line_error(&o, &["grad_window", "delta_t", "drop_fraction"]);
    assert!(!out.exists());
}

#[test]
fn info_uses_the_models_natural_input_and_explains_its_table() {
    let run = |args: &[&str]| {
        let o = sparseburn(args);
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let text = run(&["info", "--model", "resnet50"]);
    assert!(text.contains("3x224x224 inputs, 1000 classes"), "{text}");
    assert!(text.contains("out × in"), "no shape legend: {text}");
    assert!(text.contains("(dense): kept dense"), "(dense) unexplained: {text}");
    // one convention: the classifier is out × in (1000 × 2048), like the convs (out × in × k × k)
    assert!(text.contains("1000×2048") && text.contains("64×3×7×7"), "{text}");
    for name in ["mobilenet_v1", "mobilenet-v1"] {
        let text = run(&["info", "--model", name]);
        assert!(text.contains("mobilenet-v1 on 3x224x224"), "{text}");
        assert!(text.contains("(dense)"), "depthwise convs are dense: {text}");
    }
    let mlp = run(&["info", "--model", "mlp", "--dataset", "cifar10"]);
    assert!(mlp.contains("3x32x32 inputs, 10 classes"), "{mlp}");
    for input in ["18446744073709551615x2x2", "3x2000000x2", "0x2x2"] {
        let o = sparseburn(&["info", "--model", "mlp", "--input", input]);
        assert_one_line_error(&o, &["input"]);
    }
}

/// A synthetic MLP run into `out` with `extra` options; its standard output.
fn synthetic_run(out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "train",
        "--dataset",
        "synthetic",
        "--method",
        "rigl",
        "--sparsity",
        "0.8",
        "--epochs",
        "3",
        "--batch-size",
        "64",
        "--train-limit",
        "640",
        "--test-limit",
        "200",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    let o = sparseburn(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_best_epoch_is_chosen_on_the_validation_split_never_on_the_test_set() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let stdout = synthetic_run(&a, &["--validation", "300"]);
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(a.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["validation_images"], 300);
    let metrics = std::fs::read_to_string(a.join("metrics.csv")).unwrap();
    let header: Vec<&str> = metrics.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let rows: Vec<Vec<String>> = metrics
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    let value = |r: &Vec<String>, name: &str| r[col(name)].parse::<f64>().unwrap();
    // the first epoch with the highest validation accuracy, whatever the test set says
    let best = rows
        .iter()
        .fold(None::<&Vec<String>>, |b, r| match b {
            Some(b) if value(b, "val_acc") >= value(r, "val_acc") => Some(b),
            _ => Some(r),
        })
        .unwrap();
    assert_eq!(summary["best_epoch"].as_f64().unwrap(), value(best, "epoch"));
    assert_eq!(
        summary["best_validation_accuracy"].as_f64().unwrap(),
        value(best, "val_acc")
    );
    assert_eq!(
        summary["test_accuracy_at_best"].as_f64().unwrap(),
        value(best, "test_acc")
    );
    // epochs count from 1 in metrics.csv as on the console, and every line fits 80 columns
    let epoch_lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("ep ") && !l.starts_with("ep ="))
        .collect();
    assert_eq!(epoch_lines.len(), 3, "{stdout}");
    for (line, row) in epoch_lines.iter().zip(&rows) {
        assert!(line.starts_with(&format!("ep {}/3 ", row[col("epoch")])), "{line}");
        assert!(line.chars().count() <= 80, "{line}");
    }
    for line in stdout.lines().filter(|l| !l.contains(tmp.path().to_str().unwrap())) {
        assert!(line.chars().count() <= 80, "{} columns: {line}", line.chars().count());
    }
    // the rate of the last step keeps its digits (cosine decay ends near 0)
    let last_lr = epoch_lines[2].split(" lr ").nth(1).unwrap().split(' ').next().unwrap();
    assert!(last_lr.parse::<f64>().unwrap() > 0.0, "{last_lr}");

    // without a validation split, "best" is the last epoch: nothing is selected
    let b = tmp.path().join("b");
    synthetic_run(&b, &["--validation", "0"]);
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(b.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["best_epoch"], 3);
    assert!(summary["best_validation_accuracy"].is_null());
    assert_eq!(summary["test_accuracy_at_best"], summary["test_accuracy"]);
    let report = std::fs::read_to_string(b.join("report.md")).unwrap();
    assert!(report.contains("no validation split: the last epoch"), "{report}");
    assert!(report.contains("ITOP rate (in-time over-parameterisation"), "{report}");
}

#[test]
fn a_reparameterising_method_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let args = |out: &Path| -> Vec<String> {
        let mut v = base(out);
        // AutoSparse instead of RigL: a learnable threshold in the model, α annealed per step
        set(&mut v, "--method", "autosparse");
        set(&mut v, "-m", "report_interval=5");
        v
    };
    assert_resumes_exactly(&args, "2", &a, &b);
}

/// `base` with `--grad-accumulation 2`: 1280 images in batches of 64 are 20
/// micro-batches, 10 optimizer steps per epoch; RigL's dense-gradient window of
/// 2 optimizer steps on top.
fn accumulating(out: &Path) -> Vec<String> {
    let mut v = base(out);
    v.extend(["--grad-accumulation", "2", "-m", "grad_window=2"].map(String::from));
    v
}

#[test]
fn an_accumulating_run_counts_optimizer_steps_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    assert_resumes_exactly(&accumulating, "2", &a, &b);
    assert_eq!(weights(&a), weights(&b));
    let rows = metrics_without_timings(&a);
    let header: Vec<&str> = rows[0].split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (step, drop) = (col("step"), col("drop_fraction"));
    // RigL's cosine drop fraction (Evci et al. 2020, Eq. 2) over optimizer steps:
    // 4 epochs × 10 = 40 steps, T_end = ⌊0.75·40⌋ = 30, reported at the epoch's last step
    for (e, row) in rows[1..].iter().enumerate() {
        let cells: Vec<&str> = row.split(',').collect();
        let s = 10 * (e as u64 + 1);
        assert_eq!(cells[step], s.to_string(), "{row}");
        let p = ((s - 1) as f64 / 30.0).min(1.0);
        let expected = 0.3 / 2.0 * (1.0 + (std::f64::consts::PI * p).cos());
        let got: f64 = cells[drop].parse().unwrap();
        assert!((got - expected).abs() < 1e-9, "epoch {}: {got} vs {expected}", e + 1);
    }
}

#[test]
fn gmp_prunes_on_a_grid_of_optimizer_steps_with_accumulation() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("gmp");
    let mut args = base(&out);
    set(&mut args, "--method", "gmp");
    set(&mut args, "--epochs", "3");
    set(&mut args, "-m", "delta_t=4");
    args.extend(["--grad-accumulation", "2"].map(String::from));
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    // 10 optimizer steps per epoch, 30 in all; GMP's window ends at ⌊0.75·30⌋ = 22,
    // n = ⌊22/4⌋ = 5 changes ΔT = 4 apart (grid end 20). Zhu & Gupta's
    // s_t = s_f·(1 − (1 − t/(nΔT))³) at the last grid point t ≤ the epoch's last step.
    let rows = metrics_without_timings(&out);
    let header: Vec<&str> = rows[0].split(',').collect();
    let col = header.iter().position(|h| *h == "sparsity").unwrap();
    for (row, last_grid_step) in rows[1..].iter().zip([8.0, 16.0, 20.0]) {
        let got: f64 = row.split(',').nth(col).unwrap().parse().unwrap();
        let expected = 0.8 * (1.0 - (1.0 - last_grid_step / 20.0f64).powi(3));
        assert!(
            (got - expected).abs() < 1e-3,
            "{row}: sparsity {got}, expected {expected}"
        );
    }
}

/// The MLP's widths on the synthetic set: 784 inputs, hidden 300 and 100, 10 classes.
const MLP_WIDTHS: [usize; 4] = [784, 300, 100, 10];

/// A fixed value in [−1, 1) for entry `i` of stream `stream` (splitmix64's finaliser).
fn fixed_uniform(stream: u64, i: usize) -> f32 {
    let mut z = (stream << 32 | i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
}

/// Writes initial MLP weights (uniform in ±1/√fan_in, small biases) in
/// torchvision's layout for `--init-weights`, so the test knows a run's initial
/// weights without its random generator.
fn write_mlp_init(file: &Path) {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (l, w) in MLP_WIDTHS.windows(2).enumerate() {
        let (fan_in, fan_out) = (w[0], w[1]);
        let bound = 1.0 / (fan_in as f32).sqrt();
        let bytes = |n: usize, stream: u64, scale: f32| -> Vec<u8> {
            (0..n)
                .flat_map(|i| (fixed_uniform(stream, i) * scale).to_le_bytes())
                .collect()
        };
        let weight = bytes(fan_out * fan_in, 2 * l as u64, bound);
        let bias = bytes(fan_out, 2 * l as u64 + 1, 0.1 * bound);
        tensors.push((format!("layers.{l}.weight"), vec![fan_out, fan_in], weight));
        tensors.push((format!("layers.{l}.bias"), vec![fan_out], bias));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, shape, data)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data).unwrap();
            (name.clone(), view)
        })
        .collect();
    std::fs::write(file, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// A one-epoch `method` run on 256 synthetic images in batches of 32 with
/// `--grad-accumulation k`, from the weights in `init`, at a learning rate so
/// small that the kept weights stay their initial values (within 1e-6).
fn pruning_at_init_run(out: &Path, method: &str, k: usize, init: &Path) {
    let o = sparseburn(&[
        "train",
        "--dataset",
        "synthetic",
        "--model",
        "mlp",
        "--method",
        method,
        "--sparsity",
        "0.8",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--train-limit",
        "256",
        "--test-limit",
        "100",
        "--lr",
        "1e-9",
        "--grad-accumulation",
        &k.to_string(),
        "--init-weights",
        init.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// The weight matrices (no biases) of `weights`, as floats in Burn's `[in, out]` layout.
fn weight_values(weights: &[Vec<u32>]) -> Vec<f32> {
    weights
        .iter()
        .step_by(2)
        .flatten()
        .map(|b| f32::from_bits(*b))
        .collect()
}

/// SNIP's saliency `|g ⊙ θ|` (Lee et al. 2019, Eq. 6 before normalising) of
/// every weight of `model` (layer after layer, Burn's `[in, out]` layout), `g`
/// the gradient of the mean cross-entropy over `indices` of `set`, in one batch.
fn snip_saliency(
    model: &sparseburn::sparse_models::Mlp,
    set: &sparseburn::data::ImageSet,
    indices: &[usize],
    device: &burn::tensor::Device,
) -> Vec<f32> {
    use sparseburn::sparse_models::Classifier;
    let batch = sparseburn::data::ImageBatcher::new(set).batch_indices(set, indices, device, None);
    let loss = burn::nn::loss::CrossEntropyLossConfig::new()
        .init(device)
        .forward(model.forward(batch.images), batch.targets);
    let grads = loss.backward();
    let host = |t: burn::tensor::Tensor<2>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    model
        .layers
        .iter()
        .flat_map(|l| {
            let w = l.weight.val();
            let g = host(w.grad(&grads).unwrap());
            host(w)
                .into_iter()
                .zip(g)
                .map(|(w, g)| (w * g).abs())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Positions where `kept` disagrees with the global top-κ of `scores` (κ the
/// kept count), beyond a relative tolerance `tol` of the κ-th largest score τ:
/// kept ones below τ(1 − tol) and dropped ones above τ(1 + tol). Also returns τ.
fn misranked(scores: &[f32], kept: &[bool], tol: f32) -> (usize, f32) {
    let kappa = kept.iter().filter(|k| **k).count();
    let mut sorted = scores.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let tau = sorted[kappa - 1];
    let wrong = scores
        .iter()
        .zip(kept)
        .filter(|(s, k)| {
            if **k {
                **s < tau * (1.0 - tol)
            } else {
                **s > tau * (1.0 + tol)
            }
        })
        .count();
    (wrong, tau)
}

/// Golden (issue 13): with `--grad-accumulation 2` SNIP scores on the first
/// optimizer step's 2·32 samples (docs/methods.md, SNIP and Gradient
/// accumulation): the run's masks are the global top 20% of |g ⊙ θ| computed
/// here on exactly those samples (batches 0 and 1 of epoch 0 in the run's
/// shuffled order) in one batch, and are not those of the first micro-batch alone.
#[test]
fn snip_with_accumulation_scores_on_the_first_optimizer_steps_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let init = tmp.path().join("init.safetensors");
    write_mlp_init(&init);
    let out = tmp.path().join("snip");
    pruning_at_init_run(&out, "snip", 2, &init);

    let saved = weight_values(&weights(&out));
    let kept: Vec<bool> = saved.iter().map(|w| *w != 0.0).collect();
    let total: usize = MLP_WIDTHS.windows(2).map(|w| w[0] * w[1]).sum();
    assert_eq!(kept.len(), total);
    // global ranking: κ = round(N·(1 − s)) over all the sparse weights
    assert_eq!(
        kept.iter().filter(|k| **k).count(),
        (total as f64 * 0.2).round() as usize
    );

    // the run's training set and order, from its saved config
    let mut cfg = sparseburn::run::RunConfig::load(&out.join("config.toml")).unwrap();
    let data = sparseburn::run::train::load_data(&mut cfg).unwrap();
    let order = sparseburn::data::BatchOrder {
        len: data.train.len(),
        batch_size: 32,
        seed: cfg.training.seed,
    }
    .epoch(0);
    let device = burn::tensor::Device::flex().autodiff();
    let model = sparseburn::sparse_models::import::load_torchvision(
        sparseburn::sparse_models::MlpConfig::new().init(&device),
        &init,
    )
    .unwrap();
    // the run started from these weights and kept them
    let initial: Vec<f32> = model
        .layers
        .iter()
        .flat_map(|l| l.weight.val().into_data().convert::<f32>().try_to_vec::<f32>().unwrap())
        .collect();
    for (s, w) in saved.iter().zip(&initial).filter(|(s, _)| **s != 0.0) {
        assert!((s - w).abs() <= 1e-6, "a kept weight moved from {w} to {s}");
    }

    let tol = 1e-4;
    let (wrong, tau) = misranked(&snip_saliency(&model, &data.train, &order[..64], &device), &kept, tol);
    assert!(tau > 0.0, "the κ-th saliency is 0: the ranking is a tie");
    assert_eq!(
        wrong, 0,
        "{wrong} weights outside SNIP's top κ on the first 2·32 samples"
    );
    let (first_only, _) = misranked(&snip_saliency(&model, &data.train, &order[..32], &device), &kept, tol);
    assert!(
        first_only > total / 100,
        "the first micro-batch alone gives nearly the same masks ({first_only} differ): the test cannot tell them apart"
    );
}
/// GraSP does not take the optimizer step's samples (docs/methods.md, Gradient
/// accumulation: "unchanged"): it scores on `samples_per_class` images of every
/// class, in chunks of the batch size, so `--grad-accumulation 2` gives the
/// masks of `--grad-accumulation 1` from the same initial weights, bit for bit.
#[test]
fn grasp_scores_on_the_same_samples_with_or_without_accumulation() {
    let tmp = tempfile::tempdir().unwrap();
    let init = tmp.path().join("init.safetensors");
    write_mlp_init(&init);
    let kept = |k: usize| -> Vec<bool> {
        let out = tmp.path().join(format!("grasp{k}"));
        pruning_at_init_run(&out, "grasp", k, &init);
        weight_values(&weights(&out)).iter().map(|w| *w != 0.0).collect()
    };
    let (one, two) = (kept(1), kept(2));
    let total: usize = MLP_WIDTHS.windows(2).map(|w| w[0] * w[1]).sum();
    assert_eq!(
        one.iter().filter(|k| **k).count(),
        (total as f64 * 0.2).round() as usize
    );
    let differ = one.iter().zip(&two).filter(|(a, b)| a != b).count();
    assert_eq!(
        differ, 0,
        "{differ} of {total} GraSP mask entries change with --grad-accumulation 2"
    );
}

#[test]
fn a_bad_grad_accumulation_names_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("k");
    let with = |k: &str| {
        let mut v = base(&out);
        v.extend(["--grad-accumulation".to_string(), k.to_string()]);
        run(&v)
    };
    assert_one_line_error(&with("0"), &["grad_accumulation", "at least 1", "--grad-accumulation"]);
    // 1280 images in batches of 64: 20 batches per epoch
    assert_one_line_error(
        &with("21"),
        &[
            "grad_accumulation 21",
            "20 batch(es) of 64",
            "--grad-accumulation",
            "--batch-size",
        ],
    );
    assert!(!out.exists(), "a refused run left {}", out.display());
}

#[test]
fn every_option_given_with_resume_is_applied_or_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let mut args = base(&a);
    set(&mut args, "--epochs", "1");
    assert!(run(&args).status.success());
    let before = files(&a);
    let resume = a.to_str().unwrap();
    for (extra, named) in [
        (vec!["--nesterov"], "--nesterov"),
        (vec!["--dense-first-layer"], "--dense-first-layer"),
        (vec!["--lr", "0.5"], "--lr"),
        (vec!["-m", "delta_t=7"], "-m delta_t"),
        (vec!["--out", "elsewhere"], "--out"),
        (vec!["--config", "c.toml"], "--config"),
    ] {
        let mut args = vec!["train", "--resume", resume];
        args.extend(extra);
        assert_one_line_error(&sparseburn(&args), &[named]);
    }
    assert_eq!(before, files(&a));
    // a value equal to the run's own is applied (it changes nothing)
    let o = sparseburn(&["train", "--resume", resume, "--epochs", "1", "--dataset", "synthetic"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_sweep_with_one_seed_shows_no_spread() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sweep");
    let o = sparseburn(&[
        "sweep",
        "--dataset",
        "synthetic",
        "--methods",
        "dense,static",
        "--sparsities",
        "0.9",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--train-limit",
        "320",
        "--test-limit",
        "100",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("± —") && !md.contains("± 0.00"), "{md}");
    assert!(out.join("accuracy_vs_sparsity.png").is_file());
    let o = sparseburn(&[
        "sweep",
        "--dataset",
        "synthetic",
        "--methods",
        "rigl,rigl",
        "--out",
        tmp.path().join("twice").to_str().unwrap(),
    ]);
    assert_one_line_error(&o, &["rigl", "twice"]);
}
