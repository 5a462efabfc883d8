//! The training loop behind `sparseburn train`, in parts with one job each
//! (after burn-train's split of the epoch runner, the event processor, the
//! checkpointer and the interrupter):
//!
//! | part | job |
//! |---|---|
//! | [`task`] | what is trained: batches, loss, evaluation, scoring gradients |
//! | [`language_model`] | the language-model task (next-token prediction on a corpus) |
//! | [`lm`] | a language-model run: corpus, model, training, summary with a text sample |
//! | [`rl`] | a DQN run: the agent's own loop in epochs of environment steps, evaluation on fixed seeds, checkpoints at epoch ends |
//! | [`runner`] | the loop over steps and epochs, and what happens at an epoch's end |
//! | [`accumulate`] | gradient accumulation: the micro-batches of an optimizer step |
//! | [`metrics`] | reading the per-step statistics back from the device in groups |
//! | [`checkpoint`] | writing checkpoints atomically and resuming from one |
//! | [`checksum`] | the SHA-256 of every checkpoint file, checked on resume |
//! | [`console`] | the progress bar and the epoch lines |
//! | [`divergence`] | stopping at the first loss that is not finite |
//! | [`scoring`] | the samples a data-driven initialisation scores on |
//! | [`rounds`] | runs that train in rounds (iterative pruning) |
//! | [`stages`] | recipes: runs in stages, each with its own method, sparsity, optimizer and schedule |
//! | [`interrupt`] | stopping cleanly (Ctrl-C, `--stop-after`) |
//! | [`stepper`] | what takes a step: the `Sparsifier` (masked-dense) or sparse execution (`--execution sparse`) |
//! | [`summary`] | `summary.json`, the plots and the report |
//!
//! Batches, augmentation and masks are pure functions of the seed and the step,
//! so an interrupted and resumed run gives the same numbers as an uninterrupted one.

pub mod accumulate;
pub mod checkpoint;
pub mod checksum;
pub mod compact_checkpoint;
pub mod console;
pub mod divergence;
pub mod interrupt;
pub mod language_model;
pub mod lm;
pub mod metrics;
pub mod rl;
pub mod rounds;
pub mod runner;
pub mod scoring;
pub mod selection;
pub mod stages;
pub mod stepper;
pub mod summary;
pub mod task;
mod twin;

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, bail};
use burn::module::Module;
use burn::tensor::Device;
use sparse_core::{LayerFilter, Sparsifier};
use sparse_methods::BuildContext;
use sparse_models::Classifier;

pub use divergence::Diverged;
pub use interrupt::Interrupted;

use self::accumulate::Accumulation;
use self::checkpoint::{Checkpointer, Schedule};
use self::console::Console;
use self::interrupt::Interrupter;
use self::runner::Runner;
use self::summary::{RunFacts, finish};
use self::task::{ImageClassification, Task};
use super::artifacts::{RunDir, Summary};
use super::config::RunConfig;
use super::execution;
use super::folder_state;
use super::lr::Lr;
use super::memory;
use super::models::{WithModel, with_model};
use super::task_kind::TaskKind;
use crate::data::{ImageSet, split};

/// How to run `train`.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// The run folder.
    pub out: PathBuf,
    /// Continue the run in `out` from its checkpoint.
    pub resume: bool,
    /// Set by Ctrl-C: checkpoint and stop after the current batch.
    pub interrupt: Arc<AtomicBool>,
    /// Print per-epoch lines (and progress bars on a terminal).
    pub verbose: bool,
    /// Stop like Ctrl-C after this many epochs of this session (train in chunks).
    pub stop_after_epochs: Option<u64>,
}

/// The data of a run: training images (after the validation split and the
/// training limit), validation images, test images.
pub struct RunData {
    /// Training images.
    pub train: ImageSet,
    /// Validation images (none when the split is 0).
    pub validation: Option<ImageSet>,
    /// Test images.
    pub test: ImageSet,
}

/// Loads the data of `cfg`, holds out the validation split, applies the
/// training limit, and writes the split's size into `cfg`.
pub fn load_data(cfg: &mut RunConfig) -> anyhow::Result<RunData> {
    let (train, test) = cfg.data.loader().load()?;
    let size = *cfg.data.validation.get_or_insert(split::default_size(train.len()));
    let (train, validation) = if size == 0 {
        (train, None)
    } else {
        let (train, validation) = split::split(train, size)?;
        (train, Some(validation))
    };
    let train = match cfg.data.train_limit {
        0 => train,
        n => train.take(n),
    };
    if test.is_empty() {
        bail!("the test set of {} is empty", test.name);
    }
    let batch = cfg.training.batch_size;
    if train.len() < batch {
        bail!(
            "batch size {batch} does not fit the {} training images{}",
            train.len(),
            if size > 0 {
                format!(" left after holding out {size} for validation")
            } else {
                String::new()
            }
        );
    }
    Ok(RunData {
        train,
        validation,
        test,
    })
}

/// Trains the run described by `cfg` into `opts.out` and returns its summary
/// (image classification, or the task `cfg.task` names).
pub fn train(cfg: &RunConfig, opts: &TrainOptions) -> anyhow::Result<Summary> {
    crate::run::peak::run_begins();
    match cfg.task {
        TaskKind::Image => {}
        TaskKind::Lm => return lm::train_lm(cfg, opts),
        TaskKind::Rl => return rl::train_rl(cfg, opts),
    }
    let mut cfg = cfg.clone();
    let device = cfg.device.device()?.autodiff();
    let data = load_data(&mut cfg)?;
    let created = !opts.out.exists();
    let opened = open_run(opts)?;
    let (dir, resume) = (opened.dir.clone(), opened.resume);
    if !resume || execution_switched(&dir, &cfg) {
        dir.write("config.toml", cfg.to_toml().as_bytes())?;
    }
    device.seed(cfg.training.seed);
    let (input, classes) = (data.train.shape, data.train.num_classes());
    let job = Job {
        cfg: &cfg,
        opts,
        resume,
        dir,
        data,
        device: device.clone(),
    };
    let result = with_model(&cfg.model, input, classes, &device, job).and_then(|r| r);
    if result.is_err() && !resume {
        // a bad method setting or init-weights file: leave no folder that blocks the retry
        RunDir::discard_unstarted(&opts.out, created);
    }
    drop(opened); // the lock is held until the run ends
    result
}

/// Whether `cfg` resumes the run in `dir` with another `--execution` than its
/// `config.toml` records (the one setting a resume may change).
fn execution_switched(dir: &RunDir, cfg: &RunConfig) -> bool {
    RunConfig::load(&dir.file("config.toml")).is_ok_and(|saved| saved.training.execution != cfg.training.execution)
}

/// Opens the run folder of `opts` for a new run or a resume (the returned value
/// holds its lock), and says the folder's note.
pub(crate) fn open_run(opts: &TrainOptions) -> anyhow::Result<folder_state::Opened> {
    let opened = if opts.resume {
        folder_state::open_resume(&opts.out)?
    } else {
        folder_state::open_new(&opts.out)?
    };
    if let Some(note) = &opened.note {
        if opts.verbose {
            eprintln!("{note}");
        } else {
            tracing::warn!("{note}");
        }
    }
    Ok(opened)
}

struct Job<'a> {
    cfg: &'a RunConfig,
    opts: &'a TrainOptions,
    resume: bool,
    dir: RunDir,
    data: RunData,
    device: Device,
}

impl WithModel for Job<'_> {
    type Output = anyhow::Result<Summary>;

    fn run<M: Classifier + 'static>(self, make: &dyn Fn() -> M) -> anyhow::Result<Summary> {
        let Job {
            cfg,
            opts,
            resume,
            dir,
            data,
            device,
        } = self;
        let t = &cfg.training;
        let mut model = make();
        if let (Some(path), false) = (&cfg.model.init_weights, resume) {
            model = sparse_models::import::load_torchvision(model, path)?;
        }
        let dataset = data.train.name.split('/').next().unwrap_or_default().to_string();
        let facts_input = data.train.shape;
        let validation_images = data.validation.as_ref().map_or(0, ImageSet::len);
        let classes = data.train.num_classes();
        let task = ImageClassification::new(
            data.train,
            data.validation,
            data.test,
            t.batch_size,
            t.eval_batch_size,
            t.seed,
            t.label_smoothing as f32,
            cfg.data.loader().augments(),
            &device,
        )
        .with_scoring_batches(t.grad_accumulation);
        let reload = |model: M| -> anyhow::Result<M> {
            match &cfg.model.init_weights {
                // `init` binds the sparsifier to the loaded weights by path
                Some(path) => Ok(sparse_models::import::load_torchvision(model, path)?),
                None => Ok(model),
            }
        };
        let filter = model.sparsity_filter();
        let steps_per_epoch =
            Accumulation::new(t.grad_accumulation, Task::<M>::batches_per_epoch(&task), t.batch_size)?
                .steps_per_epoch();
        let fitted = Fit {
            cfg,
            opts,
            resume,
            dir: &dir,
            classes,
            model_name: cfg.model.name.name(),
            units_per_sample: 1,
            make,
            reload: &reload,
        }
        .run_with(
            model,
            filter,
            task,
            |runner, model, sparse, range, compact| match compact {
                true => stepper::train_compact(runner, model, sparse, range, make, cfg.training.execution),
                false => train_dense(runner, model, sparse, range),
            },
        )?;
        finish(
            cfg,
            &dir,
            &fitted.model,
            &fitted.sparse,
            &fitted.state,
            &RunFacts {
                dataset: &dataset,
                input: facts_input,
                validation_images,
                steps_per_epoch,
            },
        )
    }
}

/// What training any task needs besides the model and the task: the config,
/// the run folder, and how to rebuild or reload the model.
pub(crate) struct Fit<'a, M> {
    /// The run's config.
    pub cfg: &'a RunConfig,
    /// How to run.
    pub opts: &'a TrainOptions,
    /// Continue from the folder's checkpoint.
    pub resume: bool,
    /// The run folder.
    pub dir: &'a RunDir,
    /// Classes (the vocabulary of a language model, the actions of an agent).
    pub classes: usize,
    /// The model's name, as a checkpoint mismatch names it.
    pub model_name: &'a str,
    /// What a training sample counts in the statistics (1 per image; a language
    /// model counts the tokens of a window).
    pub units_per_sample: u64,
    /// A fresh model (re-initialisation between rounds).
    pub make: &'a dyn Fn() -> M,
    /// Reloads initial weights into a model (runs in rounds that resume).
    pub reload: &'a dyn Fn(M) -> anyhow::Result<M>,
}

/// A trained model, its sparsifier and the trainer's counters.
pub(crate) struct Fitted<M> {
    pub model: M,
    pub sparse: Sparsifier,
    pub state: checkpoint::TrainerState,
}

/// Trains a run's steps `range` on the masked-dense path.
pub(crate) fn train_dense<M: Module, T: Task<M>>(
    runner: &mut Runner<T>,
    model: M,
    mut sparse: Sparsifier,
    range: Range<u64>,
) -> anyhow::Result<(M, Sparsifier)> {
    let model = runner.train_range(model, &mut sparse, range)?;
    Ok((model, sparse))
}

impl<M: Module + 'static> Fit<'_, M> {
    /// Builds the method and the sparsifier for `model` (its sparse weights chosen
    /// by `filter`), and trains `task` from scratch or from the checkpoint, on
    /// the masked-dense path.
    pub fn run<T: Task<M>>(self, model: M, filter: LayerFilter, task: T) -> anyhow::Result<Fitted<M>> {
        self.run_with(model, filter, task, |runner, model, sparse, range, _| {
            train_dense(runner, model, sparse, range)
        })
    }

    /// [`Fit::run`] with `train` training the steps (of a run that is not in
    /// rounds): given the runner, the model with its masks, the sparsifier,
    /// the steps and whether the run trains in sparse execution.
    pub fn run_with<T, F>(self, mut model: M, filter: LayerFilter, task: T, train: F) -> anyhow::Result<Fitted<M>>
    where
        T: Task<M>,
        F: FnOnce(&mut Runner<T>, M, Sparsifier, Range<u64>, bool) -> anyhow::Result<(M, Sparsifier)>,
    {
        memory::check_fits(self.cfg, &model, &self.cfg.sparsity_config(filter.clone()).filter)?;
        if !self.cfg.stages.is_empty() {
            return stages::train_stages(self, model, filter, task);
        }
        let Fit {
            cfg,
            opts,
            resume,
            dir,
            classes,
            model_name,
            units_per_sample,
            make,
            reload,
        } = self;
        let t = &cfg.training;
        let accumulation = Accumulation::new(t.grad_accumulation, task.batches_per_epoch(), t.batch_size)?;
        let spe = accumulation.steps_per_epoch();
        let total = t.epochs as u64 * spe;
        let mut sparse = build_sparsifier(cfg, &model, filter, total, spe, classes)?;
        let compact = execution::resolve(cfg, &sparse)?;
        let mut runner = Runner::new(
            task,
            Lr::new(t, spe)?,
            Console::new(opts.verbose),
            Checkpointer::new(dir.clone()),
            Interrupter::new(opts.interrupt.clone(), opts.stop_after_epochs),
            t.epochs,
            accumulation,
            cfg.model.mask_layer.clone(),
        );
        let model = if sparse.method().rounds().is_some() {
            if resume {
                let note = folder_state::restart_rounds(dir)?;
                if opts.verbose {
                    eprintln!("{note}");
                } else {
                    tracing::warn!("{note}");
                }
                model = reload(model)?;
            }
            runner.checkpoints = false;
            runner.rounds = true;
            if opts.verbose {
                println!("run folder: {}", dir.path.display());
            }
            let model = sparse.init(model)?;
            let model = rounds::train_rounds(&mut runner, &mut sparse, model, total, make)?;
            runner.checkpoint(&model, &sparse)?;
            model
        } else {
            let model = if resume {
                let (model, state) = runner.checkpointer.restore(
                    model,
                    &mut sparse,
                    model_name,
                    Schedule {
                        total_steps: total,
                        steps_per_epoch: spe,
                        samples_per_step: (t.batch_size * t.grad_accumulation) as u64 * units_per_sample,
                        stage_steps: 0..total,
                        stage: 0,
                        selection: runner.task.selection(),
                    },
                )?;
                runner.saved_step = Some(state.step);
                runner.state = state;
                model
            } else {
                init_masks(&mut sparse, model, &runner.task)?
            };
            tracing::info!(
                density = sparse.report().density(),
                layers = sparse.layers().len(),
                "masks ready"
            );
            if opts.verbose {
                println!("run folder: {}", dir.path.display());
            }
            let start = runner.state.step;
            let (model, trained) = train(&mut runner, model, sparse, start..total, compact)?;
            sparse = trained;
            model
        };
        runner.checkpointer.account_wall_time(&mut runner.state);
        Ok(Fitted {
            model,
            sparse,
            state: runner.state,
        })
    }
}

/// The method of `cfg` and its sparsifier for `model` (its sparse weights chosen
/// by `filter`), for a training of `total` steps of which `spe` make an epoch.
pub(crate) fn build_sparsifier<M: Module>(
    cfg: &RunConfig,
    model: &M,
    filter: LayerFilter,
    total: u64,
    spe: u64,
    classes: usize,
) -> anyhow::Result<Sparsifier> {
    let sparsity = cfg.sparsity_config(filter);
    let context = BuildContext {
        total_steps: total,
        steps_per_epoch: spe,
        classes,
        sparsity: sparsity.sparsity,
        pattern: sparsity.pattern.clone(),
    };
    let method = cfg.method.build(&context)?;
    let mut sparse = Sparsifier::new(model, sparsity, method, &cfg.optimizer)?;
    if let Some(penalty) = &cfg.penalty {
        sparse = sparse.with_grad_term(penalty.term()?);
    }
    if let Some(path) = &cfg.model.mask_layer
        && !sparse.layers().iter().any(|l| &l.path == path)
    {
        let known: Vec<&str> = sparse.layers().iter().map(|l| l.path.as_str()).collect();
        bail!(
            "mask_layer `{path}` is not a sparse layer; sparse layers: {}",
            known.join(", ")
        );
    }
    Ok(sparse)
}

/// The method's first masks for `model` (scored on `task`'s training data when
/// the method needs data).
pub(crate) fn init_masks<M: Module, T: Task<M>>(sparse: &mut Sparsifier, model: M, task: &T) -> anyhow::Result<M> {
    if sparse.method().needs_data_for_init() {
        let name = sparse.method().name();
        sparse
            .init_with(model, |m: &M, request| task.scoring_grads(m, request))
            .with_context(|| format!("{name} scores the weights on training data"))
    } else {
        Ok(sparse.init(model)?)
    }
}
