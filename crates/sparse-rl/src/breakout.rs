//! MinAtar Breakout (Young & Tian 2019, "MinAtar: An Atari-Inspired Testbed for
//! Thorough and Reproducible Reinforcement Learning Experiments", arXiv 1903.03176),
//! following the rules of the reference `minatar/environments/breakout.py` and the
//! sticky actions of `minatar/environment.py`.
//!
//! The game is a 10×10 grid with four channels: paddle 0, ball 1, trail 2 (the
//! ball's previous cell), brick 3. Rows 1–3 start full of bricks, the paddle sits
//! in row 9 at column 4, and the ball starts in row 3, at random either at column
//! 0 moving down-right or at column 9 moving down-left. The ball moves diagonally;
//! directions `0..4` are `(dx, dy) = (−1,−1), (+1,−1), (+1,+1), (−1,+1)` with `y`
//! growing downwards. One step (paddle first, then the ball):
//!
//! 1. actions `l`/`r` move the paddle one cell (clamped to 0…9); others do nothing;
//! 2. the ball proposes `old + dir`; past a side wall it is clamped and mirrored
//!    horizontally;
//! 3. above the top row it is put in row 0 and mirrored vertically; otherwise on a
//!    brick, unless the previous step also hit a brick (a latch), the brick is
//!    removed for +1, the ball stays in its old row and is mirrored vertically (on
//!    a latched step the ball enters the brick's cell and nothing else happens);
//!    otherwise on reaching row 9: the three brick rows are refilled if no brick is
//!    left, then if the ball came down over the paddle it bounces straight back
//!    (vertical mirror), else if it lands on the paddle it reverses both
//!    directions, else the episode terminates.
//!
//! Sticky actions (probability 0.1 by default): with that probability the previous
//! action is repeated instead. One random number is drawn on every step whatever
//! the probability, and the previous action is not cleared by a reset (as in the
//! reference). MinAtar's difficulty ramping does not affect Breakout, so there is
//! nothing to ramp. The game has no time limit.
//!
//! Observations are the four channels as `f32` 0/1, channel-first `[4, 10, 10]`
//! (the reference returns `[10, 10, 4]`; a convolution over NCHW wants this order).

use serde::{Deserialize, Serialize};

use crate::env::{EnvId, EnvSnapshot, Environment, EpisodeClock, Step};
use crate::error::Result;
use crate::rng::{EnvRng, RngState};

/// Grid side.
pub const SIZE: usize = 10;
/// Channels of an observation.
pub const CHANNELS: usize = 4;
/// Paddle channel.
pub const PADDLE: usize = 0;
/// Ball channel.
pub const BALL: usize = 1;
/// Trail channel.
pub const TRAIL: usize = 2;
/// Brick channel.
pub const BRICK: usize = 3;
/// MinAtar's default sticky-action probability.
pub const STICKY_ACTIONS: f64 = 0.1;

/// MinAtar's six actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// No-op.
    Noop,
    /// Left.
    Left,
    /// Up (no effect in Breakout).
    Up,
    /// Right.
    Right,
    /// Down (no effect in Breakout).
    Down,
    /// Fire (no effect in Breakout).
    Fire,
}

/// MinAtar's action order `[n, l, u, r, d, f]`.
pub const FULL_ACTIONS: [Action; 6] = [
    Action::Noop,
    Action::Left,
    Action::Up,
    Action::Right,
    Action::Down,
    Action::Fire,
];

/// The minimal action set `{n, l, r}` (full-set indices 0, 1, 3).
pub const MINIMAL_ACTIONS: [Action; 3] = [Action::Noop, Action::Left, Action::Right];

/// Mirror at a side wall.
const MIRROR_X: [usize; 4] = [1, 0, 3, 2];
/// Mirror at the ceiling, a brick, or straight back off the paddle.
const MIRROR_Y: [usize; 4] = [3, 2, 1, 0];
/// Reverse both directions (ball lands on the paddle).
const REVERSE: [usize; 4] = [2, 3, 0, 1];

/// The game state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakoutState {
    /// Ball column.
    pub ball_x: usize,
    /// Ball row.
    pub ball_y: usize,
    /// Ball direction, `0..4`.
    pub ball_dir: usize,
    /// Paddle column.
    pub paddle: usize,
    /// Bricks, `[row][column]`.
    pub bricks: [[bool; SIZE]; SIZE],
    /// The previous step hit a brick (the latch).
    pub strike: bool,
    /// Ball column before the last step (the trail).
    pub last_x: usize,
    /// Ball row before the last step.
    pub last_y: usize,
    /// The ball passed the paddle.
    pub terminal: bool,
}

impl BreakoutState {
    /// The start state with the ball at column 0 (`right == false`, moving
    /// down-right) or column 9 (moving down-left).
    pub fn start(right: bool) -> Self {
        let (ball_x, ball_dir) = if right { (9, 3) } else { (0, 2) };
        let mut bricks = [[false; SIZE]; SIZE];
        for row in &mut bricks[1..4] {
            *row = [true; SIZE];
        }
        Self {
            ball_x,
            ball_y: 3,
            ball_dir,
            paddle: 4,
            bricks,
            strike: false,
            last_x: ball_x,
            last_y: 3,
            terminal: false,
        }
    }

    /// Number of bricks left.
    pub fn brick_count(&self) -> usize {
        self.bricks.iter().flatten().filter(|b| **b).count()
    }

    /// Applies one (non-sticky) action; returns the reward.
    pub fn act(&mut self, action: Action) -> f64 {
        if self.terminal {
            return 0.0;
        }
        match action {
            Action::Left => self.paddle = self.paddle.saturating_sub(1),
            Action::Right => self.paddle = (self.paddle + 1).min(SIZE - 1),
            _ => {}
        }
        self.move_ball()
    }

    fn move_ball(&mut self) -> f64 {
        let mut reward = 0.0;
        self.last_x = self.ball_x;
        self.last_y = self.ball_y;
        let (dx, dy) = [(-1, -1), (1, -1), (1, 1), (-1, 1)][self.ball_dir];
        let mut x = self.ball_x as i64 + dx;
        let mut y = self.ball_y as i64 + dy;
        let mut strike_now = false;
        if !(0..SIZE as i64).contains(&x) {
            x = x.clamp(0, SIZE as i64 - 1);
            self.ball_dir = MIRROR_X[self.ball_dir];
        }
        if y < 0 {
            y = 0;
            self.ball_dir = MIRROR_Y[self.ball_dir];
        } else if self.bricks[y as usize][x as usize] {
            strike_now = true;
            if !self.strike {
                reward += 1.0;
                self.strike = true;
                self.bricks[y as usize][x as usize] = false;
                y = self.last_y as i64;
                self.ball_dir = MIRROR_Y[self.ball_dir];
            }
        } else if y == SIZE as i64 - 1 {
            if self.brick_count() == 0 {
                for row in &mut self.bricks[1..4] {
                    *row = [true; SIZE];
                }
            }
            if self.ball_x == self.paddle {
                self.ball_dir = MIRROR_Y[self.ball_dir];
                y = self.last_y as i64;
            } else if x as usize == self.paddle {
                self.ball_dir = REVERSE[self.ball_dir];
                y = self.last_y as i64;
            } else {
                self.terminal = true;
            }
        }
        if !strike_now {
            self.strike = false;
        }
        self.ball_x = x as usize;
        self.ball_y = y as usize;
        reward
    }

    /// The observation, channel-first `[4, 10, 10]`, 0/1.
    pub fn observation(&self) -> Vec<f32> {
        let mut obs = vec![0.0f32; CHANNELS * SIZE * SIZE];
        let at = |c: usize, y: usize, x: usize| (c * SIZE + y) * SIZE + x;
        obs[at(BALL, self.ball_y, self.ball_x)] = 1.0;
        obs[at(PADDLE, SIZE - 1, self.paddle)] = 1.0;
        obs[at(TRAIL, self.last_y, self.last_x)] = 1.0;
        for (y, row) in self.bricks.iter().enumerate() {
            for (x, &b) in row.iter().enumerate() {
                if b {
                    obs[at(BRICK, y, x)] = 1.0;
                }
            }
        }
        obs
    }
}

/// A saved Breakout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BreakoutSnapshot {
    /// v0 (6 actions) or v1 (3 actions).
    pub id: EnvId,
    /// The game.
    pub state: BreakoutState,
    /// The previous (full-set) action, for sticky actions.
    pub last_action: Action,
    /// Sticky-action probability.
    pub sticky: f64,
    /// Episode clock.
    pub clock: EpisodeClock,
    /// Generator.
    pub rng: RngState,
}

/// MinAtar Breakout with sticky actions.
#[derive(Clone, Debug)]
pub struct Breakout {
    id: EnvId,
    state: BreakoutState,
    last_action: Action,
    sticky: f64,
    clock: EpisodeClock,
    rng: EnvRng,
}

impl Breakout {
    /// Breakout with MinAtar's sticky actions (0.1); `minimal` selects the
    /// 3-action set (`MinAtar/Breakout-v1`), else all 6 (`-v0`).
    pub fn new(seed: u64, minimal: bool) -> Self {
        Self {
            id: if minimal { EnvId::BreakoutV1 } else { EnvId::BreakoutV0 },
            state: BreakoutState::start(false),
            last_action: Action::Noop,
            sticky: STICKY_ACTIONS,
            clock: EpisodeClock::default(),
            rng: EnvRng::new(seed),
        }
    }

    /// Sets the sticky-action probability (0 turns sticky actions off).
    pub fn with_sticky_actions(mut self, probability: f64) -> Self {
        self.sticky = probability.clamp(0.0, 1.0);
        self
    }

    /// The game state.
    pub fn state(&self) -> &BreakoutState {
        &self.state
    }

    /// Starts an episode from `state` (for tests and demos).
    pub fn reset_to(&mut self, state: BreakoutState) -> Vec<f32> {
        self.state = state;
        self.clock.reset();
        self.state.observation()
    }

    /// The action set of this version.
    pub fn actions(&self) -> &'static [Action] {
        match self.id {
            EnvId::BreakoutV1 => &MINIMAL_ACTIONS,
            _ => &FULL_ACTIONS,
        }
    }
}

impl Environment for Breakout {
    fn id(&self) -> EnvId {
        self.id
    }

    fn observation_shape(&self) -> Vec<usize> {
        vec![CHANNELS, SIZE, SIZE]
    }

    fn num_actions(&self) -> usize {
        self.actions().len()
    }

    fn reset(&mut self) -> Vec<f32> {
        let right = self.rng.below(2) == 1;
        self.reset_to(BreakoutState::start(right))
    }

    fn step(&mut self, action: usize) -> Result<Step> {
        self.clock.check(self.id, action, self.num_actions())?;
        let mut chosen = self.actions()[action];
        if self.rng.bernoulli(self.sticky) {
            chosen = self.last_action;
        }
        self.last_action = chosen;
        let reward = self.state.act(chosen);
        let terminated = self.state.terminal;
        let truncated = self.clock.tick(terminated, self.id.max_episode_steps());
        Ok(Step {
            observation: self.state.observation(),
            reward,
            terminated,
            truncated,
        })
    }

    fn observation(&self) -> Vec<f32> {
        self.state.observation()
    }

    fn snapshot(&self) -> EnvSnapshot {
        EnvSnapshot::Breakout(BreakoutSnapshot {
            id: self.id,
            state: self.state.clone(),
            last_action: self.last_action,
            sticky: self.sticky,
            clock: self.clock,
            rng: self.rng.state(),
        })
    }

    fn restore(&mut self, snapshot: &EnvSnapshot) -> Result<()> {
        match snapshot {
            EnvSnapshot::Breakout(s) if s.id == self.id => {
                self.state = s.state.clone();
                self.last_action = s.last_action;
                self.sticky = s.sticky;
                self.clock = s.clock;
                self.rng = EnvRng::from_state(&s.rng);
                Ok(())
            }
            other => Err(other.mismatch(self.id)),
        }
    }
}
