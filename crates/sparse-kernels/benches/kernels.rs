//! Sparse vs dense flex, side by side in one run, alternating order each round.
//!
//! `cargo bench -p sparse-kernels --bench kernels -- [--quick] [--out FILE] [--sparse-only N] [--portable|--avx2] [FILTER]`
//!
//! `--portable` runs the portable kernels even where the x86 ones would, and
//! `--avx2` the AVX2 ones where the AVX-512 ones would (`cpu::limit_kernels`),
//! to measure what each path gains.
//!
//! `--sparse-only N` runs only the sparse side of each case, `N` times, with no
//! timing: for instruction counts (run it under `valgrind --tool=callgrind`
//! with `N` and with 0; the difference over `N` is the cost of one call).
//!
//! For every case the dense Burn flex layer (masked weights, same bias) and the
//! sparse layer run in turns; each sample is the mean over `inner` calls; the
//! quartiles of both and the ratio of medians are printed, and everything is
//! written as JSON (default `target/bench-kernels.json`).

use std::time::Instant;

use burn::module::Param;
use burn::nn::conv::Conv2dConfig;
use burn::nn::{LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor, TensorData};
use sparse_core::{Mask, Pattern, Rng, SparseLayer};
use sparse_kernels::cpu::KernelLevel;
use sparse_kernels::timing::quartiles;
use sparse_kernels::{Activation, FormatKind, SparseConv2d, SparseLinear};

struct Args {
    quick: bool,
    out: String,
    filter: Option<String>,
    sparse_only: Option<usize>,
    kernels: KernelLevel,
}

fn args() -> Args {
    let mut a = Args {
        quick: false,
        out: "target/bench-kernels.json".into(),
        filter: None,
        sparse_only: None,
        kernels: KernelLevel::Fastest,
    };
    let mut it = std::env::args().skip(1);
    while let Some(s) = it.next() {
        match s.as_str() {
            "--quick" => a.quick = true,
            "--out" => a.out = it.next().unwrap_or(a.out),
            "--bench" => {}
            "--portable" => a.kernels = KernelLevel::Portable,
            "--avx2" => a.kernels = KernelLevel::Avx2,
            "--sparse-only" => a.sparse_only = it.next().and_then(|n| n.parse().ok()),
            f if !f.starts_with('-') => a.filter = Some(f.to_string()),
            _ => {}
        }
    }
    a
}

/// Runs the sparse side `n` times without timing (`--sparse-only`); true if it did.
fn sparse_only(a: &Args, sparse: impl FnMut()) -> bool {
    let Some(n) = a.sparse_only else {
        return false;
    };
    let mut sparse = sparse;
    for _ in 0..n {
        sparse();
    }
    true
}

/// Times `dense` and `sparse` alternately; returns per-call milliseconds samples.
fn race(rounds: usize, inner: usize, mut dense: impl FnMut(), mut sparse: impl FnMut()) -> (Vec<f64>, Vec<f64>) {
    for _ in 0..inner.max(2) {
        dense();
        sparse();
    }
    let (mut d, mut s) = (Vec::new(), Vec::new());
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        for _ in 0..inner {
            f();
        }
        t.elapsed().as_secs_f64() * 1e3 / inner as f64
    };
    for r in 0..rounds {
        if r % 2 == 0 {
            d.push(time(&mut dense));
            s.push(time(&mut sparse));
        } else {
            s.push(time(&mut sparse));
            d.push(time(&mut dense));
        }
    }
    (d, s)
}

fn report(name: &str, format: &str, (d, s): (Vec<f64>, Vec<f64>), json: &mut Vec<String>) {
    let (qd, qs) = (quartiles(d), quartiles(s));
    let ratio = qd[1] / qs[1];
    println!(
        "{name:<44} {format:<10} dense {:>9.4} ms [{:.4}, {:.4}]  sparse {:>9.4} ms [{:.4}, {:.4}]  dense/sparse {ratio:>6.2}x",
        qd[1], qd[0], qd[2], qs[1], qs[0], qs[2]
    );
    json.push(format!(
        "{{\"case\":\"{name}\",\"format\":\"{format}\",\"dense_ms\":[{:.5},{:.5},{:.5}],\"sparse_ms\":[{:.5},{:.5},{:.5}],\"ratio\":{ratio:.3}}}",
        qd[0], qd[1], qd[2], qs[0], qs[1], qs[2]
    ));
}

fn rand(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.next_f32() * 2.0 - 1.0).collect()
}

fn mask(layer: &SparseLayer, pattern: &Pattern, density: f64, rng: &mut Rng) -> Mask {
    let want = (density * layer.numel() as f64).round() as usize;
    let count = pattern.feasible_count(layer, want).expect("feasible");
    pattern.select(layer, &rng.scores(layer.numel()), count)
}

#[allow(clippy::too_many_arguments)]
fn linear_case(
    a: &Args,
    json: &mut Vec<String>,
    dev: &Device,
    name: &str,
    d_in: usize,
    d_out: usize,
    batch: usize,
    pattern: Pattern,
    density: f64,
    formats: &[FormatKind],
) {
    if a.filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
        return;
    }
    let mut rng = Rng::new(42);
    let layer = SparseLayer::linear(name, d_in, d_out);
    let m = mask(&layer, &pattern, density, &mut rng);
    let (mut w, bias) = (rand(&mut rng, d_in * d_out), rand(&mut rng, d_out));
    m.apply(&mut w);
    let mut dense = LinearConfig::new(d_in, d_out).init(dev);
    dense.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w.clone(), [d_in, d_out]), dev));
    dense.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(bias.clone(), [d_out]),
        dev,
    )));
    let x: Tensor<2> = Tensor::from_data(TensorData::new(rand(&mut rng, batch * d_in), [batch, d_in]), dev);
    let work = d_in * d_out * batch;
    let inner = (20_000_000 / work).clamp(1, 200);
    let rounds = if a.quick { 15 } else { 41 };
    for &f in formats {
        let sparse = SparseLinear::from_parts(d_in, d_out, w.clone(), bias.clone(), &m, name, f, Activation::None, dev)
            .expect("sparse layer");
        let fmt = sparse.format();
        if sparse_only(a, || drop(sparse.forward(x.clone()))) {
            continue;
        }
        let r = race(
            rounds,
            inner,
            || drop(dense.forward(x.clone())),
            || drop(sparse.forward(x.clone())),
        );
        report(&format!("{name} b{batch}"), fmt, r, json);
    }
}

#[allow(clippy::too_many_arguments)]
fn conv_case(
    a: &Args,
    json: &mut Vec<String>,
    dev: &Device,
    name: &str,
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    hw: usize,
    density: f64,
    groups: usize,
) {
    if a.filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
        return;
    }
    let mut rng = Rng::new(7);
    let shape = [c_out, c_in / groups, k, k];
    let layer = SparseLayer::conv(name, &shape);
    let m = mask(&layer, &Pattern::Unstructured, density, &mut rng);
    let (mut w, bias) = (rand(&mut rng, layer.numel()), rand(&mut rng, c_out));
    m.apply(&mut w);
    let p = k / 2;
    let mut dense = Conv2dConfig::new([c_in, c_out], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_groups(groups)
        .init(dev);
    dense.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w.clone(), shape), dev));
    dense.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(bias.clone(), [c_out]),
        dev,
    )));
    let sparse =
        SparseConv2d::from_conv(&dense, None, &m, name, FormatKind::Csr, Activation::None).expect("sparse conv");
    let x: Tensor<4> = Tensor::from_data(TensorData::new(rand(&mut rng, c_in * hw * hw), [1, c_in, hw, hw]), dev);
    if sparse_only(a, || drop(sparse.forward(x.clone()))) {
        return;
    }
    let work = c_in / groups * c_out * k * k * (hw / stride) * (hw / stride);
    let inner = (50_000_000 / work).clamp(1, 100);
    let rounds = if a.quick { 11 } else { 31 };
    let r = race(
        rounds,
        inner,
        || drop(dense.forward(x.clone())),
        || drop(sparse.forward(x.clone())),
    );
    report(name, sparse.format(), r, json);
}

/// The cost of the backend-extension path itself: the raw slice kernel
/// (`cpu::linear_forward`) against the same product called on `Tensor`s
/// (`SparseLinear::forward`: Dispatch, the flex primitives, the output tensor).
fn overhead_case(a: &Args, json: &mut Vec<String>, dev: &Device, name: &str, d_in: usize, d_out: usize) {
    if a.filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
        return;
    }
    let mut rng = Rng::new(42);
    let layer = SparseLayer::linear(name, d_in, d_out);
    let m = mask(&layer, &Pattern::ConstantFanIn, 0.1, &mut rng);
    let (w, bias) = (rand(&mut rng, d_in * d_out), rand(&mut rng, d_out));
    let sparse = SparseLinear::from_parts(
        d_in,
        d_out,
        w,
        bias.clone(),
        &m,
        name,
        FormatKind::Condensed,
        Activation::None,
        dev,
    )
    .expect("sparse layer");
    let sparse_kernels::modules::linear::LinearWeight::Sparse(sw) = &sparse.weight else {
        panic!("condensed expected")
    };
    let values: Vec<f32> = sw.values.val().into_data().try_to_vec::<f32>().expect("f32 values");
    let xh = rand(&mut rng, d_in);
    let x: Tensor<2> = Tensor::from_data(TensorData::new(xh.clone(), [1, d_in]), dev);
    let mut out = vec![0.0f32; d_out];
    let plan = sw.plan.clone();
    let mut raw = || sparse_kernels::cpu::linear_forward(&plan, &values, &xh, 1, &bias, Activation::None, &mut out);
    if sparse_only(a, &mut raw) {
        return;
    }
    let rounds = if a.quick { 15 } else { 41 };
    let (r, t) = race(rounds, 200, raw, || drop(sparse.forward(x.clone())));
    let (qr, qt) = (quartiles(r), quartiles(t));
    println!(
        "{name:<44} raw kernel {:.4} ms [{:.4}, {:.4}]  through Tensor/Dispatch {:.4} ms [{:.4}, {:.4}]  overhead {:.1} us",
        qr[1],
        qr[0],
        qr[2],
        qt[1],
        qt[0],
        qt[2],
        (qt[1] - qr[1]) * 1e3
    );
    json.push(format!(
        "{{\"case\":\"{name}\",\"raw_ms\":[{:.5},{:.5},{:.5}],\"tensor_ms\":[{:.5},{:.5},{:.5}]}}",
        qr[0], qr[1], qr[2], qt[0], qt[1], qt[2]
    ));
}

fn main() {
    let a = args();
    let dev = Device::flex();
    sparse_kernels::cpu::limit_kernels(a.kernels);
    println!(
        "sparse-kernels bench: flex, {} rayon threads, {}, {} kernels",
        rayon::current_num_threads(),
        if a.quick { "quick" } else { "full" },
        match a.kernels {
            KernelLevel::Portable => "portable",
            KernelLevel::Avx2 => "up to AVX2",
            KernelLevel::Fastest => "fastest available",
        }
    );
    let mut json = Vec::new();
    let cfi = Pattern::ConstantFanIn;
    let uns = Pattern::Unstructured;
    let nm = Pattern::NM { n: 2, m: 4 };
    use FormatKind::{Condensed, Csr, Nm};
    overhead_case(&a, &mut json, &dev, "overhead-3072x768-cfi90-b1", 3072, 768);
    linear_case(
        &a,
        &mut json,
        &dev,
        "linear-3072x768-cfi90",
        3072,
        768,
        1,
        cfi.clone(),
        0.1,
        &[Condensed, Csr],
    );
    linear_case(
        &a,
        &mut json,
        &dev,
        "linear-3072x768-cfi90",
        3072,
        768,
        256,
        cfi,
        0.1,
        &[Condensed],
    );
    linear_case(
        &a,
        &mut json,
        &dev,
        "linear-4096x4096-u90",
        4096,
        4096,
        1,
        uns.clone(),
        0.1,
        &[Csr],
    );
    linear_case(
        &a,
        &mut json,
        &dev,
        "linear-4096x4096-u90",
        4096,
        4096,
        256,
        uns.clone(),
        0.1,
        &[Csr],
    );
    linear_case(
        &a,
        &mut json,
        &dev,
        "linear-3072x768-2:4",
        3072,
        768,
        1,
        nm.clone(),
        0.5,
        &[Nm, Csr],
    );
    linear_case(
        &a,
        &mut json,
        &dev,
        "linear-4096x4096-2:4",
        4096,
        4096,
        1,
        nm.clone(),
        0.5,
        &[Nm],
    );
    // small and larger batches (from batch 8 every storage runs the feature-major CSR product)
    for batch in [4, 8, 16, 64] {
        linear_case(
            &a,
            &mut json,
            &dev,
            "linear-3072x768-2:4",
            3072,
            768,
            batch,
            nm.clone(),
            0.5,
            &[Nm],
        );
        let cfi = Pattern::ConstantFanIn;
        linear_case(
            &a,
            &mut json,
            &dev,
            "linear-3072x768-cfi90",
            3072,
            768,
            batch,
            cfi,
            0.1,
            &[Condensed],
        );
    }
    for d in [0.05, 0.2, 0.3, 0.4, 0.5] {
        let name = format!("crossover-linear-1024x1024-u{}", (100.0 * (1.0 - d)) as u32);
        linear_case(&a, &mut json, &dev, &name, 1024, 1024, 1, uns.clone(), d, &[Csr]);
        linear_case(&a, &mut json, &dev, &name, 1024, 1024, 64, uns.clone(), d, &[Csr]);
    }
    // small layers, where a fixed cost per call decides (the char transformer's
    // 128-wide projections): the size below which `auto` keeps linears dense
    for n in [128, 256, 512] {
        let name = format!("small-linear-{n}x{n}-u90");
        linear_case(&a, &mut json, &dev, &name, n, n, 1, uns.clone(), 0.1, &[Csr]);
        linear_case(&a, &mut json, &dev, &name, n, n, 64, uns.clone(), 0.1, &[Csr]);
    }
    // ResNet-50 and MobileNetV1 layer shapes at 90%, batch 1
    let convs: [(&str, usize, usize, usize, usize, usize); 10] = [
        ("r50-l1-conv1-1x1-256to64-56", 256, 64, 1, 1, 56),
        ("r50-l1-conv2-3x3-64-56", 64, 64, 3, 1, 56),
        ("r50-l1-conv3-1x1-64to256-56", 64, 256, 1, 1, 56),
        ("r50-l2-conv2-3x3-128-s2-56", 128, 128, 3, 2, 56),
        ("r50-l3-conv2-3x3-256-14", 256, 256, 3, 1, 14),
        ("r50-l4-conv2-3x3-512-7", 512, 512, 3, 1, 7),
        ("r50-l4-conv3-1x1-512to2048-7", 512, 2048, 1, 1, 7),
        ("mbv1-pw-1x1-64to128-112", 64, 128, 1, 1, 112),
        ("mbv1-pw-1x1-512-14", 512, 512, 1, 1, 14),
        ("mbv1-pw-1x1-1024-7", 1024, 1024, 1, 1, 7),
    ];
    for (name, ci, co, k, s, hw) in convs {
        conv_case(&a, &mut json, &dev, name, ci, co, k, s, hw, 0.1, 1);
    }
    for d in [0.2f64, 0.3, 0.4, 0.5, 0.6] {
        let name = format!("crossover-conv-3x3-128-28-u{}", (100.0 * (1.0 - d)).round() as u32);
        conv_case(&a, &mut json, &dev, &name, 128, 128, 3, 1, 28, d, 1);
    }
    // 1×1 convolutions (`POINTWISE_DENSE_FROM`) at the shapes of ResNet-50's
    // stages 1, 3 and 4, over the densities ERK gives them at 90%
    for d in [0.15f64, 0.2, 0.3, 0.4, 0.5, 0.6] {
        let u = (100.0 * (1.0 - d)).round() as u32;
        for (shape, ci, co, hw) in [
            ("256to64-56", 256, 64, 56),
            ("1024to256-14", 1024, 256, 14),
            ("512to2048-7", 512, 2048, 7),
        ] {
            let name = format!("crossover-conv-1x1-{shape}-u{u}");
            conv_case(&a, &mut json, &dev, &name, ci, co, 1, 1, hw, d, 1);
        }
    }
    // k×k convolutions with few input channels per group, all weights active
    // (`DIRECT_UP_TO_CHANNELS`): MobileNetV1's depthwise convs and RGB stems
    let direct: [(&str, usize, usize, usize, usize, usize, usize); 6] = [
        ("direct-dw-3x3-32-112", 32, 32, 3, 1, 112, 32),
        ("direct-dw-3x3-64-s2-112", 64, 64, 3, 2, 112, 64),
        ("direct-dw-3x3-512-14", 512, 512, 3, 1, 14, 512),
        ("direct-dw-3x3-1024-7", 1024, 1024, 3, 1, 7, 1024),
        ("direct-stem-3x3-3to32-s2-224", 3, 32, 3, 2, 224, 1),
        ("direct-stem-7x7-3to64-s2-224", 3, 64, 7, 2, 224, 1),
    ];
    for (name, ci, co, k, s, hw, groups) in direct {
        conv_case(&a, &mut json, &dev, name, ci, co, k, s, hw, 1.0, groups);
    }
    let body = format!("[\n{}\n]\n", json.join(",\n"));
    match std::fs::write(&a.out, body) {
        Ok(()) => println!("wrote {}", a.out),
        Err(e) => eprintln!("could not write {}: {e}", a.out),
    }
}
