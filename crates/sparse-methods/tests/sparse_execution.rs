//! Every registered method's `sparse_execution` property agrees with what the
//! method asks for when it trains (its `needs` over a run, its other
//! properties): a method that says it runs sparse never asks for dense
//! gradients, a reparameterisation, data at initialisation or a gradual
//! pruning schedule; one that needs the dense gradient at updates asks for it
//! on update steps only, and does ask.

use sparse_core::SparseExecution;
use sparse_methods::{BuildContext, registry};

#[test]
fn the_sparse_execution_property_matches_what_each_method_asks_for() {
    let steps = 2000;
    for m in registry::methods() {
        let method = m
            .default_config()
            .build(&BuildContext::new(steps))
            .expect("builds with its defaults");
        let needs: Vec<_> = (0..steps).map(|t| method.needs(t)).collect();
        let runs_sparse = method.sparse_execution() != SparseExecution::MaskedDenseOnly;
        if runs_sparse {
            assert!(method.reparameterization().is_none(), "{}", m.name);
            assert!(!method.needs_data_for_init(), "{}", m.name);
            assert!(!method.prunes_gradually() && method.rounds().is_none(), "{}", m.name);
            assert!(!method.is_dense(), "{}", m.name);
        }
        match method.sparse_execution() {
            SparseExecution::Supported => {
                assert!(needs.iter().all(|n| !n.grads), "{} asks for dense gradients", m.name);
            }
            SparseExecution::DenseGradientAtUpdates => {
                assert!(needs.iter().any(|n| n.grads), "{} never asks for gradients", m.name);
                assert!(
                    needs.iter().all(|n| !n.grads || n.update),
                    "{} asks for gradients outside update steps",
                    m.name
                );
            }
            SparseExecution::MaskedDenseOnly => {}
        }
    }
    // the split the docs state: which methods run sparse, and how
    let of = |name: &str| {
        registry::find(name)
            .and_then(|m| m.default_config().build(&BuildContext::new(steps)))
            .expect(name)
            .sparse_execution()
    };
    for name in ["static", "set", "mest"] {
        assert_eq!(of(name), SparseExecution::Supported, "{name}");
    }
    for name in ["rigl", "srigl"] {
        assert_eq!(of(name), SparseExecution::DenseGradientAtUpdates, "{name}");
    }
    for name in [
        "srste",
        "autosparse",
        "snip",
        "grasp",
        "gmp",
        "lth",
        "one-shot",
        "dense",
    ] {
        assert_eq!(of(name), SparseExecution::MaskedDenseOnly, "{name}");
    }
}

/// Which methods offer a compact rule (their topology update on the active
/// values alone) and with which settings: SET with random growth and no
/// noise, RigL with gradient growth and its drop noise, but not with a
/// gradient window or grow noise (those read gradients of other steps or
/// a noise vector over every position); every other method offers none.
#[test]
fn set_and_rigl_offer_their_compact_rules_under_their_defaults_only() {
    use sparse_core::{CompactRule, Growth, IntoMethod, UpdateSchedule};
    use sparse_methods::{RigL, RigLConfig};

    let steps = 2000;
    let rule = |name: &str| {
        registry::find(name)
            .and_then(|m| m.default_config().build(&BuildContext::new(steps)))
            .expect(name)
            .compact_rule()
    };
    let set = rule("set").expect("set offers a rule");
    assert_eq!(set.growth, Growth::Random);
    assert_eq!(set.drop_noise, 0.0);
    let rigl = RigLConfig::new();
    assert_eq!(
        rule("rigl"),
        Some(CompactRule {
            growth: Growth::Gradient,
            drop_noise: rigl.drop_noise
        })
    );
    assert!(rigl.drop_noise > 0.0, "RigL's reference breaks drop ties with noise");
    let with = |config: RigLConfig| {
        RigL::with_schedule(&config, UpdateSchedule::new(steps))
            .unwrap()
            .into_method()
            .compact_rule()
    };
    assert!(with(RigLConfig::new().with_grad_window(2)).is_none());
    assert!(with(RigLConfig::new().with_grow_noise(1e-4)).is_none());
    assert!(with(RigLConfig::new().with_drop_noise(0.0)).is_some());
    for m in registry::methods() {
        if !["set", "rigl"].contains(&m.name) {
            assert!(rule(m.name).is_none(), "{} offers a compact rule", m.name);
        }
    }
}
