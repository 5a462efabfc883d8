//! Each method's sparsity settings default to its paper's reference (issue 13),
//! an explicit value wins: SNIP and GraSP rank globally, GMP prunes uniformly,
//! MEST is uniform with the first and last layers dense, SR-STE keeps the
//! classifier dense, SRigL re-initialises with grad-flow, lottery tickets ignore
//! a LeNet-style model's output layer.

use sparseburn::cli::train_config;
use sparseburn::run::RunConfig;
use sparseburn::sparse_core::{Distribution, Plan, SparseInit, SparseLayer};
use sparseburn::sparse_methods::{MethodConfig, OutputLayer};

fn config(args: &[&str]) -> RunConfig {
    let mut all = vec!["--dataset", "synthetic", "--epochs", "1"];
    all.extend_from_slice(args);
    train_config(&all).unwrap_or_else(|e| panic!("{args:?}: {e:#}"))
}

fn distribution(args: &[&str]) -> Distribution {
    config(args).sparsity.unwrap().distribution
}

const UNIFORM: Distribution = Distribution::Uniform {
    dense_first_layer: false,
};

#[test]
fn snip_and_grasp_rank_globally_unless_told_otherwise() {
    assert_eq!(distribution(&["--method", "snip"]), Distribution::Global);
    assert_eq!(distribution(&["--method", "grasp"]), Distribution::Global);
    assert_eq!(
        distribution(&["--method", "snip", "--distribution", "erk"]),
        Distribution::Erk { power_scale: 1.0 }
    );
    // RigL keeps ERK
    assert_eq!(
        distribution(&["--method", "rigl"]),
        Distribution::Erk { power_scale: 1.0 }
    );
}

#[test]
fn gmp_prunes_every_layer_of_lenet_to_the_same_sparsity() {
    let cfg = config(&["--method", "gmp", "--sparsity", "0.9"]);
    assert_eq!(cfg.sparsity.as_ref().unwrap().distribution, UNIFORM);
    let layers = vec![
        SparseLayer::linear("layers.0.weight", 784, 300),
        SparseLayer::linear("layers.1.weight", 300, 100),
        SparseLayer::linear("layers.2.weight", 100, 10),
    ];
    let plan = Plan::new(layers.clone(), cfg.sparsity_config(Default::default())).unwrap();
    // N·(1 − s) per layer
    let want: Vec<usize> = layers.iter().map(|l| l.numel() / 10).collect();
    assert_eq!(plan.counts(0.9).unwrap(), want);
    assert_eq!(want, vec![23520, 3000, 100]);
}

#[test]
fn mest_is_uniform_with_the_first_and_last_layers_dense() {
    let s = config(&["--method", "mest"]).sparsity.unwrap();
    assert_eq!(s.distribution, UNIFORM);
    assert!(s.filter.skip_first && s.filter.skip_last);
    let s = config(&[
        "--method",
        "mest",
        "--distribution",
        "erk",
        "--dense-first-layer=false",
        "--dense-last-layer=false",
    ])
    .sparsity
    .unwrap();
    assert_eq!(s.distribution, Distribution::Erk { power_scale: 1.0 });
    assert!(!s.filter.skip_first && !s.filter.skip_last);
}

#[test]
fn srste_keeps_the_classifier_dense_and_rigl_does_not() {
    assert!(config(&["--method", "srste"]).sparsity.unwrap().filter.skip_last);
    assert!(!config(&["--method", "rigl"]).sparsity.unwrap().filter.skip_last);
    assert!(
        config(&["--method", "rigl", "--dense-last-layer"])
            .sparsity
            .unwrap()
            .filter
            .skip_last
    );
}

#[test]
fn srigl_reinitialises_with_grad_flow_and_others_keep_their_weights() {
    let init = |args: &[&str]| config(args).sparsity.unwrap().sparse_init;
    assert_eq!(init(&["--method", "srigl"]), Some(SparseInit::GradFlow));
    assert_eq!(init(&["--method", "rigl"]), Some(SparseInit::None));
    assert_eq!(
        init(&["--method", "rigl", "--sparse-init", "sparse-kaiming"]),
        Some(SparseInit::SparseKaiming)
    );
    assert_eq!(
        init(&["--method", "srigl", "--sparse-init", "none"]),
        Some(SparseInit::None)
    );
}

#[test]
fn lottery_tickets_ignore_the_output_layer_of_lenet_style_models_only() {
    let output = |model: &str| match config(&["--method", "lth", "--model", model]).method {
        MethodConfig::Lth(c) => c.output_layer,
        other => panic!("not lth: {other:?}"),
    };
    assert_eq!(output("mlp"), OutputLayer::Ignore);
    assert_eq!(output("cnn"), OutputLayer::Ignore);
    assert_eq!(output("resnet18"), OutputLayer::Prune);
    let MethodConfig::Lth(c) = config(&["--method", "lth", "-m", "output_layer=prune"]).method else {
        panic!("not lth")
    };
    assert_eq!(c.output_layer, OutputLayer::Prune);
    assert_eq!(c.rounds, sparseburn::sparse_methods::LthConfig::new().rounds);
    assert_eq!(c.rounds, 3);
}
