//! CartPole against the equations of motion, re-derived here independently:
//! the Lagrangian of a cart with a uniform pole (Barto et al. 1983, with the
//! frictionless terms) gives two linear equations in (ẍ, θ̈),
//!
//! ```text
//! M·ẍ + m·l·cos θ·θ̈ = F + m·l·θ̇²·sin θ
//! cos θ·ẍ + (4/3)·l·θ̈ = g·sin θ
//! ```
//!
//! which the test solves with Cramer's rule (the environment uses the
//! eliminated closed form), then integrates with explicit Euler.

use sparse_rl::cartpole::{CartPoleState, THETA_THRESHOLD, X_THRESHOLD};
use sparse_rl::{CartPole, EnvId, Environment, RlError};

/// Next state by the independent derivation above.
fn reference_step(s: [f64; 4], action: usize) -> [f64; 4] {
    let (g, mc, mp, l, tau) = (9.8, 1.0, 0.1, 0.5, 0.02);
    let big_m = mc + mp;
    let f = if action == 1 { 10.0 } else { -10.0 };
    let [x, xd, th, thd] = s;
    // [[a, b], [c, d]] · [ẍ, θ̈] = [e, h]
    let (a, b, c, d) = (big_m, mp * l * th.cos(), th.cos(), 4.0 / 3.0 * l);
    let (e, h) = (f + mp * l * thd * thd * th.sin(), g * th.sin());
    let det = a * d - b * c;
    let xacc = (e * d - b * h) / det;
    let thacc = (a * h - c * e) / det;
    [x + tau * xd, xd + tau * xacc, th + tau * thd, thd + tau * thacc]
}

fn as_array(s: CartPoleState) -> [f64; 4] {
    [s.x, s.x_dot, s.theta, s.theta_dot]
}

/// A tiny LCG for test action sequences (independent of the crate's generator).
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
    // ẍ = 9.756098, θ̈ = −14.634146 at rest with F = +10; after one Euler step only
    // the velocities have moved (positions use the old, zero velocities).
    let s = CartPoleState::default().step(1);
    assert_eq!((s.x, s.theta), (0.0, 0.0));
    assert!((s.x_dot - 0.195_122_0).abs() < 1e-7, "{s:?}");
    assert!((s.theta_dot + 0.292_682_9).abs() < 1e-7, "{s:?}");
    let left = CartPoleState::default().step(0);
    assert!((left.x_dot + 0.195_122_0).abs() < 1e-7 && (left.theta_dot - 0.292_682_9).abs() < 1e-7);
}

#[test]
fn recorded_trajectories_match_the_independent_derivation_step_by_step() {
    let mut env = CartPole::v1(3);
    let mut actions = Lcg(11);
    env.reset();
    let mut episodes = 0;
    for _ in 0..3_000 {
        let before = as_array(env.state());
        let action = (actions.next() % 2) as usize;
        let step = env.step(action).expect("valid step");
        let expected = reference_step(before, action);
        let got = as_array(env.state());
        for i in 0..4 {
            assert!(
                (got[i] - expected[i]).abs() <= 1e-12 * (1.0 + expected[i].abs()),
                "state {i}: {got:?} vs {expected:?}"
            );
        }
        let obs: Vec<f32> = expected.iter().map(|v| *v as f32).collect();
        assert_eq!(step.observation, obs);
        assert_eq!(
            step.reward, 1.0,
            "CartPole pays +1 on every step, the terminal one included"
        );
        let terminal = expected[0].abs() > 2.4 || expected[2].abs() > 12f64.to_radians();
        assert_eq!(step.terminated, terminal);
        if step.done() {
            episodes += 1;
            env.reset();
        }
    }
    assert!(episodes > 50, "random actions end episodes quickly ({episodes})");
}

#[test]
fn termination_is_strictly_beyond_the_thresholds() {
    assert!((X_THRESHOLD - 2.4).abs() < 1e-15);
    assert!((THETA_THRESHOLD - 12f64.to_radians()).abs() < 1e-15);
    let at = |x: f64, theta: f64| CartPoleState {
        x,
        theta,
        ..Default::default()
    };
    assert!(!at(2.4, 0.0).is_terminal() && !at(-2.4, 0.0).is_terminal());
    assert!(at(2.4 + 1e-9, 0.0).is_terminal() && at(-2.4 - 1e-9, 0.0).is_terminal());
    assert!(!at(0.0, THETA_THRESHOLD).is_terminal() && !at(0.0, -THETA_THRESHOLD).is_terminal());
    assert!(at(0.0, THETA_THRESHOLD + 1e-9).is_terminal());

    // through the environment: the cart runs off the track in one step
    let mut env = CartPole::v1(0);
    env.reset_to(CartPoleState {
        x: 2.39,
        x_dot: 1.0,
        ..Default::default()
    });
    let step = env.step(1).expect("step");
    assert!(step.terminated && !step.truncated && step.reward == 1.0);
    assert!(matches!(env.step(1), Err(RlError::NeedsReset { .. })));
}

/// A balancing controller (linear state feedback) that keeps the pole up.
fn balance(obs: &[f32]) -> usize {
    usize::from(0.1 * obs[0] + 0.5 * obs[1] + 10.0 * obs[2] + 2.0 * obs[3] > 0.0)
}

#[test]
fn v1_truncates_at_500_steps_and_v0_at_200() {
    for (mut env, limit) in [(CartPole::v1(5), 500u32), (CartPole::v0(5), 200)] {
        let mut obs = env.reset();
        let mut ret = 0.0;
        for t in 1..=limit {
            let step = env.step(balance(&obs)).expect("step");
            ret += step.reward;
            assert!(!step.terminated, "the controller keeps the pole up (step {t})");
            assert_eq!(step.truncated, t == limit, "step {t}");
            obs = step.observation;
        }
        assert_eq!(ret, f64::from(limit));
        assert!(env.step(0).is_err(), "no step after truncation without reset");
    }
    assert_eq!(EnvId::CartPoleV1.reward_threshold(), Some(475.0));
    assert_eq!(EnvId::CartPoleV0.reward_threshold(), Some(195.0));
}

#[test]
fn reset_draws_every_variable_from_u_minus_005_005() {
    let mut env = CartPole::v1(9);
    let (mut lo, mut hi, mut sum) = ([f64::MAX; 4], [f64::MIN; 4], [0.0; 4]);
    let n = 4_000;
    for _ in 0..n {
        env.reset();
        let s = as_array(env.state());
        for i in 0..4 {
            assert!((-0.05..0.05).contains(&s[i]), "{s:?}");
            lo[i] = lo[i].min(s[i]);
            hi[i] = hi[i].max(s[i]);
            sum[i] += s[i];
        }
    }
    for i in 0..4 {
        assert!(
            lo[i] < -0.049 && hi[i] > 0.049,
            "variable {i} spans [{}, {}]",
            lo[i],
            hi[i]
        );
        // mean of U(-a, a) has std a/sqrt(3n) = 4.6e-4 here
        assert!(
            (sum[i] / n as f64).abs() < 2e-3,
            "variable {i} mean {}",
            sum[i] / n as f64
        );
    }
}

#[test]
fn same_seed_same_episodes_other_seed_other_episodes() {
    let first = |seed| CartPole::v1(seed).reset();
    assert_eq!(first(1), first(1));
    assert_ne!(first(1), first(2));
}

#[test]
fn a_restored_snapshot_continues_identically_through_resets() {
    let mut env = CartPole::v1(21);
    let mut actions = Lcg(4);
    env.reset();
    let run = |env: &mut CartPole, actions: &mut Lcg, n: usize| {
        let mut log = Vec::new();
        for _ in 0..n {
            let step = env.step((actions.next() % 2) as usize).expect("step");
            let done = step.done();
            log.push((step.observation, step.reward, step.terminated, step.truncated));
            if done {
                log.push((env.reset(), 0.0, false, false));
            }
        }
        log
    };
    run(&mut env, &mut actions, 37);
    let json = serde_json::to_string(&env.snapshot()).expect("serialise");
    let saved_actions = actions.0;
    let expected = run(&mut env, &mut actions, 300);

    let mut restored = CartPole::v1(999);
    restored
        .restore(&serde_json::from_str(&json).expect("parse"))
        .expect("restore");
    let got = run(&mut restored, &mut Lcg(saved_actions), 300);
    assert_eq!(expected, got);

    let err = sparse_rl::Acrobot::new(0).restore(&env.snapshot()).err();
    assert!(matches!(err, Some(RlError::SnapshotMismatch { .. })), "{err:?}");
    assert!(CartPole::v0(0).restore(&env.snapshot()).is_err(), "v1 snapshot into v0");
}

#[test]
fn bad_calls_get_clear_errors() {
    let mut env = CartPole::v1(0);
    let msg = env.step(0).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("before the first reset") && msg.contains("reset()"),
        "{msg}"
    );
    env.reset();
    let msg = env.step(2).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("action 2 is outside the action set 0..2"), "{msg}");
}
