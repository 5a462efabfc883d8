//! MinAtar Breakout's rules, one test per rule, plus the two scripted
//! trajectories recorded from the reference implementation (see
//! `pruning-and-case-studies.md` §3.4), sticky actions and snapshots.

use sparse_rl::breakout::{Action, BALL, BRICK, BreakoutState, PADDLE, SIZE, TRAIL};
use sparse_rl::{Breakout, EnvId, Environment, RlError};

/// Start state, ball at column 0 moving down-right; no bricks unless asked.
fn empty_board(ball: (usize, usize), dir: usize, paddle: usize) -> BreakoutState {
    let mut s = BreakoutState::start(false);
    s.bricks = [[false; SIZE]; SIZE];
    s.ball_x = ball.0;
    s.ball_y = ball.1;
    s.last_x = ball.0;
    s.last_y = ball.1;
    s.ball_dir = dir;
    s.paddle = paddle;
    s
}

fn no_sticky(minimal: bool) -> Breakout {
    Breakout::new(0, minimal).with_sticky_actions(0.0)
}

#[test]
fn scripted_no_ops_lose_the_ball_on_step_6() {
    let mut env = no_sticky(true);
    env.reset_to(BreakoutState::start(false));
    let mut ret = 0.0;
    for t in 1..=5 {
        let step = env.step(0).expect("step");
        ret += step.reward;
        assert!(!step.done(), "step {t}");
    }
    assert_eq!((env.state().ball_x, env.state().ball_y), (5, 8));
    let step = env.step(0).expect("step");
    assert!(step.terminated && !step.truncated);
    assert_eq!((env.state().ball_x, env.state().ball_y), (6, 9));
    assert_eq!(ret + step.reward, 0.0);
    assert!(matches!(env.step(0), Err(RlError::NeedsReset { .. })));
}

#[test]
fn scripted_right_then_no_ops_bounce_off_paddle_and_wall_and_break_a_brick() {
    let mut env = no_sticky(true);
    env.reset_to(BreakoutState::start(false));
    let right = 2; // minimal set {n, l, r}
    let mut rewards = vec![env.step(right).expect("step").reward];
    for _ in 2..=11 {
        rewards.push(env.step(0).expect("step").reward);
        let s = env.state();
        match rewards.len() {
            6 => assert_eq!((s.ball_x, s.ball_y, s.ball_dir), (6, 8, 1), "paddle bounce"),
            10 => assert_eq!((s.ball_x, s.ball_y, s.ball_dir), (9, 4, 0), "wall bounce"),
            _ => {}
        }
    }
    let s = env.state();
    assert_eq!((s.ball_x, s.ball_y, s.ball_dir), (8, 4, 3), "brick bounce");
    assert_eq!(rewards.iter().sum::<f64>(), 1.0);
    assert_eq!(rewards[10], 1.0, "reward on step 11");
    assert!(!s.bricks[3][8], "brick (8, 3) removed");
    assert_eq!(s.brick_count(), 29);
}

#[test]
fn ceiling_wall_and_corner_bounces() {
    // ceiling: (5, 0) moving up-right → stays in row 0, now moving down-right
    let mut s = empty_board((5, 0), 1, 4);
    assert_eq!(s.act(Action::Noop), 0.0);
    assert_eq!((s.ball_x, s.ball_y, s.ball_dir), (6, 0, 2));
    // right wall: (9, 5) moving up-right → clamped to column 9, now moving up-left
    let mut s = empty_board((9, 5), 1, 4);
    s.act(Action::Noop);
    assert_eq!((s.ball_x, s.ball_y, s.ball_dir), (9, 4, 0));
    // left wall: (0, 5) moving down-left → column 0, now moving down-right
    let mut s = empty_board((0, 5), 3, 4);
    s.act(Action::Noop);
    assert_eq!((s.ball_x, s.ball_y, s.ball_dir), (0, 6, 2));
    // corner: (9, 0) moving up-right → both mirrors: down-left
    let mut s = empty_board((9, 0), 1, 4);
    s.act(Action::Noop);
    assert_eq!((s.ball_x, s.ball_y, s.ball_dir), (9, 0, 3));
    assert!(!s.terminal);
}

#[test]
fn a_brick_is_removed_for_one_point_and_the_ball_keeps_its_row() {
    let mut s = empty_board((4, 5), 0, 4);
    s.bricks[4][3] = true;
    assert_eq!(s.act(Action::Noop), 1.0);
    assert!(!s.bricks[4][3]);
    assert_eq!(
        (s.ball_x, s.ball_y, s.ball_dir),
        (3, 5, 3),
        "new column, old row, mirrored down"
    );
    assert!(s.strike);
    assert_eq!((s.last_x, s.last_y), (4, 5), "the trail is the old cell");
    // the next step hits no brick: the latch opens again
    s.act(Action::Noop);
    assert!(!s.strike);
}

#[test]
fn a_brick_hit_right_after_another_is_ignored_by_the_latch() {
    let mut s = empty_board((4, 5), 0, 4);
    s.strike = true; // the previous step hit a brick
    s.bricks[4][3] = true;
    assert_eq!(s.act(Action::Noop), 0.0);
    assert!(s.bricks[4][3], "the brick stays");
    assert_eq!(
        (s.ball_x, s.ball_y, s.ball_dir),
        (3, 4, 0),
        "the ball enters the brick's cell"
    );
    assert!(s.strike, "still on a brick: the latch stays closed");
    // moving on into another brick: still latched, no reward
    s.bricks[3][2] = true;
    assert_eq!(s.act(Action::Noop), 0.0);
    assert!(s.bricks[3][2]);
    // into an empty cell: latch opens; the following brick pays again
    s.act(Action::Noop);
    assert!(!s.strike && (s.ball_x, s.ball_y) == (1, 2));
    s.bricks[1][0] = true;
    assert_eq!(s.act(Action::Noop), 1.0);
}

#[test]
fn paddle_moves_one_cell_and_stops_at_the_walls() {
    let mut s = empty_board((0, 0), 2, 4);
    s.act(Action::Left);
    assert_eq!(s.paddle, 3);
    for a in [Action::Up, Action::Down, Action::Fire, Action::Noop] {
        s.act(a);
        assert_eq!(s.paddle, 3, "{a:?} does not move the paddle");
    }
    let mut s = empty_board((0, 0), 2, 4);
    for _ in 0..6 {
        s.act(Action::Left);
    }
    assert_eq!(s.paddle, 0);
    let mut s = empty_board((0, 0), 2, 4);
    for _ in 0..6 {
        s.act(Action::Right);
    }
    assert_eq!(s.paddle, 9);
}

#[test]
fn paddle_bounces_straight_back_or_reverses_else_the_game_ends() {
    // the ball comes down over the paddle (old column = paddle): vertical mirror
    let mut s = empty_board((4, 8), 2, 4);
    s.act(Action::Noop);
    assert_eq!((s.ball_x, s.ball_y, s.ball_dir), (5, 8, 1));
    assert!(!s.terminal);
    // the ball lands on the paddle (new column = paddle): both directions reversed
    let mut s = empty_board((3, 8), 2, 4);
    s.act(Action::Noop);
    assert_eq!((s.ball_x, s.ball_y, s.ball_dir), (4, 8, 0));
    assert!(!s.terminal);
    // the paddle moves under the ball first (paddle before ball)
    let mut s = empty_board((4, 8), 2, 3);
    s.act(Action::Right);
    assert!(!s.terminal && s.ball_dir == 1);
    // missed: terminal, the ball ends in row 9, no more changes after that
    let mut s = empty_board((6, 8), 2, 2);
    s.act(Action::Noop);
    assert!(s.terminal);
    assert_eq!((s.ball_x, s.ball_y), (7, 9));
    let before = s.clone();
    assert_eq!(s.act(Action::Left), 0.0);
    assert_eq!(s, before);
}

#[test]
fn a_cleared_board_gets_three_new_rows_when_the_ball_reaches_the_bottom() {
    let mut s = empty_board((5, 8), 2, 6);
    assert_eq!(s.brick_count(), 0);
    s.act(Action::Noop);
    assert_eq!(s.brick_count(), 30);
    for (y, row) in s.bricks.iter().enumerate() {
        assert!(row.iter().all(|b| *b == (1..4).contains(&y)), "row {y}");
    }
    // the refill happens on reaching row 9 even when the ball is lost
    let mut s = empty_board((5, 8), 2, 0);
    s.act(Action::Noop);
    assert!(s.terminal && s.brick_count() == 30);
    // not while bricks remain
    let mut s = empty_board((5, 8), 2, 6);
    s.bricks[0][0] = true;
    s.act(Action::Noop);
    assert_eq!(s.brick_count(), 1);
}

#[test]
fn observation_has_the_four_channels_channel_first() {
    let mut env = no_sticky(true);
    let obs = env.reset_to(BreakoutState::start(true));
    assert_eq!(env.observation_shape(), vec![4, 10, 10]);
    assert_eq!(obs.len(), 400);
    let at = |c: usize, y: usize, x: usize| obs[(c * 10 + y) * 10 + x];
    assert_eq!(at(PADDLE, 9, 4), 1.0);
    assert_eq!(at(BALL, 3, 9), 1.0);
    assert_eq!(at(TRAIL, 3, 9), 1.0, "trail starts under the ball");
    let channel_sum = |c: usize| obs[c * 100..(c + 1) * 100].iter().sum::<f32>();
    assert_eq!(
        [channel_sum(0), channel_sum(1), channel_sum(2), channel_sum(3)],
        [1.0, 1.0, 1.0, 30.0]
    );
    assert!((1..4).all(|y| (0..10).all(|x| at(BRICK, y, x) == 1.0)));
    assert!(obs.iter().all(|v| *v == 0.0 || *v == 1.0));
}

#[test]
fn both_starts_occur_and_v0_v1_map_actions() {
    let mut env = Breakout::new(3, true);
    let mut starts = [0; 2];
    for _ in 0..200 {
        env.reset();
        let s = env.state();
        assert_eq!(s.ball_y, 3);
        match (s.ball_x, s.ball_dir) {
            (0, 2) => starts[0] += 1,
            (9, 3) => starts[1] += 1,
            other => panic!("unexpected start {other:?}"),
        }
    }
    assert!(starts[0] > 70 && starts[1] > 70, "{starts:?}");

    let mut v1 = no_sticky(true);
    let mut v0 = no_sticky(false);
    assert_eq!((v1.num_actions(), v0.num_actions()), (3, 6));
    assert_eq!(EnvId::BreakoutV0.max_episode_steps(), None);
    v1.reset_to(BreakoutState::start(false));
    v0.reset_to(BreakoutState::start(false));
    v1.step(2).expect("right in v1");
    v0.step(3).expect("right in v0");
    assert_eq!(v1.state().paddle, 5);
    assert_eq!(v0.state().paddle, 5);
    v0.step(2).expect("up in v0");
    assert_eq!(v0.state().paddle, 5);
    assert!(matches!(v1.step(3), Err(RlError::InvalidAction { actions: 3, .. })));
}

/// Sticky actions repeat the previous action with probability 0.1: with random
/// left/right choices, the paddle goes the other way than chosen in 0.1 · ½ of steps.
#[test]
fn sticky_actions_repeat_the_last_action_about_one_step_in_ten() {
    let mut env = Breakout::new(17, true);
    env.reset();
    let mut choice = 0x2545_f491_4f6c_dd1du64;
    let (mut counted, mut overridden) = (0u32, 0u32);
    while counted < 20_000 {
        choice ^= choice << 13;
        choice ^= choice >> 7;
        choice ^= choice << 17;
        let right = choice & 1 == 1;
        let before = env.state().paddle;
        let step = env.step(if right { 2 } else { 1 }).expect("step");
        let after = env.state().paddle;
        if (1..9).contains(&before) {
            counted += 1;
            if (after > before) != right {
                overridden += 1;
            }
        }
        if step.done() {
            env.reset();
        }
    }
    let rate = f64::from(overridden) / f64::from(counted);
    // expected 0.05, binomial std 0.0015
    assert!((0.043..0.057).contains(&rate), "override rate {rate}");
}

#[test]
fn a_restored_snapshot_continues_identically_with_sticky_actions() {
    let mut env = Breakout::new(5, false);
    env.reset();
    let run = |env: &mut Breakout, t0: usize, n: usize| {
        let mut log = Vec::new();
        for t in t0..t0 + n {
            let step = env.step(t * 7 % 6).expect("step");
            log.push((step.observation.clone(), step.reward, step.terminated));
            if step.done() {
                log.push((env.reset(), 0.0, false));
            }
        }
        log
    };
    run(&mut env, 0, 25);
    let json = serde_json::to_string(&env.snapshot()).expect("serialise");
    let expected = run(&mut env, 25, 400);
    let mut other = Breakout::new(77, false);
    other
        .restore(&serde_json::from_str(&json).expect("parse"))
        .expect("restore");
    assert_eq!(run(&mut other, 25, 400), expected);
    assert!(
        Breakout::new(0, true).restore(&env.snapshot()).is_err(),
        "v0 snapshot into v1"
    );
}
