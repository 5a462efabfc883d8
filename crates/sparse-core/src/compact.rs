//! The [`Sparsifier`]'s side of sparse execution (`docs/sparse-execution.md`,
//! "Training in sparse execution"): a model that keeps only its active values
//! (`sparse_kernels::train`) takes its optimizer step itself and hands the
//! `Sparsifier` host copies of its weights (and dense gradients) on the steps
//! the method looks at them; the `Sparsifier` keeps the plan, the masks, the
//! method, the optimizer state and the step counter, as on the masked-dense
//! path, and saves them in the same file.

use crate::error::{Result, SparseError};
use crate::mask::Mask;
use crate::method::{CompactRule, Needs};
use crate::pattern::Pattern;
use crate::sparsifier::Sparsifier;

impl Sparsifier {
    /// What the method needs at the current step.
    pub fn needs(&self) -> Needs {
        self.method.needs(self.step)
    }

    /// Ends a step of a model in sparse execution, after its optimizer step
    /// (or instead of it, where [`Needs::skip_optimizer`] says so): runs the
    /// method's topology update on `weights` (host copies of the sparse
    /// weights in the layers' Burn layout, zeros at inactive positions;
    /// required when [`Needs::update`]) and `grads` (their dense gradients;
    /// required when [`Needs::grads`]), checks and keeps the new masks, and
    /// advances the step. Returns the layers whose masks changed (every layer
    /// when the method wrote weights); `weights` then holds the weights the
    /// method leaves.
    ///
    /// The same decisions as [`Sparsifier::step`] makes on the masked-dense
    /// path, given the same weights and gradients. Methods with a forward
    /// rule (a reparameterization) or gradient terms need the dense path and
    /// are refused.
    pub fn compact_step(&mut self, weights: Option<&mut [Vec<f32>]>, grads: Option<&[Vec<f32>]>) -> Result<Vec<usize>> {
        if self.method.reparameterization().is_some() || !self.terms.is_empty() {
            return Err(SparseError::method(
                self.method.name(),
                "adds a forward rule or gradient terms to the dense weights, so it cannot train in sparse execution; use `--execution dense`",
            ));
        }
        let needs = self.needs();
        let changed = if needs.any() {
            self.compact_update(needs, weights, grads)?
        } else {
            Vec::new()
        };
        self.step += 1;
        self.method.before_step(self.step);
        Ok(changed)
    }

    /// The method's [`CompactRule`], when sparse execution can run its
    /// topology updates on the active values alone: the method offers one,
    /// the plan's pattern is unstructured (the rule exchanges single
    /// weights) and no gradient term acts on the weights.
    pub fn compact_rule(&self) -> Option<CompactRule> {
        if *self.plan.pattern() != Pattern::Unstructured || !self.terms.is_empty() {
            return None;
        }
        self.method.compact_rule()
    }

    /// Ends a step of a model in sparse execution whose topology update ran
    /// by [`Sparsifier::compact_rule`] on the model's own layers (call after
    /// its optimizer step, or instead of it where [`Needs::skip_optimizer`]
    /// says so): `masks` holds every plan layer's new mask on an update step
    /// and is `None` on other steps. Checks the masks against the plan,
    /// keeps them, extends the ITOP record and advances the step. Returns
    /// the layers whose masks changed.
    pub fn compact_rule_step(&mut self, masks: Option<Vec<Mask>>) -> Result<Vec<usize>> {
        let name = self.method.name();
        if self.compact_rule().is_none() {
            return Err(SparseError::method(
                name,
                "has no compact rule under this plan (see `Sparsifier::compact_rule`); end its steps with `compact_step`",
            ));
        }
        let changed = match (self.needs().update, masks) {
            (false, None) => Vec::new(),
            (true, Some(masks)) => self.keep_compact_masks(masks)?,
            (update, _) => {
                let is = if update { "an update step" } else { "no update step" };
                return Err(SparseError::method(
                    name,
                    format!(
                        "step {} is {is}: pass new masks on update steps only, and on all of them",
                        self.step
                    ),
                ));
            }
        };
        self.step += 1;
        self.method.before_step(self.step);
        Ok(changed)
    }

    fn keep_compact_masks(&mut self, masks: Vec<Mask>) -> Result<Vec<usize>> {
        self.check_masks(&masks)?;
        let changed: Vec<usize> = (0..self.masks.len()).filter(|&l| masks[l] != self.masks[l]).collect();
        self.masks = masks;
        for &l in &changed {
            self.explored[l] = self.explored[l].or(&self.masks[l]);
        }
        tracing::debug!(
            step = self.step,
            layers = changed.len(),
            "topology update (sparse execution, compact rule)"
        );
        Ok(changed)
    }

    fn compact_update(
        &mut self,
        needs: Needs,
        weights: Option<&mut [Vec<f32>]>,
        grads: Option<&[Vec<f32>]>,
    ) -> Result<Vec<usize>> {
        let name = self.method.name();
        let missing = |what: &str| SparseError::method(name, format!("needs the {what} at step {}", self.step));
        if needs.grads && grads.is_none() {
            return Err(missing("dense gradients"));
        }
        if needs.update && weights.is_none() {
            return Err(missing("weights"));
        }
        let (before, wrote) = self.on_step_checked(weights, grads, None)?;
        let changed: Vec<usize> = (0..self.masks.len())
            .filter(|&l| wrote || self.masks[l] != before[l])
            .collect();
        for &l in &changed {
            self.explored[l] = self.explored[l].or(&self.masks[l]);
        }
        tracing::debug!(
            step = self.step,
            layers = changed.len(),
            "topology update (sparse execution)"
        );
        Ok(changed)
    }

    /// Drops the device copies of the masks (dense f32 tensors, one per
    /// sparse weight), which a model in sparse execution does not use: its
    /// structure is the host masks.
    pub fn release_device_masks(&mut self) {
        self.keep.clear();
    }
}
