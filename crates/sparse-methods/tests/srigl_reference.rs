//! SRigL against condensed-sparsity's `RigLConstFanScheduler` (issue 13): each
//! test isolates one rule on a small layer whose outcome was worked out by hand
//! from the reference's rules; the threshold and fan-in are recomputed here from
//! the reference's formulas (`τ = max(1, ⌊γ·⌊T/n⌋⌋)`, `k = ⌊T/(n − ablated)⌋`).

use crate::common;

use sparse_core::method::{Method, StepContext};
use sparse_core::{Distribution, Mask, Pattern, Plan, SparseLayer, SparsityConfig, UpdateSchedule};
use sparse_methods::SRigLConfig;
use sparse_methods::srigl::{AblatedBudget, AblationFanIn, AblationRules, SRigL, SalientGrow, update_layer};

/// A layer of `neurons × fan_in` with `w[o][j]` active where given (others
/// inactive, 0) and gradient `g(o, j) = 0.001·(fan_in·o + j + 1)` plus overrides.
struct Case {
    layer: SparseLayer,
    mask: Mask,
    w: Vec<f32>,
    g: Vec<f32>,
}

impl Case {
    fn new(fan_in: usize, neurons: usize, rows: &[&[f32]], overrides: &[(usize, usize, f32)]) -> Self {
        let layer = SparseLayer::linear("fc.weight", fan_in, neurons);
        let n = layer.numel();
        let (mut mask, mut w, mut g) = (Mask::zeros(n), vec![0.0; n], vec![0.0; n]);
        for o in 0..neurons {
            for j in 0..fan_in {
                g[layer.flat(o, j)] = 0.001 * (fan_in * o + j + 1) as f32;
            }
        }
        for (o, row) in rows.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                mask.set(layer.flat(o, j), true);
                w[layer.flat(o, j)] = v;
            }
        }
        for &(o, j, v) in overrides {
            g[layer.flat(o, j)] = v;
        }
        Self { layer, mask, w, g }
    }

    fn rows(&self, mask: &Mask) -> Vec<Vec<usize>> {
        (0..self.layer.neurons())
            .map(|o| {
                (0..self.layer.fan_in())
                    .filter(|&j| mask.get(self.layer.flat(o, j)))
                    .collect()
            })
            .collect()
    }
}

fn rules(gamma_sal: f64) -> AblationRules {
    AblationRules::of(&SRigLConfig::new().with_gamma_sal(gamma_sal))
}

/// `τ = max(1, ⌊γ·K⌋)`.
fn tau(gamma: f64, k: usize) -> usize {
    ((gamma * k as f64).floor() as usize).max(1)
}

fn range(a: usize, b: usize) -> Vec<usize> {
    (a..b).collect()
}

#[test]
fn the_ablation_threshold_uses_the_fan_in_before_any_ablation() {
    // spec S1: 6 neurons, fan-in 10, T = 24; neurons 4 and 5 already ablated
    let rows: [&[f32]; 4] = [
        &[0.90, -0.85, 0.80, -0.75, 0.70, -0.65],
        &[0.60, -0.58, 0.56, -0.54, 0.52, -0.50],
        &[0.48, -0.46, 0.44, -0.42, 0.05, -0.04],
        &[0.40, -0.38, 0.03, -0.02, 0.01, -0.009],
    ];
    let overrides = [
        (0, 6, 0.99),
        (0, 7, 0.98),
        (0, 8, 0.97),
        (0, 9, 0.96),
        (1, 6, 0.95),
        (1, 7, 0.94),
        (2, 8, 0.34),
        (2, 9, 0.35),
        (3, 6, 0.26),
        (3, 7, 0.27),
        (3, 8, 0.28),
        (3, 9, 0.29),
    ];
    let c = Case::new(10, 6, &rows, &overrides);
    let (target, gamma) = (24, 0.5);
    let out = update_layer(&c.layer, &c.mask, &c.w, &c.g, 0.25, target, &rules(gamma)).unwrap();
    let expected_tau = tau(gamma, target / 6); // K = ⌊24/6⌋ = 4 → τ = 2
    assert_eq!(out.tau, expected_tau);
    assert_eq!(out.ablated, vec![4, 5]);
    assert_eq!(out.k, target / (6 - 2));
    let want = vec![
        range(0, 6),
        range(0, 6),
        vec![0, 1, 2, 3, 8, 9],
        vec![0, 1, 6, 7, 8, 9],
        vec![],
        vec![],
    ];
    assert_eq!(c.rows(&out.mask), want);

    // the current fan-in (24 active / 4 live neurons = 6) raises τ to 3 and ablates neuron 3
    let current = AblationRules {
        fan_in: AblationFanIn::Current,
        ..rules(gamma)
    };
    let out = update_layer(&c.layer, &c.mask, &c.w, &c.g, 0.25, target, &current).unwrap();
    assert_eq!(out.tau, tau(gamma, 24 / 4));
    assert_eq!(out.ablated, vec![3, 4, 5]);
    assert_eq!(out.k, target / 3);
    let rows = c.rows(&out.mask);
    assert_eq!(rows[0], range(0, 8));
    assert_eq!(rows[1], range(0, 8));
    assert_eq!(rows[2], vec![0, 1, 2, 3, 4, 5, 8, 9]);

    // all three rules as before issue 13
    let before = AblationRules {
        fan_in: AblationFanIn::Current,
        salient: SalientGrow::Unkept,
        budget: AblatedBudget::Discard,
        ..rules(gamma)
    };
    let rows = c.rows(
        &update_layer(&c.layer, &c.mask, &c.w, &c.g, 0.25, target, &before)
            .unwrap()
            .mask,
    );
    assert_eq!(rows[2], vec![0, 1, 2, 3, 6, 7, 8, 9]);
}

#[test]
fn the_gradient_salient_set_runs_over_all_weights() {
    // spec S2: 6 neurons, fan-in 8, T = 24, j = 0..3 active in every row
    let rows: [&[f32]; 6] = [
        &[0.95, -0.90, 0.85, -0.80],
        &[0.75, -0.70, 0.65, -0.60],
        &[0.55, -0.50, 0.48, -0.46],
        &[0.44, -0.42, 0.40, -0.38],
        &[0.36, -0.34, 0.02, -0.01],
        &[0.05, -0.04, 0.03, -0.009],
    ];
    let overrides = [
        (0, 0, 0.99),
        (0, 1, 0.98),
        (0, 2, 0.97),
        (0, 3, 0.96),
        (1, 0, 0.95),
        (1, 1, 0.94),
        (5, 4, 0.60),
        (5, 5, 0.59),
        (5, 6, 0.58),
        (5, 7, 0.57),
        (4, 4, 0.56),
        (4, 5, 0.55),
    ];
    let c = Case::new(8, 6, &rows, &overrides);
    let (target, gamma) = (24, 0.5);
    // the 6 largest |g| are kept weights: counts [4, 4, 4, 4, 2, 0], τ = 2
    let out = update_layer(&c.layer, &c.mask, &c.w, &c.g, 0.25, target, &rules(gamma)).unwrap();
    assert_eq!(out.tau, tau(gamma, target / 6));
    assert_eq!(out.ablated, vec![5]);
    assert_eq!(out.k, target / 5);
    let rows = c.rows(&out.mask);
    assert!(rows[..4].iter().all(|r| *r == range(0, 4)), "{rows:?}");
    assert_eq!(rows[4], vec![0, 1, 4, 5]);
    assert!(rows[5].is_empty());
    assert_eq!(out.mask.count_ones(), 5 * (target / 5)); // 20: the reference floors
    // gradient saliency only among unkept weights: nobody is ablated
    let unkept = AblationRules {
        salient: SalientGrow::Unkept,
        ..rules(gamma)
    };
    let out = update_layer(&c.layer, &c.mask, &c.w, &c.g, 0.25, target, &unkept).unwrap();
    assert!(out.ablated.is_empty());
    assert_eq!(c.rows(&out.mask)[5], range(4, 8));
    assert_eq!(out.mask.count_ones(), target);
}

#[test]
fn ablated_neurons_budget_goes_to_the_surviving_neurons() {
    // spec S3: 6 neurons, fan-in 6, T = 12, γ = 1 (τ = K = 2), f = 0.5
    let rows: [&[f32]; 6] = [
        &[0.9, -0.8],
        &[0.7, -0.6],
        &[0.5, -0.03],
        &[0.4, -0.02],
        &[0.05, -0.04],
        &[0.06, -0.01],
    ];
    let overrides = [
        (0, 2, 0.99),
        (0, 3, 0.98),
        (0, 4, 0.94),
        (1, 2, 0.97),
        (1, 3, 0.96),
        (2, 2, 0.95),
    ];
    let c = Case::new(6, 6, &rows, &overrides);
    let target = 12;
    let out = update_layer(&c.layer, &c.mask, &c.w, &c.g, 0.5, target, &rules(1.0)).unwrap();
    assert_eq!(out.tau, tau(1.0, target / 6));
    assert_eq!(out.ablated, vec![3, 4, 5]);
    assert_eq!(out.k, target / 3);
    // the survivors keep all 6 of their nonzero weights, −0.03 included
    let want = vec![
        vec![0, 1, 2, 3],
        vec![0, 1, 2, 3],
        vec![0, 1, 2, 5],
        vec![],
        vec![],
        vec![],
    ];
    assert_eq!(c.rows(&out.mask), want);
    let discard = AblationRules {
        budget: AblatedBudget::Discard,
        ..rules(1.0)
    };
    let out = update_layer(&c.layer, &c.mask, &c.w, &c.g, 0.5, target, &discard).unwrap();
    assert_eq!(c.rows(&out.mask)[2], vec![0, 2, 4, 5]);
}

/// The largest τ over 5 updates of an 8 × 16 layer (T = 32, γ = 0.5) whose
/// neurons 0–3 have small weights and gradients, so they die.
fn largest_tau(fan_in_rule: AblationFanIn) -> usize {
    let layer = SparseLayer::linear("fc.weight", 16, 8);
    let rules = AblationRules {
        fan_in: fan_in_rule,
        ..rules(0.5)
    };
    let mut rng = sparse_core::Rng::new(5);
    let mut mask = Mask::zeros(layer.numel());
    for o in 0..8 {
        for j in 0..4 {
            mask.set(layer.flat(o, j), true);
        }
    }
    let mut largest = 0;
    for _ in 0..5 {
        let scale = |i: usize, below: usize, small: f32| if layer.neuron_of(i) < below { small } else { 1.0 };
        let w: Vec<f32> = (0..layer.numel())
            .map(|i| {
                if mask.get(i) {
                    (0.1 + rng.next_f32()) * scale(i, 4, 0.01)
                } else {
                    0.0
                }
            })
            .collect();
        let g: Vec<f32> = (0..layer.numel())
            .map(|i| rng.next_f32() * scale(i, 4, 0.001))
            .collect();
        let out = update_layer(&layer, &mask, &w, &g, 0.3, 32, &rules).unwrap();
        assert_eq!(out.k, 32 / (8 - out.ablated.len()));
        largest = largest.max(out.tau);
        mask = out.mask;
    }
    largest
}

#[test]
fn the_threshold_never_rises_over_several_updates() {
    // reference: τ ≤ max(1, ⌊0.5·⌊32/8⌋⌋) = 2 at every update; the current fan-in
    // grows as neurons die and takes τ above it
    assert!(largest_tau(AblationFanIn::Initial) <= tau(0.5, 32 / 8));
    assert!(largest_tau(AblationFanIn::Current) > tau(0.5, 32 / 8));
}

/// One step of `srigl` at `step` with gradients `grads` (one layer).
fn step(srigl: &mut SRigL, plan: &Plan, step: u64, masks: &mut [Mask], weights: &mut [Vec<f32>], grads: &[Vec<f32>]) {
    let needs = srigl.needs(step);
    assert!(needs.grads, "step {step} should read gradients");
    let mut ctx = StepContext::new(step, plan, 1, masks).with_grads(grads);
    if needs.update {
        ctx = ctx.with_weights(weights);
    }
    srigl.on_step(&mut ctx).unwrap();
}

#[test]
fn the_grow_score_is_the_mean_gradient_over_the_window() {
    // one neuron of fan-in 4 (plus a second neuron, so the layer is sparse):
    // j 0, 1 active; the drop of 1 weight removes j 1; j 2 and 3 compete to grow
    let layer = SparseLayer::linear("fc.weight", 4, 2);
    let config = SparsityConfig::new()
        .with_sparsity(0.5)
        .with_pattern(Pattern::ConstantFanIn)
        .with_distribution(Distribution::Uniform {
            dense_first_layer: false,
        });
    let plan = Plan::new(vec![layer.clone()], config).unwrap();
    let schedule = UpdateSchedule::new(100).with_interval(4);
    let grown = |window: u64| -> Vec<usize> {
        let srigl_config = SRigLConfig::new()
            .with_ablation(false)
            .with_grad_window(window)
            .with_drop_schedule(sparse_core::DropSchedule::Constant)
            .with_drop_fraction(0.25); // ⌊0.25·4⌋ = 1 weight
        let mut srigl = SRigL::with_schedule(&srigl_config, schedule.clone()).unwrap();
        let mut mask = Mask::zeros(8);
        for (o, j) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            mask.set(layer.flat(o, j), true);
        }
        let mut w = vec![0.0; 8];
        for (o, j, v) in [(0, 0, 0.9), (0, 1, 0.1), (1, 0, 0.8), (1, 1, 0.7)] {
            w[layer.flat(o, j)] = v;
        }
        let grads = |a: f32, b: f32| {
            let mut g = vec![0.0; 8];
            g[layer.flat(0, 2)] = a;
            g[layer.flat(0, 3)] = b;
            vec![g]
        };
        let mut masks = vec![mask];
        let mut weights = vec![w];
        if window == 2 {
            step(&mut srigl, &plan, 3, &mut masks, &mut weights, &grads(1.0, 0.2));
        }
        step(&mut srigl, &plan, 4, &mut masks, &mut weights, &grads(0.0, 0.6));
        (0..4).filter(|&j| masks[0].get(layer.flat(0, j))).collect()
    };
    // window 2: |(1.0 + 0.0)/2| = 0.5 > |(0.2 + 0.6)/2| = 0.4 → j 2 grows
    assert_eq!(grown(2), vec![0, 2]);
    // window 1: the update step alone, 0.0 < 0.6 → j 3 grows
    assert_eq!(grown(1), vec![0, 3]);
}

#[test]
fn grad_window_longer_than_the_interval_is_refused() {
    let err = SRigL::with_schedule(
        &SRigLConfig::new().with_grad_window(5),
        UpdateSchedule::new(100).with_interval(4),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("grad_window") && err.contains("ΔT"), "{err}");
}

#[test]
fn srigl_redraws_its_sparse_layers_with_grad_flow_by_default() {
    // 2000 → 8 at 50%: every neuron has k = 1000 active inputs, std 2/k = 0.002
    // (Burn's own init would give 1/√(3·2000) ≈ 0.0129)
    let device = common::device();
    let model = common::Mlp::new(&[2000, 8, 4], false, &device);
    let config = SparsityConfig::new()
        .with_sparsity(0.5)
        .with_pattern(Pattern::ConstantFanIn)
        .with_distribution(Distribution::Uniform {
            dense_first_layer: false,
        });
    let init = |config: SparsityConfig| {
        let srigl = SRigL::with_schedule(&SRigLConfig::new(), UpdateSchedule::new(10)).unwrap();
        let opt = sparse_core::OptimizerConfig::sgd(0.0, 0.0);
        let mut sparse = sparse_core::Sparsifier::new(&model, config, srigl, &opt).unwrap();
        let model = sparse.init(model.clone()).unwrap();
        let mask = sparse.masks()[0].clone();
        let w: Vec<f64> = mask.iter_ones().map(|f| model.weight(0)[f] as f64).collect();
        let n = w.len() as f64;
        (w.iter().map(|v| v * v).sum::<f64>() / n).sqrt()
    };
    let rms = init(config.clone());
    assert!((rms / (2.0 / 1000.0) - 1.0).abs() < 0.1, "rms {rms}");
    let kept = init(config.with_sparse_init(Some(sparse_core::SparseInit::None)));
    let burn = 1.0 / (3.0f64 * 2000.0).sqrt();
    assert!((kept / burn - 1.0).abs() < 0.1, "rms {kept}, Burn's init {burn}");
}
