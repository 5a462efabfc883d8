//! Save at step k, load into a fresh model, continue to step N: masks and
//! weights are bit-identical to an uninterrupted run.

use crate::common;

use burn::module::Module;
use common::{Net, RandomSwap, device, values};
use sparse_core::{Distribution, OptimizerConfig, Sparsifier, SparsityConfig};

const N: u64 = 14;

fn config() -> SparsityConfig {
    SparsityConfig::new()
        .with_sparsity(0.7)
        .with_distribution(Distribution::Erk { power_scale: 1.0 })
        .with_seed(3)
}

fn method(skip: bool) -> RandomSwap {
    RandomSwap {
        every: 4,
        fraction: 0.3,
        updates: 0,
        skip,
    }
}

/// Every parameter, as bits (so the sign of a zero counts too).
fn params(model: &Net) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    for l in &model.linears {
        out.push(values(l.weight.val()));
        out.push(values(l.bias.as_ref().unwrap().val()));
    }
    for c in &model.convs {
        out.push(values(c.weight.val()));
        out.push(values(c.bias.as_ref().unwrap().val()));
    }
    out.into_iter()
        .map(|v| v.into_iter().map(f32::to_bits).collect())
        .collect()
}

fn run(
    start: &Net,
    optimizer: OptimizerConfig,
    interrupt_at: Option<u64>,
    skip: bool,
) -> (Vec<Vec<u32>>, Vec<sparse_core::Mask>, f64) {
    let device = device();
    let mut model = start.clone();
    let mut sparse = Sparsifier::new(&model, config(), method(skip), &optimizer).unwrap();
    model = sparse.init(model).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut t = 0;
    while t < N {
        if Some(t) == interrupt_at {
            model.clone().save_file(dir.path().join("model")).unwrap();
            sparse.save(dir.path().join("sparse.safetensors")).unwrap();
            // a new process: a freshly initialised model and sparsifier
            let fresh = Net::new(&[(8, 6), (16, 10)], &[(4, 6, 3)], &device);
            model = fresh.try_load_file(dir.path().join("model")).unwrap();
            sparse = Sparsifier::new(&model, config(), method(skip), &optimizer).unwrap();
            sparse.load(dir.path().join("sparse.safetensors"), &model).unwrap();
            assert_eq!(sparse.step_count(), t);
        }
        let grads = model.grads(t);
        model = sparse.step(model, grads, 0.05).unwrap();
        t += 1;
    }
    (params(&model), sparse.masks().to_vec(), sparse.itop_rate())
}

#[test]
fn resume_is_bit_identical_with_sgd_momentum() {
    let start = Net::new(&[(8, 6), (16, 10)], &[(4, 6, 3)], &device());
    let opt = OptimizerConfig::sgd(0.9, 5e-4);
    let (w, m, itop) = run(&start, opt.clone(), None, false);
    for k in [1, 4, 9] {
        let (w2, m2, itop2) = run(&start, opt.clone(), Some(k), false);
        assert_eq!(m, m2, "masks after resuming at {k}");
        assert_eq!(w, w2, "weights after resuming at {k}");
        assert_eq!(itop, itop2);
    }
    assert!(itop > 0.3, "topology changed during the run (ITOP {itop})");
}

#[test]
fn resume_is_bit_identical_with_adam() {
    let start = Net::new(&[(8, 6), (16, 10)], &[(4, 6, 3)], &device());
    let opt = OptimizerConfig::adam();
    let (w, m, _) = run(&start, opt.clone(), None, false);
    let (w2, m2, _) = run(&start, opt, Some(6), false);
    assert_eq!(m, m2);
    assert_eq!(w, w2);
}

#[test]
fn resume_at_an_update_that_runs_before_the_optimizer_step() {
    // the first step after loading updates the topology before any optimizer step:
    // the restored (not yet uploaded) momentum of dropped weights must be cleared too
    let start = Net::new(&[(8, 6), (16, 10)], &[(4, 6, 3)], &device());
    let opt = OptimizerConfig::sgd(0.9, 5e-4);
    let (w, m, _) = run(&start, opt.clone(), None, true);
    let (w2, m2, _) = run(&start, opt, Some(8), true);
    assert_eq!(m, m2);
    assert_eq!(w, w2);
}

struct NewIds;

impl burn::module::ModuleMapper for NewIds {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<burn::tensor::Tensor<D>>,
    ) -> burn::module::Param<burn::tensor::Tensor<D>> {
        let value = param.val();
        burn::module::Param::initialized(burn::module::ParamId::new(), value)
    }
}

#[test]
fn a_model_with_new_parameter_ids_keeps_masks_and_optimizer_state() {
    // the same weights under new ids (a rebuilt or re-imported model): the sparsifier
    // rebinds by path and keeps the momentum, so training continues identically
    let start = Net::new(&[(8, 6), (16, 10)], &[(4, 6, 3)], &device());
    let opt = OptimizerConfig::sgd(0.9, 5e-4);
    let (w, m, _) = run(&start, opt.clone(), None, false);

    let mut model = start.clone();
    let mut sparse = Sparsifier::new(&model, config(), method(false), &opt).unwrap();
    model = sparse.init(model).unwrap();
    for t in 0..N {
        if t == 6 {
            let before = model.linears[0].weight.id;
            model = model.map(&mut NewIds);
            assert_ne!(before, model.linears[0].weight.id, "the mapper gives new ids");
        }
        let grads = model.grads(t);
        model = sparse.step(model, grads, 0.05).unwrap();
    }
    assert_eq!(sparse.masks(), &m[..]);
    assert_eq!(params(&model), w);
}

#[test]
fn data_driven_init_on_another_instance_of_the_model() {
    #[derive(Debug)]
    struct ScoreByGrad;
    impl sparse_core::Method for ScoreByGrad {
        fn name(&self) -> &'static str {
            "grad-score"
        }
        fn init(
            &mut self,
            ctx: &mut sparse_core::InitContext<'_>,
            masks: &mut [sparse_core::Mask],
        ) -> sparse_core::Result<()> {
            let g = ctx.oracle()?.gradients(None, &Default::default())?;
            let scores: Vec<Vec<f32>> = g.iter().map(|l| l.iter().map(|x| x.abs()).collect()).collect();
            masks.clone_from_slice(&ctx.plan().select(&scores, ctx.plan().sparsity())?);
            Ok(())
        }
    }
    let built_on = Net::new(&[(8, 6)], &[], &device());
    let mut sparse = Sparsifier::new(&built_on, config(), ScoreByGrad, &OptimizerConfig::sgd(0.0, 0.0)).unwrap();
    let other = built_on.clone().map(&mut NewIds);
    let model = sparse
        .init_with(other, |m: &Net, _req: &sparse_core::GradRequest| Ok(m.grads(0)))
        .unwrap();
    assert!((sparse.report().sparsity() - 0.7).abs() < 0.05);
    assert!(model.linears[0].weight.id != built_on.linears[0].weight.id);
}
