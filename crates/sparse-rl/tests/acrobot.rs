//! Acrobot against the equations of motion, re-derived here independently in
//! mass-matrix form (Spong 1995; Sutton & Barto's book dynamics):
//!
//! ```text
//! [ d1  d2 ] [θ̈1]   [ −φ1                                ]
//! [ d2  d3 ] [θ̈2] = [ τ − m2·l1·lc2·θ̇1²·sin θ2 − φ2      ]     d3 = m2·lc2² + I2
//! ```
//!
//! solved as a 2×2 system, with a textbook RK4 written here, and against a fine
//! explicit-Euler integration of the same equations.

use std::f64::consts::PI;

use sparse_rl::acrobot::{MAX_VEL_1, MAX_VEL_2, is_terminal, rk4};
use sparse_rl::{Acrobot, EnvId, Environment, RlError};

fn accelerations(s: [f64; 4], torque: f64) -> [f64; 2] {
    let (m1, m2, l1, lc1, lc2, i1, i2, g) = (1.0, 1.0, 1.0, 0.5, 0.5, 1.0, 1.0, 9.8);
    let [t1, t2, v1, v2] = s;
    let d1 = m1 * lc1 * lc1 + m2 * (l1 * l1 + lc2 * lc2 + 2.0 * l1 * lc2 * t2.cos()) + i1 + i2;
    let d2 = m2 * (lc2 * lc2 + l1 * lc2 * t2.cos()) + i2;
    let d3 = m2 * lc2 * lc2 + i2;
    // gravity terms: cos(θ − π/2) = sin θ
    let phi2 = m2 * lc2 * g * (t1 + t2).sin();
    let phi1 = -m2 * l1 * lc2 * v2 * v2 * t2.sin() - 2.0 * m2 * l1 * lc2 * v2 * v1 * t2.sin()
        + (m1 * lc1 + m2 * l1) * g * t1.sin()
        + phi2;
    let r1 = -phi1;
    let r2 = torque - m2 * l1 * lc2 * v1 * v1 * t2.sin() - phi2;
    let det = d1 * d3 - d2 * d2;
    [(r1 * d3 - d2 * r2) / det, (d1 * r2 - d2 * r1) / det]
}

fn deriv(s: [f64; 4], torque: f64) -> [f64; 4] {
    let [a1, a2] = accelerations(s, torque);
    [s[2], s[3], a1, a2]
}

fn reference_rk4(s: [f64; 4], torque: f64, h: f64) -> [f64; 4] {
    let add = |a: [f64; 4], k: [f64; 4], c: f64| [a[0] + c * k[0], a[1] + c * k[1], a[2] + c * k[2], a[3] + c * k[3]];
    let k1 = deriv(s, torque);
    let k2 = deriv(add(s, k1, h / 2.0), torque);
    let k3 = deriv(add(s, k2, h / 2.0), torque);
    let k4 = deriv(add(s, k3, h), torque);
    let mut out = s;
    for i in 0..4 {
        out[i] += h * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]) / 6.0;
    }
    out
}

/// The environment step by the reference: RK4, wrap angles, clip velocities.
fn reference_step(s: [f64; 4], action: usize) -> [f64; 4] {
    let [t1, t2, v1, v2] = reference_rk4(s, action as f64 - 1.0, 0.2);
    let wrap = |a: f64| (a + PI).rem_euclid(2.0 * PI) - PI;
    [
        wrap(t1),
        wrap(t2),
        v1.clamp(-4.0 * PI, 4.0 * PI),
        v2.clamp(-9.0 * PI, 9.0 * PI),
    ]
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn one_step_from_rest_matches_the_published_numbers() {
    let mut env = Acrobot::new(0);
    env.reset_to([0.0; 4]);
    env.step(2).expect("step");
    let expected = [-0.013_263_0, 0.034_287_2, -0.128_661_9, 0.334_501_1];
    for (got, want) in env.state().iter().zip(expected) {
        assert!((got - want).abs() < 1e-6, "{:?} vs {expected:?}", env.state());
    }
}

#[test]
fn recorded_trajectories_match_the_independent_derivation_step_by_step() {
    let mut env = Acrobot::new(8);
    let mut actions = Lcg(5);
    env.reset();
    let mut max_speed: f64 = 0.0;
    for t in 0..2_000 {
        let before = env.state();
        // long runs of the same torque pump energy in, reaching the velocity clips
        let action = if t % 400 < 200 {
            (t / 7 % 2) * 2
        } else {
            (actions.next() % 3) as usize
        };
        let step = env.step(action).expect("step");
        let expected = reference_step(before, action);
        let got = env.state();
        for i in 0..4 {
            let mut diff = (got[i] - expected[i]).abs();
            if i < 2 {
                diff = diff.min(2.0 * PI - diff); // ±π are the same angle
            }
            assert!(diff < 1e-9, "t {t}, var {i}: {got:?} vs {expected:?}");
        }
        max_speed = max_speed.max(got[3].abs());
        assert!(got[0].abs() <= PI && got[1].abs() <= PI);
        assert!(got[2].abs() <= MAX_VEL_1 && got[3].abs() <= MAX_VEL_2);
        let terminal = -expected[0].cos() - (expected[0] + expected[1]).cos() > 1.0;
        assert_eq!(step.terminated, terminal, "t {t}");
        assert_eq!(step.reward, if terminal { 0.0 } else { -1.0 });
        let obs = [got[0].cos(), got[0].sin(), got[1].cos(), got[1].sin(), got[2], got[3]].map(|v| v as f32);
        assert_eq!(step.observation, obs.to_vec());
        if step.done() {
            env.reset();
        }
    }
    assert!(
        max_speed > 5.0,
        "the trajectory should swing hard (max |θ̇2| = {max_speed})"
    );
}

#[test]
fn rk4_agrees_with_a_fine_euler_integration() {
    let starts = [[0.0; 4], [0.3, -0.2, 0.5, -1.0], [2.0, 1.0, -3.0, 4.0]];
    for s in starts {
        for torque in [-1.0, 0.0, 1.0] {
            let coarse = rk4(s, torque, 0.2);
            let mut fine = s;
            let n = 1_000;
            for _ in 0..n {
                let d = deriv(fine, torque);
                for i in 0..4 {
                    fine[i] += 0.2 / n as f64 * d[i];
                }
            }
            for i in 0..4 {
                assert!(
                    (coarse[i] - fine[i]).abs() < 1e-2,
                    "{s:?} τ {torque}: {coarse:?} vs {fine:?}"
                );
            }
            if s == [0.0; 4] {
                for i in 0..4 {
                    assert!((coarse[i] - fine[i]).abs() < 1e-3, "{coarse:?} vs {fine:?}");
                }
            }
        }
    }
}

#[test]
fn termination_reward_and_velocity_clipping() {
    assert!(!is_terminal(&[0.0; 4]), "hanging down");
    assert!(is_terminal(&[PI, 0.0, 0.0, 0.0]), "straight up: height 2 > 1");
    // the tip at exactly height 1 (first link horizontal, second straight up) is not terminal
    assert!(!is_terminal(&[PI / 2.0, PI / 2.0 - 1e-6, 0.0, 0.0]));
    assert!(is_terminal(&[PI / 2.0 + 1e-3, PI / 2.0, 0.0, 0.0]));

    let mut env = Acrobot::new(1);
    env.reset_to([PI - 0.05, 0.0, 0.0, 0.0]);
    let step = env.step(1).expect("step");
    assert!(step.terminated && step.reward == 0.0);

    env.reset_to([0.0, 0.0, 20.0, 40.0]);
    env.step(2).expect("step");
    let s = env.state();
    assert_eq!(s[2].abs(), MAX_VEL_1, "{s:?}");
    assert_eq!(s[3].abs(), MAX_VEL_2, "{s:?}");
}

#[test]
fn hanging_without_torque_truncates_at_500_with_return_minus_500() {
    let mut env = Acrobot::new(2);
    env.reset_to([0.0; 4]);
    let mut ret = 0.0;
    for t in 1..=500 {
        let step = env.step(1).expect("step");
        ret += step.reward;
        assert_eq!(step.truncated, t == 500);
        assert!(!step.terminated);
    }
    assert_eq!(ret, -500.0);
    assert!(matches!(env.step(1), Err(RlError::NeedsReset { .. })));
    assert_eq!(EnvId::AcrobotV1.max_episode_steps(), Some(500));
    assert_eq!(EnvId::AcrobotV1.reward_threshold(), Some(-100.0));
}

#[test]
fn reset_draws_from_u_minus_01_01() {
    let mut env = Acrobot::new(4);
    let (mut lo, mut hi) = ([f64::MAX; 4], [f64::MIN; 4]);
    for _ in 0..2_000 {
        let obs = env.reset();
        let s = env.state();
        assert_eq!(obs.len(), 6);
        for i in 0..4 {
            assert!((-0.1..0.1).contains(&s[i]));
            lo[i] = lo[i].min(s[i]);
            hi[i] = hi[i].max(s[i]);
        }
    }
    assert!(
        lo.iter().all(|v| *v < -0.098) && hi.iter().all(|v| *v > 0.098),
        "{lo:?} {hi:?}"
    );
}

#[test]
fn a_restored_snapshot_continues_identically() {
    let mut env = Acrobot::new(6);
    env.reset();
    for a in [0, 2, 2, 1, 0] {
        env.step(a).expect("step");
    }
    let snap = env.snapshot();
    let run = |env: &mut Acrobot| {
        (0..700)
            .map(|t| {
                let step = env.step(t % 3).expect("step");
                let done = step.done();
                if done {
                    env.reset();
                }
                (step.observation, step.reward, done)
            })
            .collect::<Vec<_>>()
    };
    let expected = run(&mut env);
    let mut other = Acrobot::new(123);
    other.restore(&snap).expect("restore");
    assert_eq!(run(&mut other), expected);
    assert!(env.step(3).is_err(), "actions are 0, 1, 2");
}
