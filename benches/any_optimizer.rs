//! What a topology update costs with a Burn optimizer instead of the built-in
//! one (run: `cargo bench --bench any_optimizer`).
//!
//! One RigL update (drop fraction 0.3, 90% sparse ERK, no optimizer step on the
//! update step) over ResNet-50's sparse weights with Adam state for every
//! parameter: through `Sparsifier::step` with the built-in Adam (state reset on
//! the device) and through `SparseOptimizer` with Burn's Adam (state zeroed
//! through the optimizer's record). Rounds alternate the order of the two.
//!
//! Environment: `SPARSEBURN_DEVICE` (default flex), `BENCH_ROUNDS` (default 3;
//! each round times two updates of each).

use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Tensor};
use sparseburn::prelude::*;
use sparseburn::sparse_models::{ResNetConfig, ResNetDepth};

struct RandomGrads {
    out: GradientsParams,
}

impl ModuleVisitor for RandomGrads {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let g = Tensor::<D>::random(t.shape(), Distribution::Normal(0.0, 1e-3), &t.device().inner());
        self.out.register::<D>(param.id, g);
    }
}

fn grads<M: Module>(model: &M) -> GradientsParams {
    let mut g = RandomGrads {
        out: GradientsParams::new(),
    };
    model.visit(&mut g);
    g.out
}

fn rigl() -> RigL {
    let config = RigLConfig::new().with_skip_weight_update(true);
    RigL::with_schedule(&config, UpdateSchedule::new(1_000).with_interval(2)).expect("rigl")
}

enum Sparse {
    Builtin(Sparsifier),
    Burn(SparseOptimizer),
}

impl Sparse {
    fn new<M: Module>(model: &M, burn_adam: bool) -> Self {
        let config = SparsityConfig::new().with_sparsity(0.9);
        if burn_adam {
            Self::Burn(SparseOptimizer::new(model, config, rigl(), AdamConfig::new().init()).expect("sparse"))
        } else {
            Self::Builtin(Sparsifier::new(model, config, rigl(), &OptimizerConfig::adam()).expect("sparse"))
        }
    }

    fn init<M: Module>(&mut self, model: M) -> M {
        match self {
            Self::Builtin(s) => s.init(model),
            Self::Burn(s) => s.init(model),
        }
        .expect("init")
    }

    fn step<M: Module>(&mut self, model: M, grads: GradientsParams) -> M {
        match self {
            Self::Builtin(s) => s.step(model, grads, 1e-6),
            Self::Burn(s) => s.step(model, grads, 1e-6),
        }
        .expect("step")
    }
}

/// Seconds of the updates at steps 2 and 4 (steps 1 and 3 are Adam steps, so
/// every parameter has state), with the built-in Adam or Burn's.
fn updates(device: &Device, burn_adam: bool) -> Vec<f64> {
    let model = ResNetConfig::new(ResNetDepth::R50).init(device);
    let mut sparse = Sparse::new(&model, burn_adam);
    let mut model = sparse.init(model);
    let mut times = Vec::new();
    for t in 0..5 {
        let g = grads(&model);
        let _ = device.sync();
        let start = Instant::now();
        model = sparse.step(model, g);
        let _ = device.sync();
        if t == 2 || t == 4 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times
}

fn quartiles(mut v: Vec<f64>) -> [f64; 3] {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    [q(0.25), q(0.5), q(0.75)]
}

fn main() {
    let backend = BackendKind::from_env().expect("SPARSEBURN_DEVICE");
    let device = backend.device().expect("backend").autodiff();
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let (mut builtin, mut burn) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for burn_adam in [round % 2 == 1, round % 2 == 0] {
            let t = updates(&device, burn_adam);
            if burn_adam { &mut burn } else { &mut builtin }.extend(t);
        }
    }
    let ratios: Vec<f64> = builtin.iter().zip(&burn).map(|(a, b)| b / a).collect();
    println!("backend: {backend}; RigL update, ResNet-50 90% ERK, Adam state; seconds: median (quartiles)");
    println!("| optimizer | update (s) |");
    println!("|---|---|");
    for (name, v) in [
        ("built-in Adam (`Sparsifier::step`)", builtin),
        ("Burn's Adam (`SparseOptimizer`)", burn),
    ] {
        let [a, b, c] = quartiles(v);
        println!("| {name} | {b:.3} ({a:.3} … {c:.3}) |");
    }
    let [a, b, c] = quartiles(ratios);
    println!("| ratio Burn / built-in, pairwise | {b:.2} ({a:.2} … {c:.2}) |");
}
