//! Q-networks: any Burn module that maps flat observations to one value per
//! action ([`QNetwork`]), and the two reference networks:
//!
//! * [`MlpQ`]: the classic-control network of Graesser et al. 2022 (Table 6 and
//!   `rigl/rl/tfagents/configs/dqn_gym_dense_config.gin`): two hidden layers of 512
//!   ReLU units with He initialisation (variance scaling 2.0, fan-in, truncated
//!   normal), output weights `U(−0.03, 0.03)` and output bias −0.2;
//! * [`MinAtarQ`]: MinAtar's DQN network (Young & Tian 2019, `examples/dqn.py`): a
//!   3×3 convolution with 16 filters, stride 1, no padding (10×10 → 8×8), ReLU, a
//!   linear layer of 128 ReLU units, one output per action (PyTorch's default
//!   initialisation, which is Burn's).
//!
//! [`scale_for_density`] implements the sparsity-aware initialisation Graesser et
//! al. use for sparse networks: a variance-scaled layer whose weights keep a fraction
//! `d` of its fan-in is rescaled by `1/√d`, so activations keep their scale.

use std::collections::HashMap;

use burn::config::Config;
use burn::module::{Module, ModuleMapper, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, Relu};
use burn::tensor::{Device, Tensor, TensorData};
use sparse_core::{LayerFilter, Sparsifier};

use crate::rng::EnvRng;

/// A Q-network: Q-values `[B, actions]` for observations `[B, obs_len]`.
pub trait QNetwork: Module {
    /// Q-values for a batch of flat observations.
    fn q_values(&self, obs: Tensor<2>) -> Tensor<2>;

    /// The weights that are sparse by default (all, as in Graesser et al.).
    fn sparsity_filter(&self) -> LayerFilter {
        LayerFilter::new()
    }

    /// Paths of the weights initialised by fan-in variance scaling, which
    /// [`scale_for_density`] rescales when they are sparse.
    fn variance_scaled(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The classic-control MLP.
#[derive(Config, Debug)]
pub struct MlpQConfig {
    /// Observation length.
    pub input: usize,
    /// Number of actions.
    pub actions: usize,
    /// Hidden widths (Graesser et al.: 512, 512).
    #[config(default = "vec![512, 512]")]
    pub hidden: Vec<usize>,
    /// Output weights are `U(−a, a)` with this `a`.
    #[config(default = 0.03)]
    pub output_init: f64,
    /// Output bias.
    #[config(default = -0.2)]
    pub output_bias: f64,
}

/// Linear layers with ReLU between them.
#[derive(Module, Debug)]
pub struct MlpQ {
    /// Hidden layers and the output layer, input to output.
    pub layers: Vec<Linear>,
    relu: Relu,
}

/// A sample of `N(0, 1)` truncated to `[−2, 2]` (by rejection, as TensorFlow does).
fn truncated_normal(rng: &mut EnvRng) -> f64 {
    loop {
        let u1 = 1.0 - rng.next_f64();
        let u2 = rng.next_f64();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        if z.abs() <= 2.0 {
            return z;
        }
    }
}

fn linear_from(weight: Vec<f32>, bias: Vec<f32>, shape: [usize; 2], device: &Device) -> Linear {
    Linear {
        weight: Param::from_tensor(Tensor::from_data(TensorData::new(weight, shape), device)),
        bias: Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(bias, [shape[1]]),
            device,
        ))),
    }
}

impl MlpQConfig {
    /// Builds the network on `device`, drawing the initial weights from `seed`.
    ///
    /// Hidden weights: truncated normal with standard deviation
    /// `√(2/fan_in)/0.8796` (TensorFlow's `VarianceScaling(2.0, "fan_in",
    /// "truncated_normal")`), biases 0.
    pub fn init(&self, device: &Device, seed: u64) -> MlpQ {
        let mut rng = EnvRng::new(seed);
        let widths: Vec<usize> = std::iter::once(self.input)
            .chain(self.hidden.iter().copied())
            .chain(std::iter::once(self.actions))
            .collect();
        let last = widths.len() - 2;
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let (fan_in, fan_out) = (w[0], w[1]);
                let n = fan_in * fan_out;
                let (weight, bias) = if i == last {
                    let a = self.output_init;
                    let weight = (0..n).map(|_| rng.uniform(-a, a) as f32).collect();
                    (weight, vec![self.output_bias as f32; fan_out])
                } else {
                    let std = (2.0 / fan_in as f64).sqrt() / 0.879_625_661_034_239_8;
                    let weight = (0..n).map(|_| (std * truncated_normal(&mut rng)) as f32).collect();
                    (weight, vec![0.0; fan_out])
                };
                linear_from(weight, bias, [fan_in, fan_out], device)
            })
            .collect();
        MlpQ {
            layers,
            relu: Relu::new(),
        }
    }
}

impl QNetwork for MlpQ {
    fn q_values(&self, obs: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len() - 1;
        self.layers.iter().enumerate().fold(obs, |x, (i, layer)| {
            let x = layer.forward(x);
            if i < last { self.relu.forward(x) } else { x }
        })
    }

    fn variance_scaled(&self) -> Vec<String> {
        (0..self.layers.len() - 1)
            .map(|i| format!("layers.{i}.weight"))
            .collect()
    }
}

/// MinAtar's DQN network.
#[derive(Config, Debug)]
pub struct MinAtarQConfig {
    /// Input channels (Breakout: 4).
    #[config(default = 4)]
    pub channels: usize,
    /// Grid side (10).
    #[config(default = 10)]
    pub size: usize,
    /// Number of actions.
    pub actions: usize,
    /// Convolution filters (16).
    #[config(default = 16)]
    pub filters: usize,
    /// Hidden linear units (128).
    #[config(default = 128)]
    pub hidden: usize,
}

/// Conv 3×3 → ReLU → linear → ReLU → linear.
#[derive(Module, Debug)]
pub struct MinAtarQ {
    /// The convolution.
    pub conv: Conv2d,
    /// The hidden linear layer.
    pub fc: Linear,
    /// The output layer.
    pub out: Linear,
    relu: Relu,
    channels: usize,
    size: usize,
}

impl MinAtarQConfig {
    /// Builds the network on `device` (Burn's default initialisation, seeded by the device).
    pub fn init(&self, device: &Device) -> MinAtarQ {
        let side = self.size - 2;
        MinAtarQ {
            conv: Conv2dConfig::new([self.channels, self.filters], [3, 3]).init(device),
            fc: LinearConfig::new(self.filters * side * side, self.hidden).init(device),
            out: LinearConfig::new(self.hidden, self.actions).init(device),
            relu: Relu::new(),
            channels: self.channels,
            size: self.size,
        }
    }
}

impl QNetwork for MinAtarQ {
    fn q_values(&self, obs: Tensor<2>) -> Tensor<2> {
        let [b, _] = obs.dims();
        let x = obs.reshape([b, self.channels, self.size, self.size]);
        let x = self.relu.forward(self.conv.forward(x));
        let x = self.relu.forward(self.fc.forward(x.flatten::<2>(1, 3)));
        self.out.forward(x)
    }
}

/// Multiplies named float parameters by per-path factors, keeping their ids.
struct Scale<'a> {
    path: Vec<String>,
    factors: &'a HashMap<String, f32>,
}

impl ModuleMapper for Scale<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(&f) = self.factors.get(&self.path.join(".")) else {
            return param;
        };
        param.map(|t| {
            if !t.is_autodiff() {
                return t.mul_scalar(f);
            }
            let grad = t.is_require_grad();
            let scaled = Tensor::from_inner(t.inner().mul_scalar(f));
            if grad { scaled.require_grad() } else { scaled }
        })
    }
}

/// Sparsity-aware initialisation: rescales every sparse weight listed by
/// [`QNetwork::variance_scaled`] by `1/√d`, with `d` its layer's density, so a
/// layer keeping a fraction `d` of its fan-in has the variance of a dense one.
pub fn scale_for_density<M: QNetwork>(model: M, sparse: &Sparsifier) -> M {
    let scaled = model.variance_scaled();
    let factors: HashMap<String, f32> = sparse
        .layers()
        .iter()
        .zip(sparse.masks())
        .filter(|(l, m)| scaled.contains(&l.path) && m.density() > 0.0)
        .map(|(l, m)| (l.path.clone(), (1.0 / m.density().sqrt()) as f32))
        .collect();
    if factors.is_empty() {
        return model;
    }
    model.map(&mut Scale {
        path: Vec::new(),
        factors: &factors,
    })
}
