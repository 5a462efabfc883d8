//! End to end: every registered method trains the MLP on the synthetic set
//! through the same trainer the CLI uses, reaches its target sparsity and beats
//! chance (10%) clearly.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use sparseburn::run::{RunConfig, TrainOptions, train};

/// A run of `method` at `sparsity`, with extra config text (TOML) laid over it.
fn config(method: &str, sparsity: f64, extra: &str) -> RunConfig {
    let device = std::env::var("SPARSEBURN_DEVICE").unwrap_or_else(|_| "flex".into());
    let sparsity_section = if method == "dense" {
        String::new()
    } else {
        format!("[sparsity]\nsparsity = {sparsity}\n")
    };
    let text = format!(
        "device = \"{device}\"\n[model]\nname = \"mlp\"\n[data]\ndataset = \"synthetic\"\ntrain_limit = 2560\ntest_limit = 500\n{sparsity_section}[training]\nepochs = 4\nbatch_size = 64\nlr = 0.05\n"
    );
    let mut table: toml::Table = toml::from_str(&text).unwrap();
    let mut method_table: toml::Table = toml::from_str(&format!("name = \"{method}\"")).unwrap();
    let registered = sparseburn::sparse_methods::registry::find(method).unwrap();
    if registered.switches.iter().any(|s| s.key == "delta_t") {
        method_table.insert("delta_t".into(), toml::Value::Integer(10));
    }
    table.insert("method".into(), toml::Value::Table(method_table));
    let extra: toml::Table = toml::from_str(extra).unwrap();
    sparseburn::cli::args::merge(&mut table, extra);
    RunConfig::from_table(table).unwrap_or_else(|e| panic!("{method}: {e:#}"))
}

fn check(cfg: RunConfig, expected_sparsity: f64) {
    let tmp = tempfile::tempdir().unwrap();
    let opts = TrainOptions {
        out: tmp.path().join("run"),
        resume: false,
        interrupt: Arc::new(AtomicBool::new(false)),
        verbose: false,
        stop_after_epochs: None,
    };
    let method = cfg.method.name();
    let s = train(&cfg, &opts).unwrap_or_else(|e| panic!("{method}: {e:#}"));
    assert!(
        (s.sparsity - expected_sparsity).abs() < 0.01,
        "{method}: sparsity {} vs {expected_sparsity}",
        s.sparsity
    );
    let accuracy = s.test_accuracy.unwrap_or(f64::NAN);
    assert!(accuracy > 0.5, "{method}: accuracy {accuracy}");
}

#[test]
fn unstructured_methods_reach_their_target() {
    for method in [
        "dense",
        "static",
        "snip",
        "grasp",
        "gmp",
        "set",
        "rigl",
        "autosparse",
        "mest",
        "one-shot",
    ] {
        let target = if method == "dense" { 0.0 } else { 0.9 };
        let extra = if method == "grasp" {
            "[method]\nsamples_per_class = 5"
        } else {
            ""
        };
        check(config(method, 0.9, extra), target);
    }
}

#[test]
fn structured_and_iterative_methods_reach_their_target() {
    check(config("srigl", 0.8, "[sparsity]\npattern = \"constant-fan-in\""), 0.8);
    check(config("srste", 0.5, "[sparsity]\npattern = \"2:4\""), 0.5);
    check(config("rigl", 0.5, "[sparsity]\npattern = \"2:4\""), 0.5);
    check(
        config(
            "lth",
            0.75,
            "[method]\nrounds = 2\nprune_fraction = 0.5\n[training]\nepochs = 2",
        ),
        0.75,
    );
    check(
        config(
            "lth",
            0.5,
            "[method]\nrounds = 1\nprune_fraction = 0.5\nrewind = \"reinit\"\n[training]\nepochs = 2",
        ),
        0.5,
    );
    check(config("gmp", 0.9, "[penalty]\nkind = \"l1\""), 0.9);
    check(config("mest", 0.9, "[method]\nsoft_bound = true"), 0.9);
    // a penalty alone, on a dense model
    check(
        config("dense", 0.0, "[penalty]\nkind = \"group-lasso\"\nstrength = 1e-3"),
        0.0,
    );
}
