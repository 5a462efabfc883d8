//! Shared test fixtures: a model of independent linear and conv layers, a
//! deterministic loss, and a method that swaps random weights under the pattern.
#![allow(dead_code)]

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use sparse_core::method::{InitContext, Method, MethodState, Needs, StepContext};
use sparse_core::{BackendKind, Mask, Result, Rng};

/// The autodiff device of the backend in `SPARSEBURN_DEVICE` (flex by default).
pub fn device() -> Device {
    BackendKind::from_env()
        .expect("SPARSEBURN_DEVICE")
        .device()
        .expect("backend compiled")
        .autodiff()
}

/// Layers that do not feed each other, so every weight gets a dense gradient.
#[derive(Module, Debug)]
pub struct Net {
    pub linears: Vec<Linear>,
    pub convs: Vec<Conv2d>,
}

impl Net {
    /// `linears`: (in, out); `convs`: (in, out, kernel).
    pub fn new(linears: &[(usize, usize)], convs: &[(usize, usize, usize)], device: &Device) -> Self {
        Self {
            linears: linears
                .iter()
                .map(|&(i, o)| LinearConfig::new(i, o).init(device))
                .collect(),
            convs: convs
                .iter()
                .map(|&(i, o, k)| Conv2dConfig::new([i, o], [k, k]).init(device))
                .collect(),
        }
    }

    /// A deterministic regression loss on inputs derived from `seed`.
    pub fn loss(&self, seed: u64) -> Tensor<1> {
        let device = self.devices()[0].clone();
        let mut rng = Rng::new(seed);
        let mut rand = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.next_f32() * 2.0 - 1.0).collect() };
        let mut total = Tensor::<1>::zeros([1], &device);
        for l in &self.linears {
            let [i, _] = l.weight.dims();
            let x = Tensor::<2>::from_data(TensorData::new(rand(3 * i), [3, i]), &device);
            let y = l.forward(x);
            let t = Tensor::<2>::from_data(TensorData::new(rand(y.dims().iter().product()), y.dims()), &device);
            total = total + (y - t).square().mean().reshape([1]);
        }
        for c in &self.convs {
            let [_, i, k, _] = c.weight.dims();
            let s = k + 1;
            let x = Tensor::<4>::from_data(TensorData::new(rand(2 * i * s * s), [2, i, s, s]), &device);
            let y = c.forward(x);
            let t = Tensor::<4>::from_data(TensorData::new(rand(y.dims().iter().product()), y.dims()), &device);
            total = total + (y - t).square().mean().reshape([1]);
        }
        total
    }

    /// Gradients of [`Net::loss`].
    pub fn grads(&self, seed: u64) -> GradientsParams {
        GradientsParams::from_grads(self.loss(seed).backward(), self)
    }
}

/// Host values of a float tensor.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    sparse_core::host::to_vec(t).expect("read tensor")
}

/// Random initial masks under the plan; every `every` steps swaps `fraction` of
/// each layer's active units for random inactive ones under the pattern.
#[derive(Debug)]
pub struct RandomSwap {
    pub every: u64,
    pub fraction: f64,
    pub updates: u64,
    /// Update before the optimizer step and skip it (like RigL's reference).
    pub skip: bool,
}

impl Method for RandomSwap {
    fn name(&self) -> &'static str {
        "random-swap"
    }

    fn init(&mut self, ctx: &mut InitContext<'_>, masks: &mut [Mask]) -> Result<()> {
        let scores: Vec<Vec<f32>> = (0..ctx.layers().len())
            .map(|l| ctx.rng(l, "init").scores(ctx.layers()[l].numel()))
            .collect();
        let sparsity = ctx.plan().sparsity();
        masks.clone_from_slice(&ctx.plan().select(&scores, sparsity)?);
        Ok(())
    }

    fn needs(&self, step: u64) -> Needs {
        let update = step > 0 && step.is_multiple_of(self.every);
        Needs {
            grads: update,
            update,
            skip_optimizer: update && self.skip,
        }
    }

    fn on_step(&mut self, ctx: &mut StepContext<'_>) -> Result<()> {
        self.updates += 1;
        for l in 0..ctx.layers().len() {
            let layer = ctx.layers()[l].clone();
            let mut rng = ctx.rng(l, "swap");
            let drop = rng.scores(layer.numel());
            let grow = rng.scores(layer.numel());
            let pattern = ctx.plan().pattern().clone();
            let n_drop = (self.fraction * pattern.active_units(&layer, &ctx.masks()[l]) as f64) as usize;
            let new = pattern.exchange(&layer, &ctx.masks()[l], &drop, &grow, n_drop);
            ctx.masks_mut()[l] = new;
        }
        Ok(())
    }

    fn save_state(&self) -> MethodState {
        let mut s = MethodState::default();
        s.values.insert("updates".into(), self.updates.into());
        s
    }

    fn load_state(&mut self, state: MethodState) -> Result<()> {
        self.updates = state.values.get("updates").and_then(|v| v.as_u64()).unwrap_or(0);
        Ok(())
    }
}
