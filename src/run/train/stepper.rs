//! What takes a run's optimizer step and topology update, and writes its
//! checkpoint: the [`Sparsifier`] on the masked-dense model, or
//! [`CompactTraining`] on the model in sparse execution
//! (`--execution sparse`, [`crate::run::execution`]). The loop
//! ([`super::runner`]) is the same for both.

use std::any::Any;
use std::collections::HashMap;
use std::ops::Range;

use burn::module::Module;
use burn::optim::GradientsParams;
use sparse_core::Sparsifier;
use sparse_kernels::train::{compact_prepare, compact_state, compact_step, dense_state};
use sparse_models::{Classifier, CompactMlp, Mlp};

use super::checkpoint::{Checkpointer, TrainerState};
use super::runner::Runner;
use super::task::ImageClassification;
use crate::run::execution::{Execution, SPARSE_BELOW_DENSITY, any_sparse_layer, densities, layer_is_sparse};

/// Takes the steps of a model of type `M`.
pub trait Stepper<M> {
    /// Readies `model` for the forward pass of the next step.
    fn prepare(&mut self, model: M) -> anyhow::Result<M> {
        Ok(model)
    }

    /// The step after the backward pass: optimizer step, topology update.
    fn step(&mut self, model: M, grads: GradientsParams, lr: f64) -> anyhow::Result<M>;

    /// The plan, the masks, the method and the step counter.
    fn sparsifier(&self) -> &Sparsifier;

    /// Writes the checkpoint of `model`.
    fn checkpoint(&self, model: &M, checkpointer: &mut Checkpointer, state: &mut TrainerState) -> anyhow::Result<()>;
}

impl<M: Module> Stepper<M> for Sparsifier {
    fn step(&mut self, model: M, grads: GradientsParams, lr: f64) -> anyhow::Result<M> {
        Ok(Sparsifier::step(self, model, grads, lr)?)
    }

    fn sparsifier(&self) -> &Sparsifier {
        self
    }

    fn checkpoint(&self, model: &M, checkpointer: &mut Checkpointer, state: &mut TrainerState) -> anyhow::Result<()> {
        checkpointer.save(model, self, state)
    }
}

/// Training the MLP in sparse execution: the [`Sparsifier`] keeps the plan,
/// the masks, the method, the optimizer state (of the values) and the step;
/// the model is a [`CompactMlp`]. Checkpoints are written in the masked-dense
/// layout (the weights and moments scattered into an `Mlp` for that moment),
/// so either execution resumes from them, and `export` reads them as any run.
pub struct CompactTraining<'a> {
    sparse: Sparsifier,
    dense: Box<dyn Fn() -> Mlp + 'a>,
}

impl<'a> CompactTraining<'a> {
    /// Moves the masked-dense `mlp` with its initialised (or restored)
    /// `sparse` into sparse execution under `execution` (which layers run the
    /// sparse kernels); `dense` makes an `Mlp` of the same shape to write
    /// checkpoints into.
    pub fn start(
        mlp: Mlp,
        mut sparse: Sparsifier,
        dense: Box<dyn Fn() -> Mlp + 'a>,
        execution: Execution,
    ) -> anyhow::Result<(CompactMlp, Self)> {
        let mut compact = CompactMlp::from_dense(&mlp, &sparse)?;
        let targets: HashMap<String, f64> = densities(&sparse).into_iter().collect();
        compact.layers = std::mem::take(&mut compact.layers)
            .into_iter()
            .map(|layer| {
                let density = targets.get(&layer.layer().path).copied().unwrap_or(1.0);
                layer.with_dense_product(!layer_is_sparse(execution, density))
            })
            .collect();
        drop(mlp);
        let states = compact_state(&compact, sparse.optimizer().export()?)?;
        sparse
            .optimizer_mut()
            .import(states, &Sparsifier::param_numels(&compact))?;
        sparse.release_device_masks();
        Ok((compact, Self { sparse, dense }))
    }

    /// The masked-dense twin of `model` and the sparse state (for the summary).
    pub fn finish(self, model: &CompactMlp) -> anyhow::Result<(Mlp, Sparsifier)> {
        Ok((model.to_dense((self.dense)())?, self.sparse))
    }
}

impl Stepper<CompactMlp> for CompactTraining<'_> {
    fn prepare(&mut self, model: CompactMlp) -> anyhow::Result<CompactMlp> {
        Ok(compact_prepare(model, &self.sparse)?)
    }

    fn step(&mut self, model: CompactMlp, grads: GradientsParams, lr: f64) -> anyhow::Result<CompactMlp> {
        Ok(compact_step(model, &mut self.sparse, grads, lr)?)
    }

    fn sparsifier(&self) -> &Sparsifier {
        &self.sparse
    }

    fn checkpoint(
        &self,
        model: &CompactMlp,
        checkpointer: &mut Checkpointer,
        state: &mut TrainerState,
    ) -> anyhow::Result<()> {
        let dense = model.to_dense((self.dense)())?;
        let states = dense_state(model, self.sparse.optimizer().export()?)?;
        checkpointer.save_with(&dense, state, |path| {
            Ok(self.sparse.save_with_optimizer(path, states)?)
        })
    }
}

/// Trains the steps `range` of an image run in sparse execution: the model
/// (which must be the MLP) moves into a [`CompactMlp`] for the steps and back
/// into the masked-dense layout at the end; `make` makes a fresh model of the
/// run (to write checkpoints into). Under `auto`, the layers above the
/// crossover density multiply densely, and a run without a layer below it
/// trains masked-dense.
pub fn train_compact<M: Classifier + 'static>(
    runner: &mut Runner<ImageClassification>,
    model: M,
    sparse: Sparsifier,
    range: Range<u64>,
    make: &dyn Fn() -> M,
    execution: Execution,
) -> anyhow::Result<(M, Sparsifier)> {
    if !any_sparse_layer(execution, &sparse) {
        tracing::info!(
            crossover = SPARSE_BELOW_DENSITY,
            "--execution auto: every layer is denser than the crossover; training masked-dense"
        );
        return super::train_dense(runner, model, sparse, range);
    }
    let not_mlp = || anyhow::anyhow!("sparse execution trains the `mlp` model only; train with `--execution dense`");
    let mlp: Mlp = cast(model).ok_or_else(not_mlp)?;
    let dense = Box::new(|| cast::<M, Mlp>(make()).unwrap_or_else(|| unreachable!("the run's model is the MLP")));
    let (compact, mut stepper) = CompactTraining::start(mlp, sparse, dense, execution)?;
    tracing::info!(
        values = compact.num_params(),
        "training in sparse execution (active values only)"
    );
    let trained = runner.train_range(compact, &mut stepper, range)?;
    let (mlp, sparse) = stepper.finish(&trained)?;
    Ok((cast(mlp).ok_or_else(not_mlp)?, sparse))
}

/// `a` as a `B`, when `A` is `B`.
fn cast<A: 'static, B: 'static>(a: A) -> Option<B> {
    (Box::new(a) as Box<dyn Any>).downcast::<B>().ok().map(|b| *b)
}
