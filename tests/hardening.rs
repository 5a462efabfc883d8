//! The run-level guarantees of docs/reliability.md, as a hostile or clumsy user
//! meets them: divergence, two writers on one folder, kills before the first
//! checkpoint, damaged checkpoints, bad numbers, interrupted rounds and sweeps.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sparseburn"))
}

fn sparseburn(args: &[&str]) -> Output {
    bin().args(args).output().expect("run sparseburn")
}

fn spawn(args: &[String]) -> Child {
    bin()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sparseburn")
}

fn run(args: &[String]) -> Output {
    bin().args(args).output().expect("run sparseburn")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A small RigL run on the synthetic set: `epochs` epochs of 10 steps.
fn small(out: &Path, epochs: u32, extra: &[&str]) -> Vec<String> {
    with_method("rigl", out, epochs, extra)
}

/// A small run of `method` on the synthetic set: `epochs` epochs of 10 steps.
fn with_method(method: &str, out: &Path, epochs: u32, extra: &[&str]) -> Vec<String> {
    let mut v = strings(&[
        "train",
        "--dataset",
        "synthetic",
        "--model",
        "mlp",
        "--method",
        method,
        "--sparsity",
        "0.8",
        "--batch-size",
        "64",
        "--train-limit",
        "640",
        "--test-limit",
        "100",
    ]);
    v.extend([
        "--epochs".into(),
        epochs.to_string(),
        "--out".into(),
        out.display().to_string(),
    ]);
    v.extend(strings(extra));
    v
}

/// `metrics.csv` without the two timing columns.
fn metrics(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("metrics.csv"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            cells[..cells.len().saturating_sub(2)].join(",")
        })
        .collect()
}

fn wait_for(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

fn assert_one_line_error(o: &Output, needles: &[&str]) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    let errors: Vec<&str> = e.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{e}");
    for n in needles {
        assert!(errors[0].contains(n), "`{n}` not in {e}");
    }
}

#[test]
fn a_diverged_run_stops_at_its_first_non_finite_loss_and_keeps_its_last_good_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    for (gamma, value) in [("1e30", "NaN"), ("1e6", "inf")] {
        let out = tmp.path().join(gamma);
        // the rate jumps from 0.1 to 0.1·γ after epoch 1 (10 steps)
        let args = small(&out, 3, &["--schedule", "step", "--milestones", "1", "--gamma", gamma]);
        let o = run(&args);
        assert_one_line_error(&o, &["diverged at step ", value, "epoch 1, step 10"]);
        let e = stderr(&o);
        let step: u64 = e
            .split("diverged at step ")
            .nth(1)
            .and_then(|t| t.split(':').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{e}"));
        assert!((11..=20).contains(&step), "the first step after the rate jump: {e}");
        let text = std::fs::read_to_string(out.join("checkpoint/trainer.json")).unwrap();
        let state: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(state["step"], 10, "the checkpoint is the last good one");
        assert!(state["sums"]["loss_sum"].as_f64().unwrap().is_finite());
        assert_eq!(metrics(&out).len(), 2, "only epoch 1 in metrics.csv");
        // the checkpoint reads back: the resumed run diverges at the same step again
        let o = sparseburn(&["train", "--resume", out.to_str().unwrap()]);
        assert_one_line_error(&o, &[&format!("diverged at step {step}:")]);
    }
}

#[test]
fn a_second_writer_is_refused_with_the_holders_pid_and_a_killed_holder_blocks_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let holder = spawn(&small(&out, 200, &[]));
    wait_for("the first epoch", || metrics(&out).len() >= 2);
    let pid = format!("pid {}", holder.id());
    let o = sparseburn(&["train", "--resume", out.to_str().unwrap()]);
    assert_one_line_error(&o, &["in use by another sparseburn process", &pid]);
    let o = run(&small(&out, 200, &[]));
    assert_one_line_error(&o, &["in use", &pid]);
    // kill -9: the operating system drops the lock with the process
    signal(&holder, libc::SIGKILL);
    let _ = holder.wait_with_output();
    let o = run(&small(&out, 2, &[]));
    assert_one_line_error(&o, &["already exists", "--resume"]);
    let mut resume = bin();
    resume.args(["train", "--resume", out.to_str().unwrap(), "--stop-after", "1"]);
    let o = resume.output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
}

#[test]
fn two_runs_started_together_on_one_folder_one_proceeds_and_nothing_is_mixed() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let args = small(&out, 6, &[]);
    let (a, b) = (spawn(&args), spawn(&args));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let ok: Vec<&Output> = [&a, &b].into_iter().filter(|o| o.status.success()).collect();
    assert_eq!(ok.len(), 1, "{}\n---\n{}", stderr(&a), stderr(&b));
    let refused = if a.status.success() { &b } else { &a };
    let e = stderr(refused);
    assert!(
        e.contains("in use by another sparseburn process") || e.contains("already exists"),
        "{e}"
    );
    let rows = metrics(&out);
    assert_eq!(rows.len(), 7, "{rows:?}");
    for (i, row) in rows[1..].iter().enumerate() {
        assert!(row.starts_with(&format!("0,{},", i + 1)), "{rows:?}");
    }
    assert!(out.join("summary.json").is_file());
}

fn sweep_args(out: &Path, epochs: &str, extra: &[&str]) -> Vec<String> {
    let mut v = strings(&[
        "sweep",
        "--dataset",
        "synthetic",
        "--methods",
        "static",
        "--sparsities",
        "0.9",
        "--seeds",
        "2",
        "--batch-size",
        "64",
        "--train-limit",
        "320",
        "--test-limit",
        "100",
        "--epochs",
        epochs,
        "--out",
    ]);
    v.push(out.display().to_string());
    v.extend(strings(extra));
    v
}

#[test]
fn two_sweeps_started_together_on_one_folder_one_proceeds_and_nothing_is_duplicated() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sweep");
    let args = sweep_args(&out, "3", &[]);
    let (a, b) = (spawn(&args), spawn(&args));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let ok = [&a, &b].iter().filter(|o| o.status.success()).count();
    assert_eq!(ok, 1, "{}\n---\n{}", stderr(&a), stderr(&b));
    let refused = if a.status.success() { &b } else { &a };
    assert_one_line_error(refused, &["in use by another sparseburn process", "pid"]);
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.lines().nth(1).unwrap().starts_with("static,0.9,2,"), "{csv}");
    for seed in [1, 2] {
        let run = out.join(format!("static-s900-seed{seed}"));
        assert!(run.join("summary.json").is_file());
        assert_eq!(metrics(&run).len(), 4);
    }
}

#[test]
fn a_sweep_reuses_a_finished_run_only_with_the_same_settings_and_ctrl_c_says_to_run_it_again() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sweep");
    let child = spawn(&sweep_args(&out, "60", &[]));
    let first = out.join("static-s900-seed1");
    wait_for("the first epoch", || metrics(&first).len() >= 2);
    signal(&child, libc::SIGINT);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("same `sparseburn sweep` command"), "{e}");
    assert!(!e.contains("train --resume"), "{e}");
    // changed options: the interrupted run is not continued with other settings
    let o = run(&sweep_args(&out, "2", &[]));
    assert_one_line_error(&o, &["other settings"]);
}

fn flip_middle_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn damaged_checkpoint_files_and_counters_beyond_the_schedule_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // a run in sparse execution writes the compact model in place of the dense one
    for (execution, model) in [("sparse", "compact.bpk"), ("dense", "model.bpk")] {
        let out = tmp.path().join(execution);
        let o = run(&small(&out, 3, &["--stop-after", "1", "--execution", execution]));
        assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
        for file in [model, "sparse.safetensors"] {
            let path = out.join("checkpoint").join(file);
            let good = std::fs::read(&path).unwrap();
            flip_middle_byte(&path);
            let o = sparseburn(&["train", "--resume", out.to_str().unwrap()]);
            assert_one_line_error(&o, &[file, "SHA-256"]);
            std::fs::write(&path, good).unwrap();
        }
    }
    let out = tmp.path().join("dense");
    let ckpt = out.join("checkpoint");
    // a hand-edited trainer.json with checksums made to match: its counters are checked
    let trainer = ckpt.join("trainer.json");
    let good = std::fs::read_to_string(&trainer).unwrap();
    std::fs::write(&trainer, good.replace("\"step\": 10,", "\"step\": 100000,")).unwrap();
    sparseburn::run::train::checksum::record(&ckpt).unwrap();
    let o = sparseburn(&["train", "--resume", out.to_str().unwrap()]);
    assert_one_line_error(&o, &["step 100000", "beyond the schedule's 30 steps"]);
    std::fs::write(&trainer, &good).unwrap();
    sparseburn::run::train::checksum::record(&ckpt).unwrap();
    let o = sparseburn(&["train", "--resume", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_run_stopped_before_its_first_checkpoint_starts_again_by_resume_or_by_the_same_command() {
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full");
    assert!(run(&small(&full, 2, &[])).status.success());
    for by_resume in [true, false] {
        let out = tmp.path().join(format!("again-{by_resume}"));
        // a kill during the first checkpoint write: the new folder never replaced `checkpoint`
        let o = run(&small(&out, 2, &["--stop-after", "1"]));
        assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
        std::fs::rename(out.join("checkpoint"), out.join("checkpoint.tmp")).unwrap();
        let o = if by_resume {
            sparseburn(&["train", "--resume", out.to_str().unwrap()])
        } else {
            run(&small(&out, 2, &[]))
        };
        assert!(o.status.success(), "{}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("stopped before its first checkpoint was written")
                && e.contains("1 epoch(s) in metrics.csv")
                && e.contains("from the beginning"),
            "{e}"
        );
        assert_eq!(
            metrics(&full),
            metrics(&out),
            "the new start equals an uninterrupted run"
        );
    }
    // kill -9 as soon as the run folder appears, before any epoch
    let out = tmp.path().join("killed");
    let child = spawn(&small(&out, 2, &[]));
    wait_for("the run folder", || out.join("config.toml").is_file());
    signal(&child, libc::SIGKILL);
    let _ = child.wait_with_output();
    let o = sparseburn(&["train", "--resume", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(metrics(&full), metrics(&out));
}

#[test]
fn an_interrupted_run_in_rounds_exits_130_and_starts_again() {
    let tmp = tempfile::tempdir().unwrap();
    let (full, out) = (tmp.path().join("full"), tmp.path().join("lth"));
    let lth = |out: &Path, extra: &[&str]| with_method("lth", out, 2, extra);
    assert!(run(&lth(&full, &[])).status.success());
    let o = run(&lth(&out, &["--stop-after", "1"]));
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("starts it again from the beginning"),
        "{}",
        stderr(&o)
    );
    let o = sparseburn(&["train", "--resume", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(metrics(&full), metrics(&out));
    // a finished run is not trained again
    let o = sparseburn(&["train", "--resume", out.to_str().unwrap()]);
    assert_one_line_error(&o, &["finished"]);
    // killed after its final checkpoint, before its summary: it starts again
    std::fs::remove_file(out.join("summary.json")).unwrap();
    let o = sparseburn(&["train", "--resume", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("keeps no checkpoint to continue from"),
        "{}",
        stderr(&o)
    );
    assert_eq!(metrics(&full), metrics(&out));
}

#[test]
fn numbers_out_of_range_are_one_line_errors_that_leave_no_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str], &[&str]); 8] = [
        ("rigl", &["-m", "delta_t=0"], &["delta_t", "at least 1"]),
        ("rigl", &["-m", "end_fraction=-1"], &["end_fraction -1"]),
        ("rigl", &["--warmup-epochs", "nan"], &["warmup_epochs = NaN", "finite"]),
        ("rigl", &["--lr", "inf"], &["lr = inf", "finite"]),
        ("rigl", &["--label-smoothing", "1.5"], &["label_smoothing 1.5"]),
        (
            "gmp",
            &["-m", "initial_sparsity=0.99"],
            &["initial_sparsity 0.99", "target"],
        ),
        ("gmp", &["-m", "prune_begin_fraction=-1"], &["prune_begin_fraction -1"]),
        ("set", &["-m", "end_fraction=nan"], &["end_fraction = NaN"]),
    ];
    for (i, (method, extra, needles)) in cases.iter().enumerate() {
        let out = tmp.path().join(format!("r{i}"));
        let mut args = with_method(method, &out, 1, extra);
        if *method == "rigl" {
            // the switches of the default method, without --method
            let m = args.iter().position(|a| a == "--method").unwrap();
            args.drain(m..m + 2);
        }
        let o = run(&args);
        assert_one_line_error(&o, needles);
        assert!(!stderr(&o).contains("run folder"), "{}", stderr(&o));
        assert!(!out.exists(), "{extra:?} left {}", out.display());
    }
    // options parsed by the command line itself: usage errors (exit 2)
    let o = run(&small(&tmp.path().join("p"), 1, &["--pattern", "5:4"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("between 1 and M"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("sparsity"), "{}", stderr(&o));
    let o = run(&small(&tmp.path().join("s"), 1, &["--stop-after", "0"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--stop-after"), "{}", stderr(&o));
}

#[test]
fn log_lines_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = small(&tmp.path().join("run"), 1, &[]);
    args.insert(0, "-v".into());
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("INFO"), "{e}");
    assert!(!e.contains('\u{1b}'), "{e:?}");
}
