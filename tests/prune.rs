//! `sparseburn prune` as a user runs it: a pruned file evaluates under `infer`
//! to exactly the "after" accuracy `prune` printed, holds the requested sparsity
//! and N:M pattern (read back from its tensors), `bench` loads it, magnitude
//! pruning keeps the same weights as an independent top-k, and bad input gets a
//! one-line error that names the problem and the fix.

use crate::common;

use std::path::Path;
use std::process::Output;

use common::{assert_error, infer, json, sparseburn, stderr, train};

/// Runs `prune` with `args`; returns its stdout (it must succeed).
fn prune(args: &[&str]) -> String {
    let mut all = vec!["prune"];
    all.extend(args);
    let o = sparseburn(&all);
    assert!(o.status.success(), "prune: {}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn prune_output(args: &[&str]) -> Output {
    let mut all = vec!["prune"];
    all.extend(args);
    sparseburn(&all)
}

/// The fraction printed in parentheses after `label` ("accuracy before 71.33% (0.7133…)").
fn printed(stdout: &str, label: &str) -> f64 {
    let rest = &stdout[stdout
        .find(&format!("{label} "))
        .unwrap_or_else(|| panic!("`{label}` in {stdout}"))..];
    let open = rest.find('(').unwrap() + 1;
    let close = rest.find(')').unwrap();
    rest[open..close].parse().unwrap_or_else(|e| panic!("{e}: {rest}"))
}

/// The f32 tensors of a plain safetensors file (a `--format dense` model file).
fn tensors(path: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(name, t)| {
            assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
            let values = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (name, t.shape().to_vec(), values)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The weight matrices (`layers.i.weight`, stored `[fan-in, neurons]`) of an MLP file.
fn mlp_weights(path: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let w: Vec<_> = tensors(path)
        .into_iter()
        .filter(|(name, _, _)| name.ends_with(".weight"))
        .collect();
    assert_eq!(w.len(), 3, "three linear layers");
    w
}

#[test]
fn prune_then_infer_gives_the_printed_accuracy_sparsity_and_pattern() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let run = t.join("dense");
    train(&run, "mlp", "640", "200", &["--method", "dense"]);
    let recorded = json(&run.join("summary.json"))["test_accuracy"].as_f64().unwrap();
    let run_arg = run.to_str().unwrap();

    // Wanda at 70%, the default (auto) format: infer gives the printed "after" accuracy
    let auto = t.join("wanda.safetensors");
    let report_path = t.join("wanda.json");
    let out = prune(&[
        "--run",
        run_arg,
        "--method",
        "wanda",
        "--sparsity",
        "0.7",
        "--calibration-samples",
        "32",
        "-o",
        auto.to_str().unwrap(),
        "--json",
        report_path.to_str().unwrap(),
    ]);
    // "before" is the trained model on the run's own test images: what its summary recorded
    assert_eq!(printed(&out, "before"), recorded, "{out}");
    let after = printed(&out, "after");
    let inferred = infer(&auto, "200", &t.join("infer-auto.json"));
    assert_eq!(inferred["accuracy"].as_f64().unwrap(), after, "{out}");
    assert_eq!(inferred["images"], 200);
    let report = json(&report_path);
    assert_eq!(report["accuracy_after"].as_f64().unwrap(), after);
    assert_eq!(report["calibration_samples"], 32);
    for l in report["layers"].as_array().unwrap() {
        assert!(l["relative_error"].as_f64().unwrap() > 0.0, "{l}");
    }
    assert!(out.contains("layers.0.weight"), "the per-layer table: {out}");

    // bench loads the file
    let o = sparseburn(&["bench", auto.to_str().unwrap(), "--quick", "--no-memory"]);
    assert!(o.status.success(), "bench: {}", stderr(&o));

    // the same pruning written dense: Wanda prunes ⌊0.7·fan-in⌋ weights of every neuron
    let dense = t.join("wanda-dense.safetensors");
    let out = prune(&[
        "--run",
        run_arg,
        "--method",
        "wanda",
        "--sparsity",
        "0.7",
        "--calibration-samples",
        "32",
        "--format",
        "dense",
        "-o",
        dense.to_str().unwrap(),
    ]);
    let inferred = infer(&dense, "200", &t.join("infer-dense.json"));
    assert_eq!(inferred["accuracy"].as_f64().unwrap(), printed(&out, "after"));
    for (name, shape, w) in mlp_weights(&dense) {
        let (fan_in, neurons) = (shape[0], shape[1]);
        let pruned = (fan_in as f64 * 0.7).floor() as usize;
        for o in 0..neurons {
            let zeros = (0..fan_in).filter(|&i| w[i * neurons + o] == 0.0).count();
            assert_eq!(zeros, pruned, "{name} neuron {o}");
        }
        let sparsity = w.iter().filter(|v| **v == 0.0).count() as f64 / w.len() as f64;
        assert!((sparsity - 0.7).abs() <= 1.0 / fan_in as f64, "{name}: {sparsity}");
    }

    // SparseGPT 2:4 (sparsity implied): at most 2 nonzeros in every 4 consecutive fan-in weights
    let nm = t.join("sparsegpt-24.safetensors");
    let out = prune(&[
        "--run",
        run_arg,
        "--method",
        "sparsegpt",
        "--pattern",
        "2:4",
        "--calibration-samples",
        "32",
        "--format",
        "dense",
        "-o",
        nm.to_str().unwrap(),
    ]);
    let inferred = infer(&nm, "200", &t.join("infer-nm.json"));
    assert_eq!(inferred["accuracy"].as_f64().unwrap(), printed(&out, "after"));
    for (name, shape, w) in mlp_weights(&nm) {
        let (fan_in, neurons) = (shape[0], shape[1]);
        let mut zeros = 0;
        for o in 0..neurons {
            for g in (0..fan_in).step_by(4) {
                let kept = (g..g + 4).filter(|&i| w[i * neurons + o] != 0.0).count();
                assert!(kept <= 2, "{name} neuron {o} group {g}: {kept} nonzeros");
                zeros += 4 - kept;
            }
        }
        // exactly half, unless a reconstructed weight landed on 0.0 exactly
        let sparsity = zeros as f64 / w.len() as f64;
        assert!((0.5..0.501).contains(&sparsity), "{name}: {sparsity}");
    }
    // SparseGPT reconstructs: kept weights differ from the trained dense ones
    // (magnitude or Wanda pruning would keep them as they are)
    let trained = t.join("trained.safetensors");
    let o = sparseburn(&["export", run_arg, "--format", "dense", "-o", trained.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    for ((name, _, w), (_, _, d)) in mlp_weights(&nm).into_iter().zip(mlp_weights(&trained)) {
        let kept = w.iter().filter(|v| **v != 0.0).count();
        let changed = w.iter().zip(&d).filter(|(a, b)| **a != 0.0 && a != b).count();
        assert!(
            changed * 2 > kept,
            "{name}: {changed} of {kept} kept weights reconstructed"
        );
    }
}

/// A small deterministic generator (xorshift64*), independent of the crate's.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `len` values with distinct magnitudes `(k+1)·0.1/len` in shuffled order and random signs.
    fn distinct(&mut self, len: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..len).map(|k| (k + 1) as f32 * 0.1 / len as f32).collect();
        for i in (1..len).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
        v.iter()
            .map(|&x| if self.next().is_multiple_of(2) { x } else { -x })
            .collect()
    }
}

/// Writes torchvision-format weights of LeNet-300-100 (`[out, in]` weights) and returns them.
fn torch_mlp(path: &Path, widths: &[usize]) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15);
    let mut tensors = Vec::new();
    for (i, w) in widths.windows(2).enumerate() {
        let (fan_in, out) = (w[0], w[1]);
        tensors.push((
            format!("layers.{i}.weight"),
            vec![out, fan_in],
            rng.distinct(out * fan_in),
        ));
        tensors.push((format!("layers.{i}.bias"), vec![out], rng.distinct(out)));
    }
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            (
                name.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b).unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
    tensors
}

#[test]
fn magnitude_at_half_keeps_the_largest_half_of_each_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let weights = t.join("mlp-torch.safetensors");
    let torch = torch_mlp(&weights, &[784, 300, 100, 10]);
    let file = t.join("magnitude.safetensors");
    prune(&[
        "--model",
        "mlp",
        "--init-weights",
        weights.to_str().unwrap(),
        "--calibration",
        "fashion-mnist",
        "--calibration-samples",
        "8",
        "--test-limit",
        "50",
        "--method",
        "magnitude",
        "--sparsity",
        "0.5",
        "--format",
        "dense",
        "-o",
        file.to_str().unwrap(),
    ]);
    let written = tensors(&file);
    for (name, shape, values) in &torch {
        let (_, file_shape, got) = written
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        if shape.len() == 1 {
            assert_eq!(got, values, "{name}: biases are not pruned");
            continue;
        }
        let (out, fan_in) = (shape[0], shape[1]);
        assert_eq!(file_shape, &vec![fan_in, out], "{name}");
        // independent top-k: the ⌈len/2⌉ largest |w| of the layer stay, with their values
        let mut order: Vec<usize> = (0..values.len()).collect();
        order.sort_by(|&a, &b| values[b].abs().total_cmp(&values[a].abs()));
        let keep = values.len() - values.len() / 2;
        let mut expected = vec![0.0f32; values.len()];
        for &k in &order[..keep] {
            let (o, i) = (k / fan_in, k % fan_in);
            expected[i * out + o] = values[k];
        }
        assert_eq!(got, &expected, "{name}");
    }
}

#[test]
fn bad_input_gets_a_clear_error_and_nothing_is_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let run = t.join("dense");
    train(&run, "mlp", "320", "50", &["--method", "dense"]);
    let run_arg = run.to_str().unwrap();
    let out = t.join("pruned.safetensors");
    let out_arg = out.to_str().unwrap();
    let with = |extra: &[&str]| {
        let mut args = vec!["--run", run_arg, "-o", out_arg];
        args.extend(extra);
        prune_output(&args)
    };

    // an unknown method: clap lists the choices
    let o = with(&["--method", "obs"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("[possible values: magnitude, wanda, sparsegpt]"),
        "{}",
        stderr(&o)
    );

    // sparsities and patterns that cannot be met
    assert_error(
        &with(&["--method", "wanda", "--sparsity", "1"]),
        &["sparsity 1", "outside [0, 1)"],
    );
    assert_error(&with(&["--method", "wanda", "--sparsity=-0.1"]), &["outside [0, 1)"]);
    assert_error(
        &with(&["--method", "wanda", "--pattern", "2:4", "--sparsity", "0.7"]),
        &["2:4", "set the sparsity to 0.5"],
    );
    assert_error(
        &with(&["--method", "sparsegpt", "--pattern", "2:3"]),
        &["layers.0.weight", "fan-in 784", "--exclude"],
    );
    assert_error(
        &with(&["--method", "wanda", "--pattern", "block:4x4"]),
        &["unstructured and N:M"],
    );

    // a calibration dataset the run's model does not fit
    let folder = t.join("images");
    image_folder(&folder);
    assert_error(
        &with(&[
            "--method",
            "wanda",
            "--calibration",
            "folder",
            "--data-dir",
            folder.to_str().unwrap(),
            "--image-size",
            "28",
        ]),
        &[
            "--calibration dataset (3x28x28 images, 2 classes) does not fit the run's model",
            "drop --calibration",
        ],
    );

    // calibration images: none, or more than the training split has
    assert_error(
        &with(&["--method", "wanda", "--calibration-samples", "0"]),
        &["--calibration-samples 0", "at least 1"],
    );
    assert_error(
        &with(&["--method", "wanda", "--calibration-samples", "60001"]),
        &["60001", "pass at most 60000"],
    );
    assert!(!out.exists());

    // weights files: missing, or of another model
    let torch = |extra: &[&str]| {
        let mut args = vec![
            "--model",
            "mlp",
            "--method",
            "magnitude",
            "--calibration",
            "fashion-mnist",
            "--calibration-samples",
            "8",
            "-o",
            out_arg,
        ];
        args.extend(extra);
        prune_output(&args)
    };
    let missing = t.join("missing.safetensors");
    assert_error(
        &torch(&["--init-weights", missing.to_str().unwrap()]),
        &["missing.safetensors", "no such weights file", "--init-weights"],
    );
    let other = t.join("other.safetensors");
    torch_mlp(&other, &[784, 200, 10]);
    assert_error(
        &torch(&["--init-weights", other.to_str().unwrap()]),
        &[
            "layers.0.weight",
            "do not fit this model",
            "torchvision-format file of that model",
        ],
    );
    let o = prune_output(&["--method", "wanda", "-o", out_arg]);
    assert_error(&o, &["no model to prune", "--run", "--init-weights"]);
    assert!(!out.exists());

    // a sparse run: one-shot pruning starts from a dense model
    let rigl = t.join("rigl");
    train(&rigl, "mlp", "320", "50", &[]);
    let o = prune_output(&["--run", rigl.to_str().unwrap(), "--method", "wanda", "-o", out_arg]);
    assert_error(&o, &["trained sparse", "rigl", "--method dense"]);

    // an existing file is kept unless --force
    prune(&[
        "--run",
        run_arg,
        "--method",
        "magnitude",
        "--calibration-samples",
        "8",
        "-o",
        out_arg,
    ]);
    let original = std::fs::read(&out).unwrap();
    assert_error(&with(&["--method", "wanda"]), &["exists", "--force"]);
    assert_eq!(std::fs::read(&out).unwrap(), original);
    prune(&[
        "--run",
        run_arg,
        "--method",
        "wanda",
        "--calibration-samples",
        "8",
        "-o",
        out_arg,
        "--force",
    ]);
    assert_ne!(std::fs::read(&out).unwrap(), original);
}

/// An image folder of 28x28 RGB images, two classes whose shades vary with the
/// image's number (so that a few images have another mean than all of them).
fn image_folder(root: &Path) {
    for (split, n) in [("train", 6u8), ("test", 2)] {
        for c in 0..2u8 {
            let d = root.join(split).join(format!("class{c}"));
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..n {
                let shade = 100 * c + 25 * i;
                image::RgbImage::from_pixel(28, 28, image::Rgb([shade, 255 - shade, i * 30]))
                    .save(d.join(format!("{i}.png")))
                    .unwrap();
            }
        }
    }
}

#[test]
fn a_run_is_pruned_and_evaluated_on_its_own_data_and_normalisation() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let folder = t.join("images");
    image_folder(&folder);
    let run = t.join("run");
    // a train limit: the folder's mean and std come from those 2 images only
    let o = sparseburn(&[
        "train",
        "--dataset",
        "folder",
        "--data-dir",
        folder.to_str().unwrap(),
        "--image-size",
        "28",
        "--model",
        "mlp",
        "--method",
        "dense",
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--train-limit",
        "2",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let exported = t.join("exported.safetensors");
    let o = sparseburn(&["export", run.to_str().unwrap(), "-o", exported.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let pruned = t.join("pruned.safetensors");
    let out = prune(&[
        "--run",
        run.to_str().unwrap(),
        "--method",
        "magnitude",
        "--sparsity",
        "0.5",
        "--calibration-samples",
        "2",
        "-o",
        pruned.to_str().unwrap(),
    ]);
    let recorded = json(&run.join("summary.json"))["test_accuracy"].as_f64().unwrap();
    assert_eq!(printed(&out, "before"), recorded, "{out}");
    let info = |path: &Path| {
        let device = burn::tensor::Device::flex();
        sparseburn::sparse_models::ExportedModel::from_bytes(&std::fs::read(path).unwrap(), &device)
            .unwrap()
            .info
    };
    let (run_info, pruned_info) = (info(&exported), info(&pruned));
    assert_eq!(pruned_info.mean, run_info.mean);
    assert_eq!(pruned_info.std, run_info.std);
}

/// Mean cross-entropy of the torchvision-format MLP `torch` on the first
/// `limit` Fashion-MNIST test images normalised as `(x/255 − mean)/std`,
/// computed here in f64 from the raw pixels.
fn mlp_loss(torch: &[(String, Vec<usize>, Vec<f32>)], limit: usize, mean: f64, std: f64) -> f64 {
    let data = sparseburn::data::DataConfig {
        test_limit: limit,
        ..Default::default()
    };
    let (_, test) = data.load().unwrap();
    assert_eq!(test.len(), limit);
    let layers: Vec<(&Vec<usize>, &Vec<f32>, &Vec<f32>)> =
        torch.chunks(2).map(|p| (&p[0].1, &p[0].2, &p[1].2)).collect();
    let mut total = 0.0;
    for i in 0..test.len() {
        let mut x: Vec<f64> = test
            .image(i)
            .iter()
            .map(|p| (f64::from(*p) / 255.0 - mean) / std)
            .collect();
        for (l, (shape, w, b)) in layers.iter().enumerate() {
            let (out, fan_in) = (shape[0], shape[1]);
            let mut y: Vec<f64> = (0..out)
                .map(|o| f64::from(b[o]) + (0..fan_in).map(|j| f64::from(w[o * fan_in + j]) * x[j]).sum::<f64>())
                .collect();
            if l + 1 < layers.len() {
                y.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            x = y;
        }
        let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let log_sum = max + x.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        total += log_sum - x[usize::from(test.labels[i])];
    }
    total / test.len() as f64
}

#[test]
fn mean_and_std_reach_calibration_evaluation_and_the_file_and_a_wrong_count_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let weights = t.join("mlp-torch.safetensors");
    let torch = torch_mlp(&weights, &[784, 300, 100, 10]);
    let run = |name: &str, extra: &[&str]| {
        let (file, report) = (t.join(format!("{name}.safetensors")), t.join(format!("{name}.json")));
        let mut args = vec![
            "--model",
            "mlp",
            "--init-weights",
            weights.to_str().unwrap(),
            "--calibration",
            "fashion-mnist",
            "--calibration-samples",
            "16",
            "--test-limit",
            "100",
            "--method",
            "wanda",
            "--sparsity",
            "0.5",
            "--format",
            "dense",
            "-o",
            file.to_str().unwrap(),
            "--json",
            report.to_str().unwrap(),
        ];
        args.extend(extra);
        prune(&args);
        (file, json(&report))
    };
    let (default_file, default_report) = run("default", &[]);
    let (file, report) = run("given", &["--mean", "0.1", "--std", "0.7"]);

    // evaluation: the dense model's loss is that of (x/255 − 0.1)/0.7 inputs
    let loss = report["loss_before"].as_f64().unwrap();
    let expected = mlp_loss(&torch, 100, 0.1, 0.7);
    assert!(
        (loss - expected).abs() <= 1e-4 * expected,
        "loss {loss}, expected {expected}"
    );
    let default_loss = default_report["loss_before"].as_f64().unwrap();
    assert!(
        (default_loss - expected).abs() > 1e-3 * expected,
        "{default_loss} vs {expected}"
    );
    // calibration: Wanda's input norms change, and with them its first layer's masks
    let zeros = |path: &Path| -> Vec<bool> { mlp_weights(path)[0].2.iter().map(|v| *v == 0.0).collect() };
    assert_ne!(zeros(&file), zeros(&default_file));
    // the written model records them (`infer` normalises with them)
    let info = |path: &Path| {
        let device = burn::tensor::Device::flex();
        sparseburn::sparse_models::ExportedModel::from_bytes(&std::fs::read(path).unwrap(), &device)
            .unwrap()
            .info
    };
    let given = info(&file);
    assert_eq!((given.mean, given.std), (vec![0.1], vec![0.7]));
    assert_ne!(info(&default_file).mean, vec![0.1]);

    // one value per channel (Fashion-MNIST has 1), std above 0, and only with --init-weights
    let out = t.join("bad.safetensors");
    let bad = |extra: &[&str]| {
        let mut args = vec![
            "prune",
            "--model",
            "mlp",
            "--init-weights",
            weights.to_str().unwrap(),
            "--calibration",
            "fashion-mnist",
            "--method",
            "magnitude",
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        sparseburn(&args)
    };
    assert_error(
        &bad(&["--mean", "0.485,0.456,0.406"]),
        &[
            "--mean has 3 value(s)",
            "1 channel(s)",
            "pass 1 comma-separated value(s)",
        ],
    );
    assert_error(&bad(&["--std", "0.5,0.5"]), &["--std has 2 value(s)", "pass 1"]);
    assert_error(&bad(&["--std", "0"]), &["--std 0", "above 0"]);
    assert!(!out.exists());
    let dense_run = t.join("missing-run");
    let o = sparseburn(&[
        "prune",
        "--run",
        dense_run.to_str().unwrap(),
        "--method",
        "magnitude",
        "--mean",
        "0.5",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("drop --mean and --std"), "{}", stderr(&o));
}
