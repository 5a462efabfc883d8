//! The `sparseburn` binary on hostile and mistaken data inputs: each is a
//! one-line error naming the file (or setting) and the fix, or a loud warning,
//! before a run folder exists — never a panic, a memory blow-up, or an
//! accuracy that means nothing. Files are tiny and written to a temp folder.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn sparseburn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sparseburn"))
        .args(args)
        .output()
        .expect("run sparseburn")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_one_line_error(o: &Output, needles: &[&str]) {
    assert!(!o.status.success(), "succeeded: {}", stderr(o));
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    let errors: Vec<&&str> = lines.iter().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "one error line expected: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
}

fn idx_images(n: u32, rows: u32, cols: u32, body: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [0x0803u32, n, rows, cols] {
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

/// An MNIST-style folder: `(file name, bytes)` for the four IDX files.
fn write_files(dir: &Path, files: &[(&str, Vec<u8>)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// The four IDX files with `train` and `test` images of the given sides.
fn write_idx(dir: &Path, train: (u32, u32, u32), test: (u32, u32, u32)) {
    let img = |(n, r, c): (u32, u32, u32)| idx_images(n, r, c, (n * r * c) as usize);
    write_files(
        dir,
        &[
            ("train-images-idx3-ubyte", img(train)),
            ("train-labels-idx1-ubyte", idx_labels(train.0)),
            ("t10k-images-idx3-ubyte", img(test)),
            ("t10k-labels-idx1-ubyte", idx_labels(test.0)),
        ],
    );
}

fn train_on(dir: &Path, dataset: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--dataset",
        dataset,
        "--data-dir",
        dir.to_str().unwrap(),
        "--model",
        "mlp",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    sparseburn(&args)
}

/// `sparseburn args` with its address space capped at `limit_gib` (so a
/// regression fails the test instead of exhausting the machine). Returns its
/// exit code, its stderr and its peak resident memory in KiB (from `wait4`).
#[cfg(target_os = "linux")]
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which also reports the peak memory
fn run_bounded(args: &[&str], limit_gib: u64) -> (Option<i32>, String, i64) {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sparseburn"));
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    let limit = libc::rlimit {
        rlim_cur: limit_gib << 30,
        rlim_max: limit_gib << 30,
    };
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = cmd.spawn().expect("run sparseburn");
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 reaps our own child and fills both.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4 failed");
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, err, usage.ru_maxrss)
}

#[test]
fn idx_headers_with_zero_or_absurd_sides_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let zero = tmp.path().join("zero");
    write_idx(&zero, (100, 0, 0), (20, 0, 0));
    let out = tmp.path().join("r1");
    let o = train_on(&zero, "mnist", &out, &[]);
    assert_one_line_error(&o, &["train-images-idx3-ubyte", "0x0", "replace the file"]);
    assert!(!out.exists(), "a run that could not start left its folder");

    // 4e9 images of 28x28 (2.9 TiB) declared by a 16-byte header
    let huge = tmp.path().join("huge");
    write_files(
        &huge,
        &[
            ("train-images-idx3-ubyte", idx_images(4_000_000_000, 28, 28, 10)),
            ("train-labels-idx1-ubyte", idx_labels(10)),
        ],
    );
    let o = train_on(&huge, "mnist", &tmp.path().join("r2"), &[]);
    assert_one_line_error(&o, &["train-images-idx3-ubyte", "4000000000 images", "TiB", "16.0 GiB"]);
}

#[test]
fn train_and_test_images_of_different_shapes_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    write_idx(&dir, (100, 28, 28), (20, 14, 14));
    let out = tmp.path().join("r");
    let o = train_on(&dir, "fashion-mnist", &out, &[]);
    assert_one_line_error(&o, &["1x28x28", "1x14x14", "do not belong together"]);
    assert!(!out.exists());
}

#[test]
fn an_empty_test_set_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    write_idx(&dir, (100, 28, 28), (0, 28, 28));
    let o = train_on(&dir, "mnist", &tmp.path().join("r"), &[]);
    assert_one_line_error(&o, &["mnist/test set has no images"]);
}

#[test]
fn labels_beyond_the_classes_name_the_image() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    write_idx(&dir, (100, 28, 28), (20, 28, 28));
    let mut labels = idx_labels(100);
    labels[8 + 5] = 12;
    std::fs::write(dir.join("train-labels-idx1-ubyte"), labels).unwrap();
    let o = train_on(&dir, "mnist", &tmp.path().join("r"), &[]);
    assert_one_line_error(
        &o,
        &[
            "train-labels-idx1-ubyte",
            "image 5 has label 12",
            "10 classes",
            "replace it",
        ],
    );

    let cifar = tmp.path().join("c").join("cifar-10-batches-bin");
    std::fs::create_dir_all(&cifar).unwrap();
    for name in [
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
        "test_batch",
    ] {
        let mut bytes = vec![1u8; 3073 * 8];
        if name == "test_batch" {
            bytes[3 * 3073] = 10;
        }
        std::fs::write(cifar.join(format!("{name}.bin")), bytes).unwrap();
    }
    let o = train_on(&tmp.path().join("c"), "cifar10", &tmp.path().join("r2"), &[]);
    assert_one_line_error(&o, &["test_batch.bin", "record 3 has label 10"]);
}

#[cfg(target_os = "linux")]
#[test]
fn a_gzip_bomb_is_stopped_at_the_declared_size() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    write_idx(&dir, (100, 28, 28), (20, 28, 28));
    std::fs::remove_file(dir.join("train-images-idx3-ubyte")).unwrap();
    // header: 100 images of 28x28 (78 400 bytes); content: 256 MiB of zeros, 1.1 MiB packed
    const UNPACKED: usize = 256 << 20;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&idx_images(100, 28, 28, 0)).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..UNPACKED >> 20 {
        e.write_all(&zeros).unwrap();
    }
    let bomb = e.finish().unwrap();
    assert!(bomb.len() < 2 << 20, "{} bytes packed", bomb.len());
    std::fs::write(dir.join("train-images-idx3-ubyte.gz"), bomb).unwrap();

    let out = tmp.path().join("r");
    let args = [
        "train",
        "--dataset",
        "mnist",
        "--data-dir",
        dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let (code, err, peak_kib) = run_bounded(&args, 4);
    // reading the whole content would take at least 256 MiB; the declared 78 400 bytes
    // leave the process at its baseline (tens of MiB)
    assert!(
        peak_kib < 128 * 1024,
        "peak memory {peak_kib} KiB for a file that declares 78 400 bytes: {err}"
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("train-images-idx3-ubyte.gz") && err.contains("more than the 100 images of 28x28"),
        "{err}"
    );
    assert!(!out.exists());
}

/// `root/<split>/<class>/i.png`, `n` 8×8 images per class.
fn image_tree(root: &Path, split: &str, classes: &[(&str, usize)]) {
    for (class, n) in classes {
        let d = root.join(split).join(class);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..*n {
            let shade = (i * 40) as u8;
            image::RgbImage::from_pixel(8, 8, image::Rgb([shade, 255 - shade, class.len() as u8 * 30]))
                .save(d.join(format!("{i}.png")))
                .unwrap();
        }
    }
}

#[cfg(target_os = "linux")]
#[test]
fn image_sizes_and_channels_from_the_user_are_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pets");
    image_tree(&root, "train", &[("cat", 2), ("dog", 2)]);
    image_tree(&root, "test", &[("cat", 1), ("dog", 1)]);
    let data = root.to_str().unwrap();
    let out = tmp.path().join("r");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--dataset",
            "folder",
            "--data-dir",
            data,
            "--model",
            "mlp",
            "--batch-size",
            "2",
        ];
        args.extend(extra);
        args.extend(["--out", out.to_str().unwrap()]);
        run_bounded(&args, 8)
    };
    let (code, err, _) = run(&["--image-size", "0"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--image-size is 0") && err.contains("between 1 and 1024"),
        "{err}"
    );
    // 3·100000² bytes = 27.9 GiB for one image
    let (code, err, peak_kib) = run(&["--image-size", "100000"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--image-size is 100000") && err.contains("27.9 GiB") && err.contains("between 1 and 1024"),
        "{err}"
    );
    assert!(peak_kib < 512 * 1024, "peak memory {peak_kib} KiB");
    let (code, err, _) = run(&["--channels", "2"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--channels is 2") && err.contains("--channels 1"), "{err}");
    assert!(
        !err.contains("--data-dir"),
        "a bad setting is not a missing dataset: {err}"
    );
    assert!(!out.exists());
}

#[test]
fn image_folder_classes_must_agree_and_number_at_least_two() {
    let tmp = tempfile::tempdir().unwrap();

    let one = tmp.path().join("one");
    image_tree(&one, "train", &[("cat", 4)]);
    image_tree(&one, "test", &[("cat", 2)]);
    let o = train_on(&one, "folder", &tmp.path().join("r1"), &["--image-size", "8"]);
    assert_one_line_error(&o, &["only one class folder (`cat`)", "at least 2 classes"]);

    let extra = tmp.path().join("extra");
    image_tree(&extra, "train", &[("cat", 4), ("dog", 4)]);
    image_tree(&extra, "test", &[("cat", 2), ("dog", 2), ("zebra", 2)]);
    let o = train_on(&extra, "folder", &tmp.path().join("r2"), &["--image-size", "8"]);
    assert_one_line_error(&o, &["`zebra`", "train folder lacks"]);

    // a train class without test images trains, with a warning that names it
    let fewer = tmp.path().join("fewer");
    image_tree(&fewer, "train", &[("cat", 4), ("dog", 4), ("zebra", 4)]);
    image_tree(&fewer, "test", &[("cat", 2), ("dog", 2)]);
    let o = train_on(&fewer, "folder", &tmp.path().join("r3"), &["--image-size", "8"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("no test images of class(es) `zebra`") && err.contains("does not measure"),
        "{err}"
    );
}

#[test]
fn folder_limits_take_images_of_every_class() {
    use sparseburn::data::{DataConfig, DatasetKind};
    let tmp = tempfile::tempdir().unwrap();
    image_tree(tmp.path(), "train", &[("cat", 6), ("dog", 6)]);
    image_tree(tmp.path(), "test", &[("cat", 3), ("dog", 3)]);
    let cfg = DataConfig {
        dataset: DatasetKind::Folder,
        data_dir: Some(PathBuf::from(tmp.path())),
        image_size: 8,
        train_limit: 4,
        test_limit: 2,
        ..DataConfig::default()
    };
    let (train, test) = cfg.load().unwrap();
    let count = |labels: &[u16], c: u16| labels.iter().filter(|l| **l == c).count();
    assert_eq!((count(&train.labels, 0), count(&train.labels, 1)), (2, 2));
    assert_eq!((count(&test.labels, 0), count(&test.labels, 1)), (1, 1));
}

#[test]
fn info_refuses_inputs_whose_counts_overflow() {
    let o = sparseburn(&["info", "--input", "18446744073709551615x2x2"]);
    assert_one_line_error(&o, &["18446744073709551615x2x2", "2^32", "smaller input"]);
    let o = sparseburn(&[
        "info",
        "--model",
        "cnn",
        "--input",
        "1x28x28",
        "--classes",
        "18446744073709551615",
    ]);
    assert_one_line_error(&o, &["1x28x28", "2^24"]);
}

#[cfg(target_os = "linux")]
#[test]
fn os_errors_are_reported_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    write_idx(&dir, (100, 28, 28), (20, 28, 28));
    // a regular file whose first read fails with EIO (address 0 is never mapped), also for root
    let images = dir.join("train-images-idx3-ubyte");
    std::fs::remove_file(&images).unwrap();
    std::os::unix::fs::symlink("/proc/self/mem", &images).unwrap();
    let o = train_on(&dir, "mnist", &tmp.path().join("r"), &[]);
    let os = std::io::Error::from_raw_os_error(libc::EIO).to_string();
    assert_one_line_error(&o, &["train-images-idx3-ubyte", &os]);
    assert_eq!(stderr(&o).matches(&os).count(), 1, "{}", stderr(&o));
}
