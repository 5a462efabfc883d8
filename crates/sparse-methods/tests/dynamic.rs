//! RigL and SET: exact drop/grow sets on fixed tensors, grown weights at 0 with

#![allow(clippy::needless_range_loop)] // index loops mirror the formulas
//! reset optimizer state, the schedule window, and exchanges inside N:M,
//! constant fan-in and block patterns.

use crate::common;

use common::{Data, Mlp, device, host};
use sparse_core::method::{Method, StepContext};
use sparse_core::{
    DropSchedule, Mask, OptimizerConfig, Pattern, Plan, SparseLayer, Sparsifier, SparsityConfig, UpdateSchedule,
};
use sparse_methods::{RigL, RigLConfig, Set, SetConfig};

fn linear(i: usize, o: usize) -> SparseLayer {
    SparseLayer::linear("fc.weight", i, o)
}

fn rigl(drop: f64, begin: u64, end: u64, every: u64) -> RigL {
    let updates = UpdateSchedule::new(end).with_begin(begin).with_interval(every);
    let config = RigLConfig::new()
        .with_drop_fraction(drop)
        .with_drop_schedule(DropSchedule::Constant);
    RigL::with_schedule(&config, updates).unwrap()
}

/// Runs one `on_step` of `method` at `step` on a single layer.
fn one_update(method: &mut dyn Method, plan: &Plan, step: u64, w: Vec<f32>, g: Vec<f32>, mask: Mask) -> Mask {
    let mut weights = vec![w];
    let grads = vec![g];
    let mut masks = vec![mask];
    let mut ctx = StepContext::new(step, plan, 1, &mut masks)
        .with_weights(&mut weights)
        .with_grads(&grads);
    method.on_step(&mut ctx).unwrap();
    masks.remove(0)
}

fn plan(layer: SparseLayer, sparsity: f64, pattern: Pattern) -> Plan {
    let config = SparsityConfig::new()
        .with_sparsity(sparsity)
        .with_pattern(pattern)
        .with_distribution(sparse_core::Distribution::Uniform {
            dense_first_layer: false,
        });
    Plan::new(vec![layer], config).unwrap()
}

#[test]
fn rigl_drops_smallest_magnitudes_and_grows_largest_gradients() {
    // Linear [in=3, out=2]: flat index = i*2 + o
    let p = plan(linear(3, 2), 1.0 / 3.0, Pattern::Unstructured);
    let w = vec![0.5, -0.1, 0.0, 0.9, -0.3, 0.0];
    let g = vec![0.1, 0.2, 0.7, 0.05, -0.3, -0.6];
    let mask = Mask::from_indices(6, [0, 1, 3, 4]);
    // n_drop = ⌊0.5·4⌋ = 2: drop |w| 0.1 (1) and 0.3 (4); keep {0, 3};
    // grow the two largest |g| among {1, 2, 4, 5}: 0.7 (2) and 0.6 (5)
    let out = one_update(&mut rigl(0.5, 0, 100, 10), &p, 0, w, g, mask);
    assert_eq!(out.iter_ones().collect::<Vec<_>>(), vec![0, 2, 3, 5]);
}

#[test]
fn rigl_ties_keep_the_lower_index_and_may_regrow_a_dropped_weight() {
    let p = plan(linear(4, 1), 0.5, Pattern::Unstructured);
    let w = vec![0.2, 0.2, 0.0, 0.2];
    let g = vec![0.0, 0.0, 0.1, 0.9];
    let mask = Mask::from_indices(4, [0, 1, 3]);
    // without drop noise (rigl's TF2 code, jaxpruner): drop 1 of 3 (fraction
    // 0.34): equal magnitudes, the highest index (3) goes; grow the largest |g|
    // among {2, 3}: weight 3 itself comes straight back
    let config = RigLConfig::new()
        .with_drop_fraction(0.34)
        .with_drop_schedule(DropSchedule::Constant)
        .with_drop_noise(0.0);
    let mut method = RigL::with_schedule(&config, UpdateSchedule::new(100).with_interval(10)).unwrap();
    let out = one_update(&mut method, &p, 0, w, g, mask);
    assert_eq!(out.iter_ones().collect::<Vec<_>>(), vec![0, 1, 3]);
}

#[test]
fn set_keeps_the_largest_magnitudes_and_regrows_at_random() {
    let p = plan(linear(10, 10), 0.5, Pattern::Unstructured);
    let mut rng = sparse_core::Rng::new(4);
    let w: Vec<f32> = (0..100).map(|_| rng.normal() as f32).collect();
    let mask = Mask::from_indices(100, (0..100).filter(|i| i % 2 == 0));
    let updates = UpdateSchedule::new(100).with_interval(10);
    let mut set = Set::with_schedule(&SetConfig::new(), updates).unwrap();
    let w_masked: Vec<f32> = (0..100).map(|i| if mask.get(i) { w[i] } else { 0.0 }).collect();
    let out = one_update(&mut set, &p, 10, w_masked, vec![0.0; 100], mask.clone());
    // expected survivors: the 35 largest |w| of the 50 active
    let mut active: Vec<usize> = mask.iter_ones().collect();
    active.sort_by(|&a, &b| w[b].abs().total_cmp(&w[a].abs()).then(a.cmp(&b)));
    let survivors: Vec<usize> = active[..35].to_vec();
    assert!(survivors.iter().all(|&i| out.get(i)));
    assert_eq!(out.count_ones(), 50);
    let grown: Vec<usize> = out.iter_ones().filter(|i| !survivors.contains(i)).collect();
    assert_eq!(grown.len(), 15);
    // regrowth is random: it is not just the 15 dropped weights
    assert!(grown.iter().any(|i| !mask.get(*i)));
}

/// `(step, mask before, mask after, weights before, gradient, weights after)`.
type StepCheck<'a> = dyn FnMut(u64, &Mask, &Mask, &[f32], &[f32], &[f32]) + 'a;

fn run_hook(method: impl Method + 'static, steps: u64, check: &mut StepCheck<'_>) {
    run_hook_with(method, &OptimizerConfig::sgd(0.9, 1e-3), steps, check);
}

/// Trains through the hook and, after every step, checks that pruned weights and
/// every optimizer moment of pruned and newly grown weights are exactly 0.
fn run_hook_with(method: impl Method + 'static, optim: &OptimizerConfig, steps: u64, check: &mut StepCheck<'_>) {
    let device = device();
    let data = Data::new(64, 8, 4, 0.5, 1);
    let mut model = Mlp::new(&[8, 4], false, &device);
    let config = SparsityConfig::new().with_sparsity(0.5).with_seed(5);
    let mut sparse = Sparsifier::new(&model, config, method, optim).unwrap();
    model = sparse.init(model).unwrap();
    for t in 0..steps {
        let before = sparse.masks()[0].clone();
        let grads = model.grads(&data);
        let g = host(grads.get::<2>(model.weight_id(0)).unwrap());
        let w_before = model.weight(0);
        model = sparse.step(model, grads, 0.1).unwrap();
        let after = sparse.masks()[0].clone();
        let w_after = model.weight(0);
        check(t, &before, &after, &w_before, &g, &w_after);
        let slots = sparse
            .optimizer()
            .state_of(model.weight_id(0))
            .unwrap_or_else(|| panic!("no optimizer state after step {t}"));
        assert!(!slots.is_empty(), "optimizer state without moments");
        for (s, slot) in slots.into_iter().enumerate() {
            let m = host(slot);
            assert_eq!(m.len(), after.len());
            for i in 0..after.len() {
                if !after.get(i) {
                    assert_eq!(m[i], 0.0, "moment {s} of pruned weight {i} at step {t}");
                    assert_eq!(w_after[i], 0.0, "pruned weight {i} at step {t}");
                }
            }
            for i in after.iter_ones().filter(|&i| !before.get(i)) {
                assert_eq!(m[i], 0.0, "moment {s} of grown weight {i} at step {t}");
                assert_eq!(w_after[i], 0.0, "grown weight {i} at step {t}");
            }
        }
    }
}

#[test]
fn rigl_through_the_hook_exact_sets_zero_grown_weights_and_schedule_window() {
    let mut updates = 0;
    run_hook(rigl(0.25, 5, 20, 5), 30, &mut |t, before, after, w, g, w_after| {
        let is_update = t == 5 || t == 10 || t == 15;
        if !is_update {
            assert_eq!(before, after, "mask changed at step {t}");
            return;
        }
        updates += 1;
        assert_eq!(before.count_ones(), after.count_ones(), "count changed at step {t}");
        // independent expectation: keep the largest |w| of the active, grow the largest |g| elsewhere
        let n_drop = before.count_ones() / 4;
        let mut active: Vec<usize> = before.iter_ones().collect();
        active.sort_by(|&a, &b| w[b].abs().total_cmp(&w[a].abs()).then(a.cmp(&b)));
        let kept: Vec<usize> = active[..active.len() - n_drop].to_vec();
        let mut rest: Vec<usize> = (0..w.len()).filter(|i| !kept.contains(i)).collect();
        rest.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()).then(a.cmp(&b)));
        let mut expected: Vec<usize> = kept.iter().copied().chain(rest[..n_drop].iter().copied()).collect();
        expected.sort_unstable();
        assert_eq!(after.iter_ones().collect::<Vec<_>>(), expected, "step {t}");
        for i in after.iter_ones().filter(|&i| !before.get(i)) {
            assert_eq!(w_after[i], 0.0, "grown weight {i} starts at 0 (step {t})");
        }
    });
    assert_eq!(updates, 3);
}

#[test]
fn rigl_with_the_optimizer_step_on_update_steps_and_adam_keeps_the_invariants() {
    let config = RigLConfig::new()
        .with_drop_fraction(0.25)
        .with_drop_schedule(DropSchedule::Constant)
        .with_skip_weight_update(false);
    let updates = UpdateSchedule::new(20).with_begin(5).with_interval(5);
    let mut changed = 0;
    let mut moved_kept = 0;
    run_hook_with(
        RigL::with_schedule(&config, updates).unwrap(),
        &OptimizerConfig::adam(),
        30,
        &mut |t, before, after, w, _, w_after| {
            assert_eq!(before.count_ones(), after.count_ones(), "count changed at step {t}");
            if before != after {
                changed += 1;
                assert!([5, 10, 15].contains(&t), "mask changed at step {t}");
                // the optimizer step ran before the update: surviving weights moved
                moved_kept += before.and(after).iter_ones().filter(|&i| w_after[i] != w[i]).count();
            }
        },
    );
    assert_eq!(changed, 3);
    assert!(moved_kept > 0, "no optimizer step on update steps");
}

#[test]
fn set_through_the_hook_keeps_counts_and_zero_grown_weights() {
    let updates = UpdateSchedule::new(12).with_begin(4).with_interval(4);
    let set = Set::with_schedule(&SetConfig::new(), updates).unwrap();
    run_hook(set, 16, &mut |t, before, after, _, _, w_after| {
        assert_eq!(before.count_ones(), after.count_ones());
        if t != 4 && t != 8 {
            assert_eq!(before, after, "mask changed at step {t}");
        } else {
            assert_ne!(before, after, "no exchange at step {t}");
        }
        for i in 0..after.len() {
            if !after.get(i) {
                assert_eq!(w_after[i], 0.0);
            }
        }
    });
}

/// Exchanges inside a pattern keep its constraint and are not a plain re-selection.
fn exchange_inside(method: &mut dyn Method, pattern: Pattern, sparsity: f64) {
    let layer = linear(16, 8);
    let p = plan(layer.clone(), sparsity, pattern.clone());
    let count = p.counts(sparsity).unwrap()[0];
    let mut rng = sparse_core::Rng::new(9);
    let scores: Vec<f32> = (0..128).map(|_| rng.next_f32()).collect();
    let mask = pattern.select(&layer, &scores, count);
    let w: Vec<f32> = (0..128)
        .map(|i| if mask.get(i) { rng.normal() as f32 } else { 0.0 })
        .collect();
    let g: Vec<f32> = (0..128).map(|_| rng.normal() as f32).collect();
    let out = one_update(method, &p, 10, w.clone(), g, mask.clone());
    pattern.verify(&layer, &out).unwrap();
    assert_eq!(out.count_ones(), mask.count_ones());
    // a plain re-selection by magnitude would keep the old mask (inactive weights are 0)
    let reselect = pattern.select(&layer, &w.iter().map(|x| x.abs()).collect::<Vec<_>>(), count);
    assert_eq!(reselect, mask);
    assert_ne!(out, mask, "{pattern:?}: the exchange changed nothing");
    // and it moved about 30% of the units
    let moved = out.and_not(&mask).count_ones() as f64 / mask.count_ones() as f64;
    assert!((0.1..=0.31).contains(&moved), "{pattern:?}: moved {moved}");
}

#[test]
fn rigl_under_2_4_drops_layer_wide_and_regrows_inside_each_group() {
    // Linear [in = 16, out = 8]: neuron o's fan-in j sits at flat index j·8 + o;
    // groups are j = 0..4, 4..8, … of each neuron
    let layer = linear(16, 8);
    let pattern = Pattern::NM { n: 2, m: 4 };
    let p = plan(layer.clone(), 0.5, pattern.clone());
    let mut rng = sparse_core::Rng::new(3);
    let mut mask = Mask::zeros(128);
    for o in 0..8 {
        for g in 0..4 {
            let first = rng.below(3) as usize; // two of the group's four: first and first + 1
            for j in [g * 4 + first, g * 4 + first + 1] {
                mask.set(j * 8 + o, true);
            }
        }
    }
    let w: Vec<f32> = (0..128)
        .map(|i| if mask.get(i) { rng.normal() as f32 } else { 0.0 })
        .collect();
    let grad: Vec<f32> = (0..128).map(|_| rng.normal() as f32).collect();
    let out = one_update(&mut rigl(0.3, 0, 100, 10), &p, 0, w.clone(), grad.clone(), mask.clone());

    // drop ⌊0.3 · 64⌋ = 19 smallest |w| of the layer
    let mut active: Vec<usize> = mask.iter_ones().collect();
    active.sort_by(|&a, &b| w[b].abs().total_cmp(&w[a].abs()).then(a.cmp(&b)));
    let kept: Vec<usize> = active[..64 - 19].to_vec();
    let mut expected = kept.clone();
    for o in 0..8 {
        for g in 0..4 {
            let group: Vec<usize> = (g * 4..g * 4 + 4).map(|j| j * 8 + o).collect();
            let lost = group.iter().filter(|&&f| mask.get(f) && !kept.contains(&f)).count();
            let mut free: Vec<usize> = group.into_iter().filter(|f| !kept.contains(f)).collect();
            free.sort_by(|&a, &b| grad[b].abs().total_cmp(&grad[a].abs()).then(a.cmp(&b)));
            expected.extend(&free[..lost]);
        }
    }
    expected.sort_unstable();
    assert_eq!(out.iter_ones().collect::<Vec<_>>(), expected);
}

#[test]
fn exchanges_inside_nm_constant_fan_in_and_blocks() {
    let set = || {
        let updates = UpdateSchedule::new(100).with_interval(10);
        Set::with_schedule(&SetConfig::new(), updates).unwrap()
    };
    for (pattern, sparsity) in [
        (Pattern::NM { n: 2, m: 4 }, 0.5),
        (Pattern::ConstantFanIn, 0.75),
        (Pattern::Block { rows: 2, cols: 2 }, 0.75),
        (Pattern::Channel, 0.5),
    ] {
        exchange_inside(&mut rigl(0.3, 0, 100, 10), pattern.clone(), sparsity);
        exchange_inside(&mut set(), pattern, sparsity);
    }
}

#[test]
fn rigl_needs_follow_the_window_and_skip_switch() {
    let r = rigl(0.3, 100, 1000, 100);
    assert!(!r.needs(0).update && r.needs(100).update && r.needs(900).update && !r.needs(1000).update);
    assert!(r.needs(100).skip_optimizer);
    let c = RigLConfig::new().with_grad_window(3).with_skip_weight_update(false);
    let r = RigL::with_schedule(&c, UpdateSchedule::new(1000)).unwrap();
    assert!(r.needs(98).grads && r.needs(99).grads && r.needs(100).grads && !r.needs(97).grads);
    assert!(!r.needs(100).skip_optimizer);
}
