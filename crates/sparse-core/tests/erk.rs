//! ERK over the ResNet-50 layer shapes, checked against an independent
//! water-filling solver written here (bisection on ε of
//! `Σ_l min(1, ε·r_l)·N_l = d·N`), at 80% and 90% sparsity.

use sparse_core::distribution::{Allocation, erk_scores, scaled_densities};
use sparse_core::{Distribution, SparseLayer};

fn conv(path: String, out: usize, inp: usize, k: usize) -> SparseLayer {
    SparseLayer::conv(&path, &[out, inp, k, k])
}

/// The 53 convolutions and the classifier of torchvision's ResNet-50 (v1.5), Burn layout.
fn resnet50_layers() -> Vec<SparseLayer> {
    let mut layers = vec![conv("conv1.weight".into(), 64, 3, 7)];
    let mut in_ch = 64;
    for (stage, (blocks, mid)) in [(3, 64), (4, 128), (6, 256), (3, 512)].into_iter().enumerate() {
        let out = mid * 4;
        for b in 0..blocks {
            let p = format!("layer{}.{b}", stage + 1);
            layers.push(conv(format!("{p}.conv1.weight"), mid, in_ch, 1));
            layers.push(conv(format!("{p}.conv2.weight"), mid, mid, 3));
            layers.push(conv(format!("{p}.conv3.weight"), out, mid, 1));
            if b == 0 {
                layers.push(conv(format!("{p}.downsample.weight"), out, in_ch, 1));
            }
            in_ch = out;
        }
    }
    layers.push(SparseLayer::linear("fc.weight", 2048, 1000));
    layers
}

/// Independent solver: ERK raw scores recomputed from the shapes, then bisection.
fn brute_force(layers: &[SparseLayer], density: f64) -> Vec<f64> {
    let raw: Vec<f64> = layers
        .iter()
        .map(|l| {
            let s: usize = l.shape.iter().sum();
            let p: usize = l.shape.iter().product();
            s as f64 / p as f64
        })
        .collect();
    let n: Vec<f64> = layers
        .iter()
        .map(|l| l.shape.iter().product::<usize>() as f64)
        .collect();
    let target = density * n.iter().sum::<f64>();
    let kept = |eps: f64| -> f64 { raw.iter().zip(&n).map(|(r, n)| (eps * r).min(1.0) * n).sum() };
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while kept(hi) < target {
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if kept(mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    raw.iter().map(|r| (hi * r).min(1.0)).collect()
}

#[test]
fn resnet50_has_the_published_weight_count() {
    let n: usize = resnet50_layers().iter().map(SparseLayer::numel).sum();
    // 25,557,032 parameters minus 53,120 BatchNorm and 1,000 fc-bias parameters
    assert_eq!(resnet50_layers().len(), 54);
    assert_eq!(n, 25_557_032 - 53_120 - 1_000);
}

#[test]
fn erk_matches_brute_force_on_resnet50() {
    let layers = resnet50_layers();
    let numels: Vec<usize> = layers.iter().map(SparseLayer::numel).collect();
    let total: usize = numels.iter().sum();
    for sparsity in [0.8, 0.9] {
        let density = 1.0 - sparsity;
        let expected = brute_force(&layers, density);
        let ours = scaled_densities(&numels, &erk_scores(&layers, 1.0), density);
        for (l, (a, b)) in ours.iter().zip(&expected).enumerate() {
            assert!((a - b).abs() < 1e-9, "layer {} ({}): {a} vs {b}", l, layers[l].path);
        }

        let Allocation::PerLayer(counts) = Distribution::Erk { power_scale: 1.0 }
            .allocate(&layers, sparsity)
            .unwrap()
        else {
            panic!("ERK allocates per layer")
        };
        assert_eq!(counts.iter().sum::<usize>(), (density * total as f64).round() as usize);
        for (l, c) in counts.iter().enumerate() {
            let exact = expected[l] * numels[l] as f64;
            assert!(
                (*c as f64 - exact).abs() < 1.0,
                "layer {}: {c} vs {exact}",
                layers[l].path
            );
        }
    }
}

#[test]
fn erk_power_zero_is_uniform_and_er_ignores_the_kernel() {
    let layers = resnet50_layers();
    let numels: Vec<usize> = layers.iter().map(SparseLayer::numel).collect();
    for d in scaled_densities(&numels, &erk_scores(&layers, 0.0), 0.1) {
        assert!((d - 0.1).abs() < 1e-12);
    }
    let er = sparse_core::distribution::er_scores(&layers);
    // conv2 of layer1.0 is 64x64x3x3: ER score (64+64)/(64*64)
    assert!((er[2] - 128.0 / 4096.0).abs() < 1e-15);
}
