//! Schedules against their formulas at chosen steps.

use sparse_core::{DropFraction, Ramp, SparsitySchedule, UpdateSchedule};

#[test]
fn cubic_follows_zhu_and_gupta() {
    // s_i = 0, s_f = 0.9, t0 = 100, n = 10, ΔT = 50
    let s = SparsitySchedule::cubic(0.0, 0.9, 100, 10, 50);
    let f = |k: f64| 0.9 + (0.0 - 0.9) * (1.0 - k / 10.0f64).powi(3);
    assert_eq!(s.sparsity_at(0), 0.0);
    assert_eq!(s.sparsity_at(99), 0.0);
    assert!((s.sparsity_at(100) - f(0.0)).abs() < 1e-12);
    assert!(
        (s.sparsity_at(149) - f(0.0)).abs() < 1e-12,
        "frozen between grid points"
    );
    assert!((s.sparsity_at(150) - f(1.0)).abs() < 1e-12);
    assert!((s.sparsity_at(150) - 0.2439).abs() < 1e-12);
    assert!((s.sparsity_at(375) - f(5.0)).abs() < 1e-12);
    assert!((s.sparsity_at(600) - 0.9).abs() < 1e-12);
    assert!((s.sparsity_at(10_000) - 0.9).abs() < 1e-12);
    assert!(s.is_change_step(150) && !s.is_change_step(151) && s.is_change_step(600) && !s.is_change_step(650));
}

#[test]
fn linear_and_exponential_ramps() {
    let lin = SparsitySchedule::new(0.8, 100)
        .with_ramp(Ramp::Linear)
        .with_interval(10);
    assert!((lin.sparsity_at(50) - 0.4).abs() < 1e-12);
    let exp = SparsitySchedule::new(0.99, 100)
        .with_ramp(Ramp::Exponential)
        .with_interval(10);
    // density 1 -> 0.01 geometrically: at half way 0.1
    assert!((exp.sparsity_at(50) - 0.9).abs() < 1e-12);
}

#[test]
fn cosine_drop_fraction_follows_rigl_eq_2() {
    let updates = UpdateSchedule::new(1000).with_interval(100);
    let f = DropFraction::Cosine { alpha: 0.3 };
    for t in [0u64, 100, 250, 500, 900, 1000, 1200] {
        let expected = 0.3 / 2.0 * (1.0 + (std::f64::consts::PI * (t.min(1000) as f64) / 1000.0).cos());
        assert!((f.at(updates.progress(t)) - expected).abs() < 1e-12, "t={t}");
    }
    assert!((f.at(0.5) - 0.15).abs() < 1e-12);
    let e = DropFraction::ExponentialK { alpha: 0.3, k: 3.0 };
    assert!((e.at(0.5) - 0.3 * 0.125).abs() < 1e-12);
}

#[test]
fn updates_run_every_delta_t_until_the_end() {
    let u = UpdateSchedule::rigl(1000);
    assert_eq!(u.end, 750);
    let steps: Vec<u64> = (0..1000).filter(|&t| u.is_update_step(t)).collect();
    assert_eq!(steps, vec![0, 100, 200, 300, 400, 500, 600, 700]);
    let late = UpdateSchedule::new(500).with_begin(150).with_interval(100);
    assert_eq!(
        (0..1000).filter(|&t| late.is_update_step(t)).collect::<Vec<_>>(),
        vec![150, 250, 350, 450]
    );
}

#[test]
fn a_ramp_whose_end_is_off_the_grid_still_reaches_its_target() {
    let s = SparsitySchedule::new(0.9, 1000)
        .with_ramp(Ramp::Linear)
        .with_interval(300);
    assert!(s.is_change_step(900) && s.is_change_step(1000) && !s.is_change_step(1200));
    assert!((s.sparsity_at(999) - 0.81).abs() < 1e-12);
    assert!((s.sparsity_at(1000) - 0.9).abs() < 1e-12);
}
