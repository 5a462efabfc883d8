//! The host (flex) linear kernels at realistic sizes, where the work is split
//! over threads and the x86 AVX2 kernels run when the CPU has them: every
//! format at batch 1, 3 and 12 (the batch-1 kernels; 12 for SELL storage
//! only) and 12, 20 and 40 (the feature-major product in 16-, 32- and
//! 64-wide tiles) equals an independent f64 product of the masked
//! dense matrix, on every path the CPU has: AVX-512, AVX2 and portable
//! (`cpu::limit_kernels`). One test function, so the process-wide switch is
//! never flipped under another test.

use sparse_core::{Mask, Pattern, Rng, SparseLayer};
use sparse_kernels::cpu::KernelLevel;
use sparse_kernels::formats::{self, FormatKind};
use sparse_kernels::{Activation, OpKind, cpu};

fn rand(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.next_f32() * 2.0 - 1.0).collect()
}

/// `act(x·(W⊙M) + b)` for Burn's `[d_in, d_out]` layout, summed in f64.
fn reference(x: &[f32], batch: usize, w: &[f32], m: &Mask, bias: &[f32], relu: bool) -> Vec<f32> {
    let (d_out, d_in) = (bias.len(), w.len() / bias.len());
    let mut y = Vec::with_capacity(batch * d_out);
    for b in 0..batch {
        for o in 0..d_out {
            let s: f64 = (0..d_in)
                .filter(|&i| m.get(i * d_out + o))
                .map(|i| x[b * d_in + i] as f64 * w[i * d_out + o] as f64)
                .sum::<f64>()
                + bias[o] as f64;
            y.push(if relu { s.max(0.0) as f32 } else { s as f32 });
        }
    }
    y
}

fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

/// One layer in `kind` under `pattern`, checked at batch 1 and 3.
fn check(d_in: usize, d_out: usize, pattern: Pattern, kind: FormatKind, density: f64, seed: u64) {
    let mut rng = Rng::new(seed);
    let layer = SparseLayer::linear("fc.weight", d_in, d_out);
    let count = pattern
        .feasible_count(&layer, (density * layer.numel() as f64) as usize)
        .expect("feasible count");
    let mut m = pattern.select(&layer, &rng.scores(layer.numel()), count);
    if kind == FormatKind::Condensed {
        // ablate neurons 0 and 17: their output is the bias alone
        for i in 0..d_in {
            m.set(i * d_out, false);
            m.set(i * d_out + 17, false);
        }
    }
    let (w, bias) = (rand(&mut rng, layer.numel()), rand(&mut rng, d_out));
    let built = formats::build(&layer, OpKind::Linear, &m, &w, kind, None).expect("format fits the mask");
    for batch in [1, 3, 12, 20, 40] {
        for relu in [false, true] {
            let x = rand(&mut rng, batch * d_in);
            let act = if relu { Activation::Relu } else { Activation::None };
            let mut out = vec![f32::NAN; batch * d_out];
            cpu::linear_forward(&built.plan, &built.values, &x, batch, &bias, act, &mut out);
            let want = reference(&x, batch, &w, &m, &bias, relu);
            let err = rel_err(&out, &want);
            assert!(
                err <= 1e-5,
                "{kind:?} {d_in}->{d_out} batch {batch} relu {relu} kernels {:?}: relative error {err}",
                cpu::kernel_limit()
            );
        }
    }
}

fn every_format() {
    // 3072->200: 12.5 SELL groups (a partial group), split over threads
    check(3072, 200, Pattern::ConstantFanIn, FormatKind::Condensed, 0.1, 1);
    check(3072, 200, Pattern::NM { n: 2, m: 4 }, FormatKind::Nm, 0.5, 2);
    check(1024, 72, Pattern::NM { n: 1, m: 4 }, FormatKind::Nm, 0.25, 3);
    check(1024, 72, Pattern::NM { n: 2, m: 8 }, FormatKind::Nm, 0.25, 4);
    check(4000, 300, Pattern::Unstructured, FormatKind::Csr, 0.1, 5);
    check(4000, 300, Pattern::Unstructured, FormatKind::Csr, 0.013, 6);
    check(512, 64, Pattern::Block { rows: 4, cols: 4 }, FormatKind::Bsr, 0.2, 7);
}

#[test]
fn host_kernels_equal_the_masked_dense_product_on_every_path() {
    for level in [KernelLevel::Fastest, KernelLevel::Avx2, KernelLevel::Portable] {
        cpu::limit_kernels(level);
        every_format();
    }
    cpu::limit_kernels(KernelLevel::Fastest);
}
