//! What takes a run's optimizer step and topology update, and writes its
//! checkpoint: the [`Sparsifier`] on the masked-dense model, or
//! [`CompactTraining`] on the model in sparse execution
//! (`--execution sparse`, [`crate::run::execution`]). The loop
//! ([`super::runner`]) is the same for both.

use std::collections::HashMap;
use std::ops::Range;

use burn::module::Module;
use burn::optim::GradientsParams;
use sparse_core::Sparsifier;
use sparse_kernels::train::CompactModel;
use sparse_kernels::train::{compact_prepare, compact_state, compact_step};
use sparse_models::{Classifier, CompactTwin};

use super::checkpoint::{Checkpointer, TrainerState};
use super::runner::Runner;
use super::task::ImageClassification;
use super::twin::{TwinJob, on_twin, same};
use crate::allocator::PurgeAtOnce;
use crate::run::execution::{Execution, LayerTarget, any_sparse_layer, targets};

/// Takes the steps of a model of type `M`.
pub trait Stepper<M> {
    /// Readies `model` for the forward pass of the next step, on a batch of
    /// `rows` (`None`: the step sums the gradients of several batches).
    fn prepare(&mut self, model: M, rows: Option<usize>) -> anyhow::Result<M> {
        let _ = rows;
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

/// Training a model in sparse execution: the [`Sparsifier`] keeps the plan,
/// the masks, the method, the optimizer state (of the values) and the step;
/// the model is the [`CompactTwin::Compact`] of the run's model `D`.
/// Checkpoints are written in the compact layout (the compact model's record
/// and the values' moments, [`super::compact_checkpoint`]); either execution
/// resumes from them, and `export` and `prune` read them.
pub struct CompactTraining<'a, D: CompactTwin> {
    sparse: Sparsifier,
    dense: &'a dyn Fn() -> D,
}

impl<'a, D: CompactTwin> CompactTraining<'a, D> {
    /// Moves the masked-dense `model` with its initialised (or restored)
    /// `sparse` into sparse execution under `execution` (which layers run the
    /// sparse kernels); `dense` makes a `D` of the same shape to write the
    /// trained model into at the end.
    pub fn start(
        model: D,
        mut sparse: Sparsifier,
        dense: &'a dyn Fn() -> D,
        execution: Execution,
    ) -> anyhow::Result<(D::Compact, Self)> {
        let compact = model.to_compact(&sparse)?;
        drop(model);
        let by_path: HashMap<String, LayerTarget> = targets(&sparse).into_iter().map(|t| (t.path.clone(), t)).collect();
        let compact = compact.try_map_compact(&mut |_, layer| {
            let sparse_kernels = by_path
                .get(&layer.layer().path)
                .map_or(execution == Execution::Sparse, |t| t.is_sparse(execution));
            Ok(layer.with_dense_product(!sparse_kernels))
        })?;
        let states = compact_state(&compact, sparse.optimizer().export()?)?;
        sparse
            .optimizer_mut()
            .import(states, &Sparsifier::param_numels(&compact))?;
        sparse.release_device_masks();
        Ok((compact, Self { sparse, dense }))
    }

    /// The masked-dense twin of `model` and the sparse state (for the summary).
    pub fn finish(self, model: &D::Compact) -> anyhow::Result<(D, Sparsifier)> {
        Ok(((self.dense)().with_compact(model)?, self.sparse))
    }
}

impl<D: CompactTwin> Stepper<D::Compact> for CompactTraining<'_, D> {
    fn prepare(&mut self, model: D::Compact, rows: Option<usize>) -> anyhow::Result<D::Compact> {
        Ok(compact_prepare(model, &self.sparse, rows)?)
    }

    fn step(&mut self, model: D::Compact, grads: GradientsParams, lr: f64) -> anyhow::Result<D::Compact> {
        Ok(compact_step(model, &mut self.sparse, grads, lr)?)
    }

    fn sparsifier(&self) -> &Sparsifier {
        &self.sparse
    }

    fn checkpoint(
        &self,
        model: &D::Compact,
        checkpointer: &mut Checkpointer,
        state: &mut TrainerState,
    ) -> anyhow::Result<()> {
        checkpointer.save_compact(model, &self.sparse, state)
    }
}

/// Trains the steps `range` of an image run in sparse execution: the model
/// (the MLP, the small CNN, a ResNet or MobileNetV1) moves into its [`CompactTwin`] for the steps
/// and back into the masked-dense layout at the end; `make` makes a fresh
/// model of the run (to write the trained weights into). Under `auto`, the layers
/// above the crossover density multiply densely, and a run without a layer
/// below it trains masked-dense.
pub fn train_compact<M: Classifier + 'static>(
    runner: &mut Runner<ImageClassification>,
    model: M,
    sparse: Sparsifier,
    range: Range<u64>,
    make: &dyn Fn() -> M,
    execution: Execution,
) -> anyhow::Result<(M, Sparsifier)> {
    if !any_sparse_layer(execution, &sparse) {
        tracing::info!("--execution auto: every layer is denser than its crossover; training masked-dense");
        return super::train_dense(runner, model, sparse, range);
    }
    let job = Train {
        runner,
        sparse,
        range,
        make,
        execution,
    };
    on_twin(model, job).unwrap_or_else(|| {
        anyhow::bail!(
            "sparse execution trains the `mlp`, `cnn`, ResNet and MobileNetV1 models; train this one with `--execution dense`"
        )
    })
}

/// [`train_compact`]'s work on the run's model as its twin type: the model
/// moves into the compact twin for the steps and back at the end.
struct Train<'a, M> {
    runner: &'a mut Runner<ImageClassification>,
    sparse: Sparsifier,
    range: Range<u64>,
    make: &'a dyn Fn() -> M,
    execution: Execution,
}

impl<M: 'static> TwinJob<M> for Train<'_, M> {
    type Made = Sparsifier;

    fn run<D: CompactTwin>(self, model: D) -> anyhow::Result<(D, Sparsifier)> {
        // freed memory goes back to the OS at once while the steps run sparse
        let _lean = PurgeAtOnce::start();
        let make_twin = || same::<M, D>((self.make)());
        let (compact, mut stepper) = CompactTraining::start(model, self.sparse, &make_twin, self.execution)?;
        tracing::info!(
            values = compact.num_params(),
            "training in sparse execution (active values only)"
        );
        let trained = self.runner.train_range(compact, &mut stepper, self.range)?;
        stepper.finish(&trained)
    }
}
