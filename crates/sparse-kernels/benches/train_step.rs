//! One training step in sparse execution against the masked-dense step, side
//! by side in one run, alternating order each round.
//!
//! `cargo bench -p sparse-kernels --bench train_step -- [--quick] [--batch B] [--sparsity S] [--widths 784,4096,4096,10]`
//!
//! The model is an MLP with ReLU (default 784-4096-4096-10, batch 128, the
//! issue's wide MLP), every weight sparse under ERK at the given sparsity
//! (static masks), SGD with momentum 0.9. Masked-dense: Burn `Linear`s on
//! autodiff flex, forward, cross-entropy, backward, `Sparsifier::step`
//! (gradient masked, `MaskedOptimizer` step). Sparse: the same masks and
//! initial weights as `SparseParam`s, forward with `sparse_linear` (ReLU
//! fused), the handwritten backward (dX through the transposed product, dW by
//! SDDMM), the compact step. No topology update (static); RigL's amortised
//! update is not in this figure. Quartiles over rounds, ratio of medians.

use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use sparse_core::{OptimizerConfig, Rng, Sparsifier, SparsityConfig};
use sparse_kernels::timing::quartiles;
use sparse_kernels::{Activation, OpKind, SparseParam};
use sparse_methods::StaticRandom;

#[derive(Module, Debug)]
struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    fn forward(&self, mut x: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            x = l.forward(x);
            if i < last {
                x = burn::tensor::activation::relu(x);
            }
        }
        x
    }
}

struct Args {
    quick: bool,
    batch: usize,
    sparsity: f64,
    widths: Vec<usize>,
}

fn args() -> Args {
    let mut a = Args {
        quick: false,
        batch: 128,
        sparsity: 0.9,
        widths: vec![784, 4096, 4096, 10],
    };
    let mut it = std::env::args().skip(1);
    while let Some(s) = it.next() {
        match s.as_str() {
            "--quick" => a.quick = true,
            "--batch" => a.batch = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.batch),
            "--sparsity" => a.sparsity = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.sparsity),
            "--widths" => {
                if let Some(w) = it.next() {
                    a.widths = w.split(',').filter_map(|v| v.parse().ok()).collect();
                }
            }
            _ => {}
        }
    }
    a
}

fn batch(a: &Args, t: u64, dev: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    let mut rng = Rng::for_stream(1, "bench", t, "data");
    let (d_in, classes) = (a.widths[0], *a.widths.last().unwrap_or(&1));
    let x: Vec<f32> = (0..a.batch * d_in).map(|_| rng.next_f32()).collect();
    let y: Vec<i32> = (0..a.batch).map(|_| rng.below(classes as u64) as i32).collect();
    (
        Tensor::from_data(TensorData::new(x, [a.batch, d_in]), dev),
        Tensor::from_data(TensorData::new(y, [a.batch]), dev),
    )
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    sparse_core::host::to_vec(t).expect("read tensor")
}

fn main() {
    let a = args();
    let dev = Device::flex().autodiff();
    let config = OptimizerConfig::sgd(0.9, 0.0);
    let lr = 0.01;
    let layers = a
        .widths
        .windows(2)
        .map(|w| LinearConfig::new(w[0], w[1]).init(&dev))
        .collect();
    let model = Mlp { layers };
    let sparsity = SparsityConfig::new().with_sparsity(a.sparsity).with_seed(3);
    let mut dense = Sparsifier::new(&model, sparsity, StaticRandom, &config).expect("sparsifier");
    let model = dense.init(model).expect("init");
    let plan = dense.plan().clone();
    let mut params: Vec<SparseParam> = plan
        .layers()
        .iter()
        .zip(&model.layers)
        .zip(dense.masks())
        .map(|((layer, l), mask)| {
            SparseParam::from_dense(layer.clone(), OpKind::Linear, mask.clone(), &host(l.weight.val()), &dev)
                .expect("sparse param")
        })
        .collect();
    let mut biases: Vec<(Tensor<1>, Vec<Tensor<1>>, u64)> = model
        .layers
        .iter()
        .map(|l| (l.bias.as_ref().expect("bias").val().inner(), Vec::new(), 0))
        .collect();
    let density = dense.report().density();
    let loss = |logits: Tensor<2>, y: Tensor<1, Int>| CrossEntropyLossConfig::new().init(&dev).forward(logits, y);

    let mut t = 0u64;
    // the model is moved into the step (no second reference), so flex may update in place
    let mut model = Some(model);
    let mut dense_step = |t: u64| {
        let m = model.take().expect("model");
        let (x, y) = batch(&a, t, &dev);
        let l = loss(m.forward(x), y);
        let grads = GradientsParams::from_grads(l.backward(), &m);
        model = Some(dense.step(m, grads, lr).expect("dense step"));
    };
    let mut sparse_step = |t: u64| {
        let (mut h, y) = batch(&a, t, &dev);
        let v: Vec<Tensor<1>> = params.iter().map(SparseParam::tracked).collect();
        let b: Vec<Tensor<1>> = biases
            .iter()
            .map(|(b, _, _)| Tensor::from_inner(b.clone()).require_grad())
            .collect();
        let last = params.len() - 1;
        for (i, p) in params.iter().enumerate() {
            let act = if i < last { Activation::Relu } else { Activation::None };
            h = sparse_kernels::ops::sparse_linear(h, v[i].clone(), b[i].clone(), p.plan(), act);
        }
        let grads = loss(h, y).backward();
        let gv: Vec<Tensor<1>> = v.iter().map(|v| v.grad(&grads).expect("value grad")).collect();
        let gb: Vec<Tensor<1>> = b.iter().map(|b| b.grad(&grads).expect("bias grad")).collect();
        drop((v, b, grads)); // no second reference: flex may update in place
        for ((p, g), (bias, g_bias)) in params.iter_mut().zip(gv).zip(biases.iter_mut().zip(gb)) {
            p.step(&config, lr, g).expect("step");
            let (value, slots, time) = bias;
            let old = std::mem::replace(value, Tensor::zeros([0], &g_bias.device()));
            *value = sparse_core::optim::update_values(&config, lr, None, old, g_bias, slots, *time);
            *time += 1;
        }
    };
    for _ in 0..2 {
        dense_step(t);
        sparse_step(t);
        t += 1;
    }
    let rounds = if a.quick { 5 } else { 11 };
    let (mut d, mut s) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let time = |f: &mut dyn FnMut(u64), t: u64| {
            let start = Instant::now();
            f(t);
            start.elapsed().as_secs_f64() * 1e3
        };
        if r % 2 == 0 {
            d.push(time(&mut dense_step, t));
            s.push(time(&mut sparse_step, t));
        } else {
            s.push(time(&mut sparse_step, t));
            d.push(time(&mut dense_step, t));
        }
        t += 1;
    }
    let (qd, qs) = (quartiles(d), quartiles(s));
    println!(
        "MLP {:?} batch {} density {density:.4} (ERK, static), SGD momentum 0.9, {rounds} rounds",
        a.widths, a.batch
    );
    println!(
        "masked-dense step {:.1} ms [{:.1}, {:.1}]  sparse step {:.1} ms [{:.1}, {:.1}]  dense/sparse {:.2}x",
        qd[1],
        qd[0],
        qd[2],
        qs[1],
        qs[0],
        qs[2],
        qd[1] / qs[1]
    );
}
