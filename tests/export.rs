//! `sparseburn export`, `infer` and `bench` as a user runs them: an exported
//! run evaluates to exactly the test accuracy its summary recorded (MLP, small
//! CNN, ResNet-18, MobileNetV1 on a slice of Fashion-MNIST), a 90%-sparse file
//! is at most 15% of its dense export, and bad input gets a one-line error
//! that names the problem and the fix, with nothing overwritten.

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{assert_error, infer, json, sparseburn, stderr, train};

fn export(run: &Path, file: &Path, format: &str) -> Output {
    sparseburn(&[
        "export",
        run.to_str().unwrap(),
        "--format",
        format,
        "-o",
        file.to_str().unwrap(),
    ])
}

/// Exports `run` (auto), evaluates the file, and checks the accuracy against summary.json.
fn assert_export_matches_summary(run: &Path, test_limit: &str, tmp: &Path) -> serde_json::Value {
    assert_format_matches_summary(run, "auto", test_limit, &tmp.join("model.safetensors"))
}

/// Exports `run` in `format` to `file`, and checks the accuracy and loss against summary.json.
fn assert_format_matches_summary(run: &Path, format: &str, test_limit: &str, file: &Path) -> serde_json::Value {
    let tmp = file.parent().unwrap();
    let o = export(run, file, format);
    assert!(o.status.success(), "export: {}", stderr(&o));
    let result = infer(file, test_limit, &tmp.join(format!("{format}.json")));
    let summary = json(&run.join("summary.json"));
    let recorded = summary["test_accuracy"].as_f64().unwrap();
    // the same model: the loss agrees up to the sparse kernels' summation order
    let (loss, recorded_loss) = (result["loss"].as_f64().unwrap(), summary["test_loss"].as_f64().unwrap());
    assert!(
        (loss - recorded_loss).abs() <= 1e-4 * recorded_loss.abs().max(1.0),
        "loss {loss} vs {recorded_loss}"
    );
    let images = result["images"].as_u64().unwrap();
    assert_eq!(images.to_string(), test_limit);
    // exact equality: both are (correct predictions) / (test images) in f64
    assert_eq!(
        result["accuracy"].as_f64().unwrap(),
        recorded,
        "exported {} vs the run's summary",
        run.display()
    );
    result
}

#[test]
fn mlp_export_infers_the_recorded_accuracy_and_is_small() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("mlp");
    train(&run, "mlp", "1280", "300", &[]);
    let result = assert_export_matches_summary(&run, "300", tmp.path());
    assert_eq!(result["formats"]["layers.0"], "csr", "{result}");

    // the dense export gives the same accuracy; the 90%-sparse CSR file is at most 15% of it
    let dense = tmp.path().join("dense.safetensors");
    let csr = tmp.path().join("csr.safetensors");
    assert!(export(&run, &dense, "dense").status.success());
    assert!(export(&run, &csr, "csr").status.success());
    let dense_result = infer(&dense, "300", &tmp.path().join("dense.json"));
    assert_eq!(dense_result["accuracy"], result["accuracy"]);
    assert_eq!(
        infer(&csr, "300", &tmp.path().join("csr.json"))["accuracy"],
        result["accuracy"]
    );
    let size = |p: &Path| std::fs::metadata(p).unwrap().len() as f64;
    // the dense file holds every weight as f32: at least 4 bytes × 266,200 weights
    assert!(size(&dense) >= 4.0 * 266_200.0, "{}", size(&dense));
    for sparse in [&csr, &tmp.path().join("model.safetensors")] {
        let ratio = size(sparse) / size(&dense);
        assert!(
            ratio <= 0.15,
            "{} is {:.1}% of the dense file",
            sparse.display(),
            100.0 * ratio
        );
    }

    // bench: sparse vs dense twin from the file, sizes from the files, JSON written
    let bench_json = tmp.path().join("bench.json");
    let o = sparseburn(&[
        "bench",
        csr.to_str().unwrap(),
        "--quick",
        "--json",
        bench_json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "bench: {}", stderr(&o));
    let b = json(&bench_json);
    assert_eq!(b["sparse_file_bytes"].as_f64().unwrap(), size(&csr));
    let batches: Vec<u64> = b["end_to_end"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["batch"].as_u64().unwrap())
        .collect();
    assert_eq!(batches, [1, 32, 256]);
    assert_eq!(b["layers"].as_array().unwrap().len(), 3);
    assert!(b["sparse_peak_rss_bytes"].as_u64().unwrap() > 1 << 20, "{b}");
}

#[test]
fn cnn_export_infers_the_recorded_accuracy() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("cnn");
    train(&run, "cnn", "320", "300", &[]);
    assert_export_matches_summary(&run, "300", tmp.path());
}

#[test]
fn resnet18_export_infers_the_recorded_accuracy() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("resnet18");
    train(&run, "resnet18", "64", "100", &[]);
    assert_export_matches_summary(&run, "100", tmp.path());
}

#[test]
fn mobilenet_export_infers_the_recorded_accuracy() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("mobilenet");
    train(&run, "mobilenet-v1", "64", "200", &["--width", "0.5"]);
    assert_export_matches_summary(&run, "200", tmp.path());
}

#[test]
fn structured_runs_export_as_condensed_and_nm_and_infer_the_recorded_accuracy() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, format, extra) in [
        ("srigl", "condensed", &["--method", "srigl"][..]),
        ("nm", "nm", &["--pattern", "2:4", "--sparsity", "0.5"][..]),
    ] {
        let run = tmp.path().join(name);
        train(&run, "mlp", "320", "100", extra);
        let file = tmp.path().join(format!("{name}.safetensors"));
        let result = assert_format_matches_summary(&run, format, "100", &file);
        assert!(
            result["formats"].as_object().unwrap().values().all(|f| f == format),
            "{result}"
        );
        if format == "condensed" {
            // 90% constant fan-in, indices packed as a bitmap: at most 15% of the dense file
            let dense = tmp.path().join("srigl-dense.safetensors");
            assert!(export(&run, &dense, "dense").status.success());
            let size = |p: &Path| std::fs::metadata(p).unwrap().len() as f64;
            assert!(size(&file) / size(&dense) <= 0.15, "{} / {}", size(&file), size(&dense));
        }
    }
}

/// A copy of the safetensors file `src` with `edit` applied to its metadata JSON.
fn rewrite_metadata(src: &Path, dst: &Path, edit: impl Fn(&mut serde_json::Value)) {
    let bytes = std::fs::read(src).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut info: HashMap<String, String> = meta.metadata().clone().unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&info["sparseburn"]).unwrap();
    edit(&mut m);
    info.insert("sparseburn".into(), m.to_string());
    let tensors: Vec<(String, safetensors::tensor::TensorView<'_>)> = st.tensors().into_iter().collect();
    std::fs::write(dst, safetensors::serialize(tensors, Some(info)).unwrap()).unwrap();
}

fn png(path: &Path, shade: u8) {
    image::RgbImage::from_pixel(28, 28, image::Rgb([shade, 255 - shade, 0]))
        .save(path)
        .unwrap();
}

/// An image folder with `classes` classes of two images each.
fn image_folder(root: &Path, classes: usize) -> PathBuf {
    for split in ["train", "test"] {
        for c in 0..classes {
            let d = root.join(split).join(format!("class{c}"));
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..2 {
                png(&d.join(format!("{i}.png")), (40 * c + 10 * i) as u8);
            }
        }
    }
    root.to_path_buf()
}

#[test]
fn bad_input_gets_a_clear_error_and_nothing_is_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let run = t.join("mlp");
    train(&run, "mlp", "640", "100", &[]);
    let file = t.join("model.safetensors");
    assert!(export(&run, &file, "auto").status.success());
    let original = std::fs::read(&file).unwrap();

    // an existing file is kept unless --force
    assert_error(&export(&run, &file, "csr"), &["exists", "--force"]);
    assert_eq!(std::fs::read(&file).unwrap(), original);
    let o = sparseburn(&[
        "export",
        run.to_str().unwrap(),
        "--format",
        "dense",
        "-o",
        file.to_str().unwrap(),
        "--force",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(std::fs::read(&file).unwrap(), original);
    std::fs::write(&file, &original).unwrap();

    // infer takes a model file and, for an image model, the dataset to run it on
    let model = file.to_str().unwrap();
    assert_error(&sparseburn(&["infer", model]), &["image model", "--dataset"]);
    assert_error(
        &sparseburn(&["infer", run.to_str().unwrap(), "--dataset", "fashion-mnist"]),
        &["is a folder", "sparseburn export"],
    );
    let config = run.join("config.toml");
    assert_error(
        &sparseburn(&["infer", config.to_str().unwrap(), "--dataset", "fashion-mnist"]),
        &["config.toml", "not a sparseburn model file"],
    );

    // formats that do not fit the unstructured masks: the kernel crate's PatternMismatch
    let nm = t.join("nm.safetensors");
    assert_error(
        &export(&run, &nm, "nm"),
        &["layers.0.weight", "N:M", "export it as csr"],
    );
    assert_error(
        &export(&run, &nm, "condensed"),
        &["layers.0.weight", "constant fan-in", "export it as csr"],
    );
    assert!(!nm.exists());

    // folders that are not finished runs
    let empty = t.join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_error(
        &export(&empty, &nm, "auto"),
        &["not a sparseburn run folder", "train --out"],
    );
    let unfinished = t.join("unfinished");
    copy_dir(&run, &unfinished);
    std::fs::remove_file(unfinished.join("summary.json")).unwrap();
    assert_error(&export(&unfinished, &nm, "auto"), &["unfinished run", "--resume"]);
    // a folder whose checkpoint is another model's than its config says
    let other = t.join("other");
    copy_dir(&run, &other);
    let config = std::fs::read_to_string(other.join("config.toml")).unwrap();
    std::fs::write(
        other.join("config.toml"),
        config.replace("name = \"mlp\"", "name = \"cnn\""),
    )
    .unwrap();
    assert_error(&export(&other, &nm, "auto"), &["does not fit the run's config.toml"]);
    // a method whose forward pass is not the stored weights (SR-STE's reparameterization)
    let srste = t.join("srste");
    let o = sparseburn(&[
        "train",
        "--dataset",
        "fashion-mnist",
        "--model",
        "mlp",
        "--method",
        "srste",
        "--epochs",
        "1",
        "--train-limit",
        "256",
        "--test-limit",
        "100",
        "--validation",
        "0",
        "--out",
        srste.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_error(
        &export(&srste, &nm, "auto"),
        &["cannot export", "srste", "reparameterization"],
    );
    assert!(!nm.exists());

    // damaged model files
    let infer_err = |f: &Path, needles: &[&str]| {
        let o = sparseburn(&[
            "infer",
            f.to_str().unwrap(),
            "--dataset",
            "fashion-mnist",
            "--test-limit",
            "10",
        ]);
        assert_error(&o, needles);
    };
    let cut = t.join("cut.safetensors");
    std::fs::write(&cut, &original[..original.len() / 2]).unwrap();
    infer_err(&cut, &["cut.safetensors", "truncated", "export the run again"]);
    let text = t.join("notes.txt");
    std::fs::write(&text, "hello, not a model").unwrap();
    infer_err(&text, &["not a sparseburn model file", "sparseburn export"]);
    let newer = t.join("newer.safetensors");
    rewrite_metadata(&file, &newer, |m| m["format_version"] = 2.into());
    infer_err(&newer, &["format version 2", "upgrade sparseburn"]);
    let corrupt = t.join("corrupt.safetensors");
    rewrite_metadata(&file, &corrupt, |m| {
        m["model"]["layers"]["layers.0"]["d_output"] = 7.into();
    });
    infer_err(&corrupt, &["corrupt", "export the run again"]);

    // datasets that do not fit the model: 3x28x28 images, then 3 classes
    let folder = image_folder(&t.join("pets"), 3);
    let on_folder = |extra: &[&str]| {
        let mut args = vec![
            "infer",
            file.to_str().unwrap(),
            "--dataset",
            "folder",
            "--data-dir",
            folder.to_str().unwrap(),
            "--image-size",
            "28",
        ];
        args.extend(extra);
        sparseburn(&args)
    };
    assert_error(
        &on_folder(&["--channels", "3"]),
        &["3x28x28", "1x28x28", "the model was trained on"],
    );
    assert_error(&on_folder(&["--channels", "1"]), &["3 classes", "predicts 10"]);
    assert_eq!(std::fs::read(&file).unwrap(), original);
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &dst.join(e.file_name()));
        } else {
            std::fs::copy(&p, dst.join(e.file_name())).unwrap();
        }
    }
}
