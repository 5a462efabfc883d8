//! Fixtures for the method tests: an MLP, deterministic data, host views.
#![allow(dead_code)]

use burn::module::{Module, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use sparse_core::{BackendKind, Rng};

/// The test device, with Burn's random initialisation seeded for repeatable tests.
pub fn device() -> Device {
    let device = BackendKind::from_env().unwrap().device().unwrap().autodiff();
    device.seed(7);
    device
}

/// Linear layers with ReLU between them, no bias unless asked.
#[derive(Module, Debug)]
pub struct Mlp {
    pub layers: Vec<Linear>,
    relu: Relu,
}

impl Mlp {
    pub fn new(widths: &[usize], bias: bool, device: &Device) -> Self {
        Self {
            layers: widths
                .windows(2)
                .map(|w| LinearConfig::new(w[0], w[1]).with_bias(bias).init(device))
                .collect(),
            relu: Relu::new(),
        }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mut x = x;
        for (i, l) in self.layers.iter().enumerate() {
            x = l.forward(x);
            if i + 1 < self.layers.len() {
                x = self.relu.forward(x);
            }
        }
        x
    }

    pub fn loss(&self, data: &Data) -> Tensor<1> {
        let device = self.devices()[0].clone();
        let (x, y) = data.tensors(&device);
        CrossEntropyLossConfig::new().init(&device).forward(self.forward(x), y)
    }

    pub fn grads(&self, data: &Data) -> GradientsParams {
        GradientsParams::from_grads(self.loss(data).backward(), self)
    }

    /// Sets the weight of layer `l` from host values (`[in, out]` row-major).
    pub fn with_weight(mut self, l: usize, values: Vec<f32>) -> Self {
        let dims = self.layers[l].weight.dims();
        self.layers[l].weight = self.layers[l].weight.clone().map(|t| {
            let device = t.device();
            Tensor::<2>::from_data(TensorData::new(values, dims), &device).require_grad()
        });
        self
    }

    pub fn weight(&self, l: usize) -> Vec<f32> {
        host(self.layers[l].weight.val())
    }

    pub fn weight_id(&self, l: usize) -> burn::module::ParamId {
        self.layers[l].weight.id
    }
}

/// A learnable classification set: class prototypes plus noise.
#[derive(Clone, Debug)]
pub struct Data {
    pub x: Vec<f32>,
    pub y: Vec<i64>,
    pub features: usize,
}

impl Data {
    pub fn new(n: usize, features: usize, classes: usize, noise: f32, seed: u64) -> Self {
        let mut proto_rng = Rng::new(99);
        let protos: Vec<Vec<f32>> = (0..classes)
            .map(|_| (0..features).map(|_| proto_rng.normal() as f32).collect())
            .collect();
        let mut rng = Rng::new(seed);
        let mut x = Vec::with_capacity(n * features);
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let c = i % classes;
            x.extend(protos[c].iter().map(|p| p + noise * rng.normal() as f32));
            y.push(c as i64);
        }
        Self { x, y, features }
    }

    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn tensors(&self, device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
        (
            Tensor::from_data(TensorData::new(self.x.clone(), [self.len(), self.features]), device),
            Tensor::from_data(TensorData::new(self.y.clone(), [self.len()]), device),
        )
    }

    /// Rows `range` as a new set.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Self {
        Self {
            x: self.x[range.start * self.features..range.end * self.features].to_vec(),
            y: self.y[range].to_vec(),
            features: self.features,
        }
    }
}

pub fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    sparse_core::host::to_vec(t).unwrap()
}

/// Accuracy of `model` on `data`.
pub fn accuracy(model: &Mlp, data: &Data) -> f64 {
    let device = model.devices()[0].clone();
    let (x, y) = data.tensors(&device);
    let pred = model.forward(x).argmax(1).squeeze_dim::<1>(1);
    pred.equal(y).int().sum().into_scalar::<i64>() as f64 / data.len() as f64
}

/// A parameter's id is stable; this is the param for layer `l` of an `Mlp`.
pub fn param(model: &Mlp, l: usize) -> &Param<Tensor<2>> {
    &model.layers[l].weight
}
