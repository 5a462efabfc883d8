//! The dense-gradient window of the grow score: the mean dense gradient of the
//! last `n` steps up to and including an update step (rigl's and
//! condensed-sparsity's `grad_accumulation_n`):
//!
//! ```text
//! score_grow = |(1/n) · Σ_{s = t−n+1..t} ∇θ L_s|        (t an update step)
//! ```
//!
//! With `n = 1` the update step's own gradient is used. The optimizer still steps
//! at every step; only the grow score sees the window. Shared by RigL and SRigL;
//! the partial sums are part of the method's checkpoint state.

use sparse_core::method::{MethodState, StepContext};
use sparse_core::{Result, UpdateSchedule};

/// The running sum of the dense gradients inside the window before an update.
#[derive(Clone, Debug, Default)]
pub struct GradWindow {
    window: u64,
    accum: Vec<Vec<f32>>,
    steps: u64,
}

impl GradWindow {
    /// A window of `window` steps (at least 1).
    pub fn new(window: u64) -> Self {
        Self {
            window: window.max(1),
            accum: Vec::new(),
            steps: 0,
        }
    }

    /// The window's length `n` in steps.
    pub fn span(&self) -> u64 {
        self.window
    }

    /// Whether the dense gradient is needed at `step` (inside a window).
    pub fn needs(&self, updates: &UpdateSchedule, step: u64) -> bool {
        (0..self.window).any(|k| updates.is_update_step(step + k))
    }

    /// Adds the step's gradients to the window (a window of one step keeps
    /// nothing: the update step's gradient is read directly).
    pub fn observe(&mut self, updates: &UpdateSchedule, ctx: &StepContext<'_>) -> Result<()> {
        if updates.is_update_step(ctx.step()) && self.accum.is_empty() {
            return Ok(());
        }
        let grads = ctx.grads()?;
        if self.accum.len() != grads.len() {
            self.accum = grads.iter().map(|g| vec![0.0; g.len()]).collect();
            self.steps = 0;
        }
        for (acc, g) in self.accum.iter_mut().zip(grads) {
            for (a, x) in acc.iter_mut().zip(g) {
                *a += x;
            }
        }
        self.steps += 1;
        Ok(())
    }

    /// `|mean gradient|` of layer `l` over the window.
    pub fn grow_scores(&self, ctx: &StepContext<'_>, l: usize) -> Result<Vec<f32>> {
        Ok(if self.accum.is_empty() {
            ctx.grads()?[l].iter().map(|g| g.abs()).collect()
        } else {
            let scale = 1.0 / self.steps as f32;
            self.accum[l].iter().map(|g| (g * scale).abs()).collect()
        })
    }

    /// Empties the window (after an update).
    pub fn clear(&mut self) {
        self.accum.clear();
        self.steps = 0;
    }

    /// The partial sums, for a checkpoint.
    pub fn save_state(&self) -> MethodState {
        let mut state = MethodState::default();
        state.values.insert("accum_steps".into(), self.steps.into());
        for (l, a) in self.accum.iter().enumerate() {
            state.arrays.insert(format!("accum.{l}"), a.clone());
        }
        state
    }

    /// Restores [`GradWindow::save_state`]'s output.
    pub fn load_state(&mut self, state: &MethodState) {
        self.steps = state.values.get("accum_steps").and_then(|v| v.as_u64()).unwrap_or(0);
        let layers = state.arrays.keys().filter(|k| k.starts_with("accum.")).count();
        self.accum = (0..layers)
            .map(|l| state.arrays.get(&format!("accum.{l}")).cloned().unwrap_or_default())
            .collect();
    }
}
