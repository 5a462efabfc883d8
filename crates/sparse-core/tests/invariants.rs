//! Property tests: after every step of a run with random topology changes, for
//! random layer shapes, densities, patterns and optimizers,
//! * each layer's nonzero count equals the plan's target exactly;
//! * pruned weights, their (masked) gradients and their optimizer moments are exactly 0;
//! * the pattern holds (every N:M group, every neuron's fan-in, every block).

use crate::common;

use common::{Net, RandomSwap, device, values};
use proptest::prelude::*;
use sparse_core::{Distribution, OptimizerConfig, Pattern, SparseError, Sparsifier, SparsityConfig};
use std::sync::atomic::{AtomicUsize, Ordering};

fn pattern_strategy() -> impl Strategy<Value = Pattern> {
    prop_oneof![
        Just(Pattern::Unstructured),
        (1usize..=3).prop_map(|n| Pattern::NM { n, m: 4 }),
        Just(Pattern::NM { n: 1, m: 2 }),
        Just(Pattern::ConstantFanIn),
        Just(Pattern::Block { rows: 2, cols: 2 }),
        Just(Pattern::Channel),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    linears: Vec<(usize, usize)>,
    convs: Vec<(usize, usize, usize)>,
    sparsity: f64,
    pattern: Pattern,
    distribution: Distribution,
    adam: bool,
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec((1usize..=6, 1usize..=5), 1..=3),
        prop::collection::vec((1usize..=2, 1usize..=4, prop_oneof![Just(1usize), Just(3)]), 0..=2),
        0.05f64..0.95,
        pattern_strategy(),
        0usize..3,
        any::<bool>(),
    )
        .prop_map(|(lin, conv, sparsity, pattern, dist, adam)| {
            let linears = lin.into_iter().map(|(i, o)| (4 * i, 2 * o)).collect();
            let convs = conv.into_iter().map(|(i, o, k)| (4 * i, 2 * o, k)).collect();
            let sparsity = match &pattern {
                Pattern::NM { n, m } => 1.0 - *n as f64 / *m as f64,
                _ => sparsity,
            };
            let distribution = match (dist, &pattern) {
                (0, _) => Distribution::Erk { power_scale: 1.0 },
                (1, _)
                | (2, Pattern::NM { .. } | Pattern::ConstantFanIn | Pattern::Block { .. } | Pattern::Channel) => {
                    Distribution::Uniform {
                        dense_first_layer: false,
                    }
                }
                _ => Distribution::Global,
            };
            Case {
                linears,
                convs,
                sparsity,
                pattern,
                distribution,
                adam,
            }
        })
}

fn run_case(case: &Case) -> Result<(), TestCaseError> {
    let device = device();
    let mut model = Net::new(&case.linears, &case.convs, &device);
    let config = SparsityConfig::new()
        .with_sparsity(case.sparsity)
        .with_pattern(case.pattern.clone())
        .with_distribution(case.distribution.clone())
        .with_seed(7);
    let optimizer = if case.adam {
        OptimizerConfig::adam()
    } else {
        OptimizerConfig::sgd(0.9, 1e-4)
    };
    let method = RandomSwap {
        every: 3,
        fraction: 0.3,
        updates: 0,
        skip: false,
    };
    let mut sparse = match Sparsifier::new(&model, config, method, &optimizer) {
        Ok(s) => s,
        // a structured pattern at a tiny density can round a small layer to zero: a clear error, by design
        Err(SparseError::RoundsToZero { .. }) => {
            SKIPPED.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        Err(e) => return Err(TestCaseError::fail(format!("unexpected error: {e}"))),
    };
    RAN.fetch_add(1, Ordering::Relaxed);
    model = sparse.init(model).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let targets = sparse.plan().counts(case.sparsity).unwrap();
    let global_total = (((1.0 - case.sparsity) * sparse.report().numel() as f64).round()) as usize;

    for step in 0..10u64 {
        let grads = model.grads(step);
        model = sparse
            .step(model, grads, 0.05)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let check_grads = sparse.mask_gradients(&model, model.grads(100 + step)).unwrap();

        let layers = sparse.layers().to_vec();
        if sparse.plan().is_global() {
            prop_assert_eq!(sparse.report().nonzeros(), global_total);
        }
        for (l, layer) in layers.iter().enumerate() {
            let mask = &sparse.masks()[l];
            if !sparse.plan().is_global() {
                prop_assert_eq!(mask.count_ones(), targets[l], "layer {} step {}", layer.path, step);
            }
            if let Err(e) = case.pattern.verify(layer, mask) {
                return Err(TestCaseError::fail(format!("step {step}: {e}")));
            }
            check_pattern(&case.pattern, &layer.shape, mask.count_ones(), &|i| mask.get(i))
                .map_err(|e| TestCaseError::fail(format!("{} step {step}: {e}", layer.path)))?;
            let w = weight_values(&model, &layer.path);
            let g = grad_values(&check_grads, &model, &layer.path);
            let moments: Vec<Vec<f32>> = sparse
                .optimizer()
                .state_of(layer.param_id)
                .ok_or_else(|| TestCaseError::fail(format!("no optimizer state for {}", layer.path)))?
                .into_iter()
                .map(values)
                .collect();
            for i in (0..layer.numel()).filter(|&i| !mask.get(i)) {
                prop_assert_eq!(w[i], 0.0, "weight {} of {} step {}", i, layer.path, step);
                prop_assert_eq!(g[i], 0.0, "grad {} of {} step {}", i, layer.path, step);
                for m in &moments {
                    prop_assert_eq!(m[i], 0.0, "moment {} of {} step {}", i, layer.path, step);
                }
            }
            // active weights did train: not all of them are still zero
            prop_assert!(mask.count_ones() == 0 || (0..layer.numel()).any(|i| mask.get(i) && w[i] != 0.0));
        }
    }
    Ok(())
}

fn weight_values(model: &Net, path: &str) -> Vec<f32> {
    let (kind, rest) = path.split_once('.').unwrap();
    let idx: usize = rest.split('.').next().unwrap().parse().unwrap();
    match kind {
        "linears" => values(model.linears[idx].weight.val()),
        _ => values(model.convs[idx].weight.val()),
    }
}

fn grad_values(grads: &burn::optim::GradientsParams, model: &Net, path: &str) -> Vec<f32> {
    let (kind, rest) = path.split_once('.').unwrap();
    let idx: usize = rest.split('.').next().unwrap().parse().unwrap();
    match kind {
        "linears" => values(grads.get::<2>(model.linears[idx].weight.id).unwrap()),
        _ => values(grads.get::<4>(model.convs[idx].weight.id).unwrap()),
    }
}

/// Cases that ran, and cases skipped because a structured pattern rounded a layer to 0.
static RAN: AtomicUsize = AtomicUsize::new(0);
static SKIPPED: AtomicUsize = AtomicUsize::new(0);

/// The pattern's constraint, checked on the raw tensor layout (independently of
/// `Pattern::verify`). Linear weights are `[in, out]`, conv weights
/// `[out, in, kh, kw]`; a neuron's fan-in runs channel-last, `j = position · c_in + channel`.
fn check_pattern(pattern: &Pattern, shape: &[usize], count: usize, on: &dyn Fn(usize) -> bool) -> Result<(), String> {
    let (neurons, cin, positions) = match shape {
        [i, o] => (*o, *i, 1),
        [o, i, kh, kw] => (*o, *i, kh * kw),
        _ => return Err(format!("unexpected shape {shape:?}")),
    };
    let fan_in = cin * positions;
    let at = |o: usize, j: usize| -> bool {
        let (p, c) = (j / cin, j % cin);
        if shape.len() == 2 {
            on(c * neurons + o)
        } else {
            on((o * cin + c) * positions + p)
        }
    };
    let row = |o: usize| (0..fan_in).filter(|&j| at(o, j)).count();
    match *pattern {
        Pattern::Unstructured => {}
        Pattern::NM { n, m } => {
            for o in 0..neurons {
                for g in 0..fan_in / m {
                    let active = (g * m..(g + 1) * m).filter(|&j| at(o, j)).count();
                    if active != n {
                        return Err(format!("neuron {o} group {g}: {active} of {m} active, want {n}"));
                    }
                }
            }
        }
        Pattern::ConstantFanIn => {
            if !count.is_multiple_of(neurons) {
                return Err(format!("{count} nonzeros over {neurons} neurons"));
            }
            for o in 0..neurons {
                if row(o) != count / neurons {
                    return Err(format!("neuron {o} has fan-in {}, want {}", row(o), count / neurons));
                }
            }
        }
        Pattern::Block { rows, cols } => {
            for o0 in (0..neurons).step_by(rows) {
                for j0 in (0..fan_in).step_by(cols) {
                    let first = at(o0, j0);
                    let mixed = (o0..o0 + rows).any(|o| (j0..j0 + cols).any(|j| at(o, j) != first));
                    if mixed {
                        return Err(format!("block at neuron {o0}, fan-in {j0} is partly active"));
                    }
                }
            }
        }
        Pattern::Channel => {
            for o in 0..neurons {
                if row(o) != 0 && row(o) != fan_in {
                    return Err(format!("neuron {o} is partly active ({} of {fan_in})", row(o)));
                }
            }
        }
    }
    Ok(())
}

#[test]
fn invariants_hold_after_every_step() {
    // every op is a dispatch on wgpu (lavapipe in CI): fewer cases there
    let wgpu = std::env::var("SPARSEBURN_DEVICE").is_ok_and(|d| d == "wgpu");
    let config = ProptestConfig {
        cases: if wgpu { 32 } else { 128 },
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    if let Err(e) = runner.run(&case_strategy(), |case| run_case(&case)) {
        panic!("{e}");
    }
    let (ran, skipped) = (RAN.load(Ordering::Relaxed), SKIPPED.load(Ordering::Relaxed));
    assert!(
        ran >= 3 * skipped,
        "only {ran} cases ran, {skipped} rounded a layer to zero"
    );
}

#[test]
fn the_independent_pattern_check_rejects_broken_masks() {
    // linear [in = 4, out = 2], flat index i·2 + o
    let on = |set: &'static [usize]| move |i: usize| set.contains(&i);
    let nm = Pattern::NM { n: 2, m: 4 };
    assert!(check_pattern(&nm, &[4, 2], 4, &on(&[0, 2, 1, 3])).is_ok());
    assert!(check_pattern(&nm, &[4, 2], 4, &on(&[0, 2, 4, 3])).is_err());
    let fan = Pattern::ConstantFanIn;
    assert!(check_pattern(&fan, &[4, 2], 2, &on(&[0, 7])).is_ok());
    assert!(check_pattern(&fan, &[4, 2], 2, &on(&[0, 2])).is_err());
    let channel = Pattern::Channel;
    assert!(check_pattern(&channel, &[4, 2], 4, &on(&[1, 3, 5, 7])).is_ok());
    assert!(check_pattern(&channel, &[4, 2], 4, &on(&[0, 3, 5, 7])).is_err());
    // conv [out = 2, in = 2, 1, 2]: fan-in j = position·2 + channel
    let block = Pattern::Block { rows: 2, cols: 2 };
    assert!(check_pattern(&block, &[2, 2, 1, 2], 4, &on(&[0, 2, 4, 6])).is_ok());
    assert!(check_pattern(&block, &[2, 2, 1, 2], 4, &on(&[0, 1, 4, 5])).is_err());
}
