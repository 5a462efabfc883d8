//! The run's model as the [`CompactTwin`] type it is: the one place that
//! names the models with a sparse-execution twin. The run layer is generic
//! over its model `M`; what needs the twin (training in sparse execution,
//! reading a compact checkpoint) is a [`TwinJob`], run on the model as its
//! own type `D` and handed back as `M`.

use std::any::{Any, TypeId};

use sparse_models::{CompactTwin, Mlp, MobileNetV1, ResNet, SmallCnn};

/// Work on a run's model (of type `M`) as its twin type `D`, giving the
/// model back with what the work made.
pub(crate) trait TwinJob<M> {
    /// What the work makes besides the model.
    type Made;
    /// Does the work on `model`, which is the run's model as a `D`.
    fn run<D: CompactTwin>(self, model: D) -> anyhow::Result<(D, Self::Made)>;
}

/// `job` on `model` as the twin type it is; `None` for a model without a
/// sparse-execution twin.
pub(crate) fn on_twin<M: 'static, J: TwinJob<M>>(model: M, job: J) -> Option<anyhow::Result<(M, J::Made)>> {
    fn run_as<M: 'static, D: CompactTwin, J: TwinJob<M>>(model: M, job: J) -> anyhow::Result<(M, J::Made)> {
        let (model, made) = job.run(same::<M, D>(model))?;
        Ok((same(model), made))
    }
    let run = TypeId::of::<M>();
    if run == TypeId::of::<Mlp>() {
        Some(run_as::<M, Mlp, J>(model, job))
    } else if run == TypeId::of::<SmallCnn>() {
        Some(run_as::<M, SmallCnn, J>(model, job))
    } else if run == TypeId::of::<ResNet>() {
        Some(run_as::<M, ResNet, J>(model, job))
    } else if run == TypeId::of::<MobileNetV1>() {
        Some(run_as::<M, MobileNetV1, J>(model, job))
    } else {
        None
    }
}

/// `a` as a `B`, where `A` is `B` (checked by the caller through their `TypeId`s).
pub(crate) fn same<A: 'static, B: 'static>(a: A) -> B {
    match (Box::new(a) as Box<dyn Any>).downcast::<B>() {
        Ok(b) => *b,
        Err(_) => unreachable!("the run's model is of the twin's type"),
    }
}
