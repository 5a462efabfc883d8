//! End to end: every method trains the MLP on the synthetic set through the
#![allow(clippy::field_reassign_with_default)] // the settings read best one per line
//! same trainer the CLI uses, reaches its target sparsity and beats chance
//! (10%) clearly.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use sparseburn::data::DatasetKind;
use sparseburn::run::{RunConfig, TrainOptions, train};

fn config(method: &str, sparsity: f64) -> RunConfig {
    let mut c = RunConfig::default();
    c.device = std::env::var("SPARSEBURN_DEVICE").unwrap_or_else(|_| "flex".into());
    c.data.dataset = DatasetKind::Synthetic;
    c.data.train_limit = 2560;
    c.data.test_limit = 500;
    c.model.name = "mlp".into();
    c.method.name = method.into();
    c.method.delta_t = 10;
    c.sparsity.sparsity = sparsity;
    c.training.epochs = 4;
    c.training.batch_size = 64;
    c.training.lr = 0.05;
    c
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
    let method = cfg.method.name.clone();
    let s = train(&cfg, &opts).unwrap_or_else(|e| panic!("{method}: {e:#}"));
    assert!(
        (s.sparsity - expected_sparsity).abs() < 0.01,
        "{method}: sparsity {} vs {expected_sparsity}",
        s.sparsity
    );
    assert!(s.test_accuracy > 0.5, "{method}: accuracy {}", s.test_accuracy);
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
        let mut c = config(method, 0.9);
        if method == "grasp" {
            c.method.samples_per_class = 5;
        }
        check(c, target);
    }
}

#[test]
fn structured_and_iterative_methods_reach_their_target() {
    let mut srigl = config("srigl", 0.8);
    srigl.sparsity.pattern = "constant-fan-in".into();
    check(srigl, 0.8);
    let mut srste = config("srste", 0.5);
    srste.sparsity.pattern = "2:4".into();
    check(srste, 0.5);
    let mut nm_rigl = config("rigl", 0.5);
    nm_rigl.sparsity.pattern = "2:4".into();
    check(nm_rigl, 0.5);
    let mut lth = config("lth", 0.75);
    lth.method.rounds = 2;
    lth.method.prune_fraction = 0.5;
    lth.training.epochs = 2;
    check(lth, 0.75);
    let mut reinit = config("lth", 0.5);
    reinit.method.rounds = 1;
    reinit.method.prune_fraction = 0.5;
    reinit.method.rewind = "reinit".into();
    reinit.training.epochs = 2;
    check(reinit, 0.5);
    let mut l1 = config("gmp", 0.9);
    l1.method.penalty = Some("l1".into());
    check(l1, 0.9);
    let mut soft = config("mest", 0.9);
    soft.method.soft_bound = true;
    check(soft, 0.9);
    // a penalty alone, on a dense model
    let mut lasso = config("dense", 0.0);
    lasso.method.penalty = Some("group-lasso".into());
    lasso.method.penalty_strength = 1e-3;
    check(lasso, 0.0);
}
