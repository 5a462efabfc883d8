//! The fused batch norm (`sparse_kernels::norm`) against Ioffe & Szegedy's
//! equations computed here in f64, and against Burn's `BatchNorm` module
//! (then a ReLU) on the same device: outputs, running statistics, and the
//! gradients of x, γ and β, over random shapes of rank 2 to 4.

use crate::common;

use burn::module::{Module, Param};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use common::{cases, device, rand, tensor, values};
use proptest::prelude::*;
use sparse_core::Rng;
use sparse_kernels::Activation;
use sparse_kernels::norm::batch_norm;

/// One quantity of the reference: its values and, per value, the size of
/// the terms it is computed from (the scale its rounding error follows).
struct Reference {
    value: Vec<f64>,
    size: Vec<f64>,
}

impl Reference {
    fn new(len: usize) -> Self {
        Self {
            value: vec![0.0; len],
            size: vec![0.0; len],
        }
    }

    /// Whether `got` is within `tol` of each value, relative to the size of its terms.
    fn close(&self, got: &[f32], tol: f64) -> Result<(), String> {
        assert_eq!(got.len(), self.value.len(), "lengths differ");
        let worst = (0..got.len())
            .map(|i| ((got[i] as f64 - self.value[i]).abs() / (self.size[i] + 1e-30), i))
            .fold((0.0f64, 0), |a, b| if b.0 > a.0 { b } else { a });
        if worst.0 <= tol {
            Ok(())
        } else {
            let i = worst.1;
            Err(format!(
                "value {i}: {} against {} (terms of size {}): {:e}",
                got[i], self.value[i], self.size[i], worst.0
            ))
        }
    }
}

/// Output, ∂x, ∂γ, ∂β of `sum(r ⊙ act(BN(x)))` from the paper's equations, in f64.
fn reference(x: &[f32], dims: &[usize], gamma: &[f32], beta: &[f32], r: &[f32], relu: bool) -> [Reference; 4] {
    let (n, c, s) = (dims[0], dims[1], dims[2..].iter().product::<usize>());
    let m = (n * s) as f64;
    let at = |i: usize, ch: usize, k: usize| (i * c + ch) * s + k;
    let [mut y, mut dx, mut dgamma, mut dbeta] = [x.len(), x.len(), c, c].map(Reference::new);
    for ch in 0..c {
        let idx: Vec<usize> = (0..n).flat_map(|i| (0..s).map(move |k| at(i, ch, k))).collect();
        let mu = idx.iter().map(|&j| x[j] as f64).sum::<f64>() / m;
        let var = idx.iter().map(|&j| (x[j] as f64 - mu).powi(2)).sum::<f64>() / m;
        let inv = 1.0 / (var + 1e-5).sqrt();
        let (g_ch, b_ch) = (gamma[ch] as f64, beta[ch] as f64);
        let xhat = |j: usize| (x[j] as f64 - mu) * inv;
        let pre = |j: usize| g_ch * xhat(j) + b_ch;
        let g = |j: usize| if relu && pre(j) <= 0.0 { 0.0 } else { r[j] as f64 };
        let db: f64 = idx.iter().map(|&j| g(j)).sum();
        let dg: f64 = idx.iter().map(|&j| g(j) * xhat(j)).sum();
        let db_size: f64 = idx.iter().map(|&j| g(j).abs()).sum();
        let dg_size: f64 = idx.iter().map(|&j| (g(j) * xhat(j)).abs()).sum();
        for &j in &idx {
            y.value[j] = if relu { pre(j).max(0.0) } else { pre(j) };
            // x·scale + shift: terms of the size of x·γ/σ and μ·γ/σ
            y.size[j] = ((x[j] as f64).abs() + mu.abs()) * (g_ch * inv).abs() + b_ch.abs();
            dx.value[j] = g_ch * inv * (g(j) - db / m - xhat(j) * dg / m);
            dx.size[j] = (g_ch * inv).abs() * (g(j).abs() + db_size / m + xhat(j).abs() * dg_size / m);
        }
        (dgamma.value[ch], dgamma.size[ch]) = (dg, dg_size);
        (dbeta.value[ch], dbeta.size[ch]) = (db, db_size);
    }
    [y, dx, dgamma, dbeta]
}

/// The running mean and variance after one step from (0, 1) with momentum
/// 0.3: `0.3·μ` and `0.7 + 0.3·σ²` (biased σ², as `BatchNorm` keeps it), in f64.
fn running(x: &[f32], dims: &[usize]) -> [Reference; 2] {
    let (n, c, s) = (dims[0], dims[1], dims[2..].iter().product::<usize>());
    let [mut mean, mut var] = [c, c].map(Reference::new);
    for ch in 0..c {
        let vals: Vec<f64> = (0..n)
            .flat_map(|i| (0..s).map(move |k| x[(i * c + ch) * s + k] as f64))
            .collect();
        let m = vals.len() as f64;
        let mu = vals.iter().sum::<f64>() / m;
        let sq = vals.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / m;
        let size = vals.iter().map(|v| v.abs()).sum::<f64>() / m;
        (mean.value[ch], mean.size[ch]) = (0.3 * mu, 0.3 * size);
        (var.value[ch], var.size[ch]) = (0.7 + 0.3 * sq, 0.7 + 0.3 * vals.iter().map(|v| v * v).sum::<f64>() / m);
    }
    [mean, var]
}

/// The fused operator's tolerance from the f64 values: 1e-5 of the terms'
/// size for flex's kernels; on the other backends it is Burn's own batch
/// norm, checked as Burn's module is (1e-4).
fn fused_tolerance() -> f64 {
    match std::env::var("SPARSEBURN_DEVICE") {
        Ok(d) if d != "flex" => 1e-4,
        _ => 1e-5,
    }
}

/// A batch norm of `c` channels with random γ, β and running statistics.
fn module(c: usize, rng: &mut Rng) -> BatchNorm {
    let dev = device().autodiff();
    let mut bn = BatchNormConfig::new(c).with_momentum(0.3).init(&dev);
    bn.gamma = Param::from_tensor(tensor(rand(rng, c), [c], &dev));
    bn.beta = Param::from_tensor(tensor(rand(rng, c), [c], &dev));
    bn
}

/// Output, ∂x, ∂γ, ∂β and the new running mean and variance of
/// `sum(r ⊙ act(BN(x)))`, fused (`fused = true`) or through Burn's module.
fn run<const D: usize>(
    bn: &BatchNorm,
    x: &[f32],
    dims: [usize; D],
    r: &[f32],
    act: Activation,
    fused: bool,
) -> [Vec<f32>; 6] {
    let dev = device().autodiff();
    let xt: Tensor<D> = tensor(x.to_vec(), dims, &dev).require_grad();
    let y = if fused {
        batch_norm(bn, xt.clone(), act)
    } else {
        let y = bn.forward(xt.clone());
        if act == Activation::Relu { relu(y) } else { y }
    };
    let grads = (y.clone() * tensor(r.to_vec(), dims, &dev)).sum().backward();
    [
        values(y),
        values(xt.grad(&grads).expect("x grad")),
        values(bn.gamma.val().grad(&grads).expect("gamma grad")),
        values(bn.beta.val().grad(&grads).expect("beta grad")),
        values(bn.running_mean.value_sync()),
        values(bn.running_var.value_sync()),
    ]
}

fn check<const D: usize>(dims: [usize; D], relu: bool, seed: u64) -> Result<(), TestCaseError> {
    let mut rng = Rng::new(seed);
    let len: usize = dims.iter().product();
    let (x, r) = (rand(&mut rng, len), rand(&mut rng, len));
    // a per-channel offset and scale, so that the statistics are not near (0, 1/3)
    let x: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(i, v)| v * 3.0 + ((i / dims[2..].iter().product::<usize>()) % dims[1]) as f32)
        .collect();
    // two equal modules: clones would share their running statistics
    let (bn, twin) = (
        module(dims[1], &mut Rng::new(seed)),
        module(dims[1], &mut Rng::new(seed)),
    );
    let act = if relu { Activation::Relu } else { Activation::None };
    let fused = run(&bn, &x, dims, &r, act, true);
    let burn = run(&twin, &x, dims, &r, act, false);
    let (gamma, beta) = (values(bn.gamma.val()), values(bn.beta.val()));
    let want = reference(&x, &dims, &gamma, &beta, &r, relu);
    // f32 rounding (6e-8 per operation, sums of up to a few hundred terms)
    // stays far below 1e-5 of the terms' size; Burn's composition rounds more
    // (its own distance from the f64 values), so it is checked at 1e-4
    let tol = fused_tolerance();
    for (k, name) in ["output", "x grad", "gamma grad", "beta grad"].iter().enumerate() {
        let ok = want[k].close(&fused[k], tol);
        prop_assert!(
            ok.is_ok(),
            "{name} {dims:?} relu {relu}, from the f64 reference: {}",
            ok.unwrap_err()
        );
        let ok = want[k].close(&burn[k], 1e-4);
        prop_assert!(
            ok.is_ok(),
            "{name} {dims:?} relu {relu}, Burn's BatchNorm from it: {}",
            ok.unwrap_err()
        );
    }
    for (k, name) in [(4, "running mean"), (5, "running variance")] {
        let want = &running(&x, &dims)[k - 4];
        let ok = want.close(&fused[k], tol);
        prop_assert!(
            ok.is_ok(),
            "{name} {dims:?}, from the f64 reference: {}",
            ok.unwrap_err()
        );
        let ok = want.close(&burn[k], 1e-4);
        prop_assert!(
            ok.is_ok(),
            "{name} {dims:?}, Burn's BatchNorm from it: {}",
            ok.unwrap_err()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    #[test]
    fn fused_batch_norm_matches_the_equations_and_burn_4d(
        n in 2usize..5, c in 1usize..6, h in 2usize..7, w in 2usize..9, relu: bool, seed: u64,
    ) {
        // at least 8 values per channel: with two, ∂x is exactly 0 and only rounding is left
        check([n, c, h, w], relu, seed)?;
    }

    #[test]
    fn fused_batch_norm_matches_the_equations_and_burn_2d_3d(
        n in 8usize..40, c in 1usize..6, l in 1usize..20, relu: bool, seed: u64,
    ) {
        check([n, c], relu, seed)?;
        check([n, c, l], relu, seed)?;
    }
}

/// Output, ∂γ and ∂β of `sum(r ⊙ relu(BN(x)))` for an `x` given channel-first
/// (`[c, n, h, w]`, handed over as its non-contiguous `[n, c, h, w]` view)
/// and not tracked itself.
fn run_untracked_view(bn: &BatchNorm, x_cnhw: &[f32], dims: [usize; 4], r: &[f32], fused: bool) -> [Vec<f32>; 3] {
    let dev = device().autodiff();
    let [n, c, h, w] = dims;
    let xt: Tensor<4> = tensor(x_cnhw.to_vec(), [c, n, h, w], &dev).swap_dims(0, 1);
    let y = if fused {
        batch_norm(bn, xt, Activation::Relu)
    } else {
        relu(bn.forward(xt))
    };
    let grads = (y.clone() * tensor(r.to_vec(), dims, &dev)).sum().backward();
    [
        values(y),
        values(bn.gamma.val().grad(&grads).expect("gamma grad")),
        values(bn.beta.val().grad(&grads).expect("beta grad")),
    ]
}

#[test]
fn constant_and_symmetric_channels_a_strided_view_and_an_untracked_input() {
    // channel 0 constant (σ² = 0: the output is β), channel 1 symmetric about
    // 0 with β = 0 (values at the mean land exactly on the ReLU's 0), channel 2 random
    let (n, c, h, w) = (3, 3, 2, 3);
    let per = n * h * w;
    let mut rng = Rng::new(11);
    let mut x_cnhw = vec![1.5f32; per];
    x_cnhw.extend((0..per).map(|i| ((i % 9) as f32 - 4.0) * 0.25)); // mean exactly 0, two values at it
    x_cnhw.extend(rand(&mut rng, per));
    let r = rand(&mut rng, n * c * h * w);
    let dev = device().autodiff();
    let fresh = || {
        let mut bn = module(c, &mut Rng::new(3));
        bn.beta = Param::from_tensor(tensor(vec![0.5, 0.0, -0.2], [c], &dev));
        bn
    };
    let fused = run_untracked_view(&fresh(), &x_cnhw, [n, c, h, w], &r, true);
    let burn = run_untracked_view(&fresh(), &x_cnhw, [n, c, h, w], &r, false);
    // the f64 reference wants [n, c, h, w] order
    let mut x = vec![0.0f32; x_cnhw.len()];
    for ch in 0..c {
        for i in 0..n {
            for k in 0..h * w {
                x[(i * c + ch) * h * w + k] = x_cnhw[(ch * n + i) * h * w + k];
            }
        }
    }
    let (gamma, beta) = (values(fresh().gamma.val()), vec![0.5, 0.0, -0.2]);
    let want = reference(&x, &[n, c, h, w], &gamma, &beta, &r, true);
    for (k, (name, reference)) in [("output", 0), ("gamma grad", 2), ("beta grad", 3)]
        .into_iter()
        .enumerate()
    {
        let ok = want[reference].close(&fused[k], fused_tolerance());
        assert!(ok.is_ok(), "{name}, from the f64 reference: {}", ok.unwrap_err());
        let ok = want[reference].close(&burn[k], 1e-4);
        assert!(ok.is_ok(), "{name}, Burn's BatchNorm from it: {}", ok.unwrap_err());
    }
    assert!(
        fused[0][..h * w].iter().all(|&v| v == 0.5),
        "a constant channel normalises to β"
    );
}

#[test]
fn outside_training_it_is_the_module_itself() {
    // on an inner (non-autodiff) device it is bn.forward, then the ReLU
    let mut rng = Rng::new(5);
    let bn = module(3, &mut rng);
    let x = rand(&mut rng, 2 * 3 * 4);
    let inner = device();
    let bn_inner = bn.valid();
    let want = values(relu(bn_inner.forward(tensor(x.clone(), [2, 3, 4], &inner))));
    let got = values(batch_norm(&bn_inner, tensor(x, [2, 3, 4], &inner), Activation::Relu));
    assert_eq!(got, want);
    assert_eq!(
        values(bn_inner.running_mean.value()),
        vec![0.0; 3],
        "inference leaves the statistics"
    );
}

#[test]
fn an_empty_batch_has_zero_parameter_gradients() {
    use sparse_kernels::cpu::batch_norm::{Layout, Saved, backward};
    let two = [1.0f32, 1.0];
    let saved = Saved {
        gamma: &two,
        beta: &two,
        mean: &[f32::NAN; 2],
        var: &[f32::NAN; 2],
        eps: 1e-5,
        act: Activation::Relu,
    };
    let b = backward(&[], &[], Layout { n: 0, c: 2, s: 3 }, saved);
    assert_eq!((b.dx.len(), b.dgamma, b.dbeta), (0, vec![0.0; 2], vec![0.0; 2]));
}
