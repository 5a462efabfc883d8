//! Bad input gets a typed error that names the problem and the fix.

use crate::common;

use common::{Net, RandomSwap, device};
use sparse_core::{Distribution, LayerFilter, OptimizerConfig, Pattern, SparseError, Sparsifier, SparsityConfig};

fn method() -> RandomSwap {
    RandomSwap {
        every: 2,
        fraction: 0.2,
        updates: 0,
        skip: false,
    }
}

fn build(model: &Net, config: SparsityConfig) -> Result<Sparsifier, SparseError> {
    Sparsifier::new(model, config, method(), &OptimizerConfig::sgd(0.9, 0.0))
}

#[test]
fn sparsity_outside_the_unit_interval() {
    let model = Net::new(&[(8, 4)], &[], &device());
    for s in [1.0, 1.5, -0.1, f64::NAN] {
        let err = build(&model, SparsityConfig::new().with_sparsity(s)).unwrap_err();
        assert!(matches!(err, SparseError::InvalidSparsity { .. }), "{s}: {err}");
        assert!(err.to_string().contains("[0, 1)"), "{err}");
    }
}

#[test]
fn density_outside_zero_one() {
    let model = Net::new(&[(8, 4)], &[], &device());
    for d in [0.0, 1.5, -1.0] {
        let dist = Distribution::Explicit {
            densities: vec![("linears.0.weight".into(), d)],
        };
        let err = build(&model, SparsityConfig::new().with_distribution(dist)).unwrap_err();
        assert!(matches!(err, SparseError::InvalidDensity { .. }), "{d}: {err}");
        assert!(err.to_string().contains("(0, 1]"), "{err}");
    }
}

#[test]
fn nm_that_does_not_divide_the_fan_in_names_the_layer() {
    let model = Net::new(&[(8, 4), (6, 4)], &[], &device());
    let err = build(
        &model,
        SparsityConfig::new()
            .with_sparsity(0.5)
            .with_pattern(Pattern::NM { n: 2, m: 4 }),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SparseError::NmDoesNotDivide { .. }), "{msg}");
    assert!(msg.contains("linears.1.weight") && msg.contains("fan-in 6"), "{msg}");
}

#[test]
fn nm_with_another_sparsity_says_which_to_use() {
    let model = Net::new(&[(8, 4)], &[], &device());
    let err = build(
        &model,
        SparsityConfig::new()
            .with_sparsity(0.9)
            .with_pattern(Pattern::NM { n: 2, m: 4 }),
    )
    .unwrap_err();
    assert!(err.to_string().contains("0.5"), "{err}");
}

#[test]
fn constant_fan_in_that_rounds_to_zero() {
    let model = Net::new(&[(10, 20)], &[], &device());
    let err = build(
        &model,
        SparsityConfig::new()
            .with_sparsity(0.97)
            .with_pattern(Pattern::ConstantFanIn)
            .with_distribution(Distribution::Uniform {
                dense_first_layer: false,
            }),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SparseError::RoundsToZero { .. }), "{msg}");
    assert!(
        msg.contains("linears.0.weight") && msg.contains("weights per neuron"),
        "{msg}"
    );
}

#[test]
fn unknown_weight_path() {
    let model = Net::new(&[(8, 4)], &[], &device());
    let filter = LayerFilter::new().with_exclude(vec!["encoder.*".into()]);
    let err = build(&model, SparsityConfig::new().with_filter(filter)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SparseError::UnknownLayer { .. }), "{msg}");
    assert!(msg.contains("encoder.*") && msg.contains("linears.0.weight"), "{msg}");
}

#[test]
fn state_from_another_model_is_rejected_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.safetensors");
    let small = Net::new(&[(8, 4)], &[], &device());
    let mut a = build(&small, SparsityConfig::new().with_sparsity(0.5)).unwrap();
    let small = a.init(small).unwrap();
    a.save(&path).unwrap();
    let _ = small;

    let other = Net::new(&[(8, 6)], &[], &device());
    let mut b = build(&other, SparsityConfig::new().with_sparsity(0.5)).unwrap();
    let other = b.init(other).unwrap();
    let before = b.masks().to_vec();
    let err = b.load(&path, &other).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SparseError::StateMismatch { .. }), "{msg}");
    assert!(
        msg.contains("linears.0.weight") && msg.contains("another model"),
        "{msg}"
    );
    assert_eq!(b.masks(), &before[..]);
}

#[test]
fn corrupt_or_missing_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = Net::new(&[(8, 4)], &[], &device());
    let mut s = build(&model, SparsityConfig::new().with_sparsity(0.5)).unwrap();
    let bad = dir.path().join("bad.safetensors");
    std::fs::write(&bad, b"not a state file at all").unwrap();
    assert!(matches!(
        s.load(&bad, &model).unwrap_err(),
        SparseError::CorruptState { .. }
    ));
    let good = dir.path().join("good.safetensors");
    s.save(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        s.load(&bad, &model).unwrap_err(),
        SparseError::CorruptState { .. }
    ));
    let missing = s.load(dir.path().join("missing"), &model).unwrap_err();
    assert!(matches!(missing, SparseError::Io { .. }), "{missing}");
}

/// Asks for the weights every step but reads the gradients too (a forgotten flag).
#[derive(Debug)]
struct ForgetsGrads;

impl sparse_core::Method for ForgetsGrads {
    fn name(&self) -> &'static str {
        "forgets-grads"
    }

    fn init(&mut self, _: &mut sparse_core::InitContext<'_>, _: &mut [sparse_core::Mask]) -> sparse_core::Result<()> {
        Ok(())
    }

    fn needs(&self, _: u64) -> sparse_core::Needs {
        sparse_core::Needs {
            update: true,
            ..sparse_core::Needs::NONE
        }
    }

    fn on_step(&mut self, ctx: &mut sparse_core::StepContext<'_>) -> sparse_core::Result<()> {
        let _ = ctx.weights()?;
        let _ = ctx.grads()?;
        Ok(())
    }
}

#[test]
fn data_a_method_did_not_ask_for_is_an_error_naming_the_flag() {
    let model = Net::new(&[(8, 4)], &[], &device());
    let config = SparsityConfig::new().with_sparsity(0.5);
    let mut sparse = Sparsifier::new(&model, config, ForgetsGrads, &OptimizerConfig::sgd(0.0, 0.0)).unwrap();
    let model = sparse.init(model).unwrap();
    let grads = model.grads(0);
    let err = sparse.step(model, grads, 0.1).unwrap_err();
    assert!(matches!(err, SparseError::NotRequested { step: 0, .. }), "{err}");
    assert!(err.to_string().contains("Needs::grads"), "{err}");
}
