//! Golden tests of one-shot pruning against independent computations in the test:
//!
//! * Wanda's mask from the formula `|W_ij|·‖X_j‖₂` per output neuron (and per N:M group),
//!   end to end through the capture of a Linear layer;
//! * SparseGPT's mask from `W²/[(H_FF)⁻¹]_00`, its weights against the exact OBS/least-
//!   squares solutions solved here by Gaussian elimination, the notes' worked example,
//!   the exactness of lazy batching;
//! * the reconstruction errors `‖WX − ŴX‖²`, computed here from `X` itself:
//!   least squares ≤ SparseGPT ≤ Wanda ≤ magnitude on correlated inputs.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};
use sparse_core::capture::{Capture, CaptureInputs, CaptureStop};
use sparse_core::{BackendKind, Pattern, Rng};
use sparse_methods::oneshot::magnitude::magnitude_keep;
use sparse_methods::oneshot::wanda::wanda_keep;
use sparse_methods::oneshot::{
    CaptureMode, Matrix, OneShotConfig, OneShotMethod, SparseGptSettings, Target, prune, sparsegpt_prune,
};

fn device() -> Device {
    BackendKind::from_env().unwrap().device().unwrap()
}

// ---------------------------------------------------------------- helpers

/// Solves `A·x = b` by Gaussian elimination with partial pivoting.
fn solve(a: &[Vec<f64>], b: &[f64]) -> Vec<f64> {
    let n = b.len();
    let mut m: Vec<Vec<f64>> = a.iter().zip(b).map(|(r, v)| [r.clone(), vec![*v]].concat()).collect();
    for c in 0..n {
        let p = (c..n).max_by(|&i, &j| m[i][c].abs().total_cmp(&m[j][c].abs())).unwrap();
        m.swap(c, p);
        for r in 0..n {
            if r != c {
                let f = m[r][c] / m[c][c];
                let pivot = m[c].clone();
                for (x, p) in m[r][c..].iter_mut().zip(&pivot[c..]) {
                    *x -= f * p;
                }
            }
        }
    }
    (0..n).map(|r| m[r][n] / m[r][r]).collect()
}

/// `X` as `tokens × features` with correlated columns of very different scales:
/// `X = Z·A·diag(scale)`, `Z` standard normal.
fn correlated_inputs(tokens: usize, features: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = Rng::new(seed);
    let a: Vec<Vec<f64>> = (0..features)
        .map(|i| {
            (0..features)
                .map(|j| if i == j { 1.0 } else { 0.6 * rng.normal() })
                .collect()
        })
        .collect();
    let scale: Vec<f64> = (0..features).map(|_| (rng.normal() * 1.2).exp()).collect();
    (0..tokens)
        .map(|_| {
            let z: Vec<f64> = (0..features).map(|_| rng.normal()).collect();
            (0..features)
                .map(|j| (0..features).map(|i| z[i] * a[i][j]).sum::<f64>() * scale[j])
                .collect()
        })
        .collect()
}

fn random_weights(rows: usize, cols: usize, seed: u64) -> Matrix {
    let mut rng = Rng::new(seed);
    let values = (0..rows * cols).map(|_| rng.normal()).collect();
    Matrix::from_vec(rows, cols, values).unwrap()
}

/// `Σ_t x_t x_tᵀ`.
fn gram(x: &[Vec<f64>]) -> Matrix {
    let c = x[0].len();
    Matrix::from_fn(c, c, |i, j| x.iter().map(|t| t[i] * t[j]).sum())
}

/// `‖(W₀ − W₁)·X‖²` from the tokens themselves.
fn error_on_tokens(w0: &Matrix, w1: &Matrix, x: &[Vec<f64>]) -> f64 {
    let mut e = 0.0;
    for t in x {
        for r in 0..w0.rows() {
            let d: f64 = (0..w0.cols()).map(|j| (w0.get(r, j) - w1.get(r, j)) * t[j]).sum();
            e += d * d;
        }
    }
    e
}

fn masked(w: &Matrix, keep: &[bool]) -> Matrix {
    Matrix::from_fn(w.rows(), w.cols(), |r, c| {
        if keep[r * w.cols() + c] { w.get(r, c) } else { 0.0 }
    })
}

/// `H + λI` with SparseGPT's dampening `λ = d·mean(diag H)`.
fn damped(h: &Matrix, d: f64) -> Vec<Vec<f64>> {
    let n = h.rows();
    let lambda = d * (0..n).map(|i| h.get(i, i)).sum::<f64>() / n as f64;
    (0..n)
        .map(|i| {
            (0..n)
                .map(|j| h.get(i, j) + if i == j { lambda } else { 0.0 })
                .collect()
        })
        .collect()
}

fn sub(h: &[Vec<f64>], rows: &[usize], cols: &[usize]) -> Vec<Vec<f64>> {
    rows.iter().map(|&r| cols.iter().map(|&c| h[r][c]).collect()).collect()
}

/// Least-squares optimum of one row for a fixed mask: minimise `(w − ŵ)·H·(w − ŵ)ᵀ`
/// with `ŵ_j = 0` off `kept`, i.e. `H_KK·ŵ_K = (H·w)_K`.
fn least_squares_row(h: &[Vec<f64>], w: &[f64], kept: &[usize]) -> Vec<f64> {
    let hw: Vec<f64> = kept
        .iter()
        .map(|&k| (0..w.len()).map(|j| h[k][j] * w[j]).sum())
        .collect();
    let sol = solve(&sub(h, kept, kept), &hw);
    let mut out = vec![0.0; w.len()];
    for (i, &k) in kept.iter().enumerate() {
        out[k] = sol[i];
    }
    out
}

fn kept_columns(keep: &[bool], r: usize, cols: usize) -> Vec<usize> {
    (0..cols).filter(|&c| keep[r * cols + c]).collect()
}

fn close(a: &Matrix, b: &Matrix, tol: f64) -> bool {
    a.data()
        .iter()
        .zip(b.data())
        .all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
}

// ---------------------------------------------------------------- Wanda

/// One Linear layer, the smallest model that can be captured.
#[derive(Module, Debug)]
struct OneLinear {
    fc: Linear,
}

impl CaptureInputs for OneLinear {
    type Batch = Tensor<2>;
    type Output = Tensor<2>;

    fn forward_capture(&self, x: Tensor<2>, cap: &mut Capture<'_>) -> Result<Tensor<2>, CaptureStop> {
        cap.linear("fc.weight", &self.fc, x)
    }
}

/// A fixed Linear `[d_in = 8, d_out = 5]` (Burn layout) and 30 tokens of 8 features.
fn fixed_layer() -> (OneLinear, Vec<f32>, Vec<Vec<f64>>) {
    let mut rng = Rng::new(11);
    let w: Vec<f32> = (0..8 * 5).map(|_| rng.normal() as f32).collect();
    let x = correlated_inputs(30, 8, 5);
    let d = device();
    let mut fc = LinearConfig::new(8, 5).with_bias(false).init(&d);
    fc.weight = fc
        .weight
        .map(|_| Tensor::from_data(TensorData::new(w.clone(), [8, 5]), &d));
    (OneLinear { fc }, w, x)
}

fn batches(x: &[Vec<f64>], size: usize) -> Vec<Tensor<2>> {
    x.chunks(size)
        .map(|c| {
            let flat: Vec<f32> = c.iter().flatten().map(|v| *v as f32).collect();
            Tensor::from_data(TensorData::new(flat, [c.len(), 8]), &device())
        })
        .collect()
}

/// Expected Wanda mask (Burn layout, flat index `j·5 + o`) straight from the paper's rule.
fn wanda_by_formula(w: &[f32], x: &[Vec<f64>], nm: Option<(usize, usize)>) -> Vec<bool> {
    let norm: Vec<f64> = (0..8)
        .map(|j| x.iter().map(|t| t[j] * t[j]).sum::<f64>().sqrt())
        .collect();
    let mut keep = vec![true; 40];
    for o in 0..5 {
        let score = |j: usize| f64::from(w[j * 5 + o]).abs() * norm[j];
        let groups: Vec<Vec<usize>> = match nm {
            None => vec![(0..8).collect()],
            Some((_, m)) => (0..8 / m).map(|g| (g * m..(g + 1) * m).collect()).collect(),
        };
        for group in groups {
            let mut order = group.clone();
            order.sort_by(|&a, &b| score(a).total_cmp(&score(b)));
            let prune = match nm {
                None => 4, // ⌊8 · 0.5⌋
                Some((n, m)) => m - n,
            };
            for &j in &order[..prune] {
                keep[j * 5 + o] = false;
            }
        }
    }
    keep
}

#[test]
fn wanda_mask_equals_the_formula_per_output_neuron() {
    let (model, w, x) = fixed_layer();
    for (nm, pattern, sparsity) in [
        (None, Pattern::Unstructured, 0.5),
        (Some((2, 4)), Pattern::NM { n: 2, m: 4 }, 0.5),
        (Some((1, 4)), Pattern::NM { n: 1, m: 4 }, 0.75),
    ] {
        let want = wanda_by_formula(&w, &x, nm);
        for size in [1, 7, 30] {
            let config = OneShotConfig::new(OneShotMethod::Wanda)
                .with_sparsity(sparsity)
                .with_pattern(pattern.clone());
            let out = prune(&model, &batches(&x, size), &config).unwrap();
            assert_eq!(out.layers[0].mask.to_bools(), want, "{pattern:?}, batches of {size}");
            let kept: Vec<f32> = w.iter().zip(&want).map(|(v, k)| if *k { *v } else { 0.0 }).collect();
            assert_eq!(out.layers[0].weights, kept, "Wanda must not change kept weights");
        }
    }
}

/// Scaling input feature j by c and W[j, :] by 1/c changes nothing the layer computes:
/// Wanda's mask is invariant, magnitude's is not (notes, Wanda check 4).
#[test]
fn wanda_is_invariant_to_a_feature_rescaling_that_magnitude_is_not() {
    let w = random_weights(6, 8, 2);
    let x = correlated_inputs(40, 8, 3);
    let c = [1.0, 50.0, 1.0, 0.02, 1.0, 1.0, 30.0, 1.0];
    let w2 = Matrix::from_fn(6, 8, |r, j| w.get(r, j) / c[j]);
    let sq = |x: &[Vec<f64>], s: &[f64]| -> Vec<f64> {
        (0..8).map(|j| x.iter().map(|t| (t[j] * s[j]).powi(2)).sum()).collect()
    };
    let t = Target::Sparsity(0.5);
    assert_eq!(wanda_keep(&w, &sq(&x, &[1.0; 8]), t), wanda_keep(&w2, &sq(&x, &c), t));
    assert_ne!(magnitude_keep(&w, t), magnitude_keep(&w2, t));
}

#[test]
fn magnitude_prunes_the_smallest_weights_of_the_layer() {
    let w = random_weights(4, 6, 9);
    let keep = magnitude_keep(&w, Target::Sparsity(0.5));
    let mut mags: Vec<f64> = w.data().iter().map(|v| v.abs()).collect();
    mags.sort_by(f64::total_cmp);
    let threshold = mags[11]; // 12 pruned of 24
    for (v, k) in w.data().iter().zip(&keep) {
        assert_eq!(*k, v.abs() > threshold, "{v}");
    }
}

// ---------------------------------------------------------------- SparseGPT

/// The notes' worked example: one row, H = [[2,1],[1,2]], w = [1, 2], 50%:
/// column 0 goes and column 1 becomes 2.5 (= w·H[:,1]/H_11).
#[test]
fn sparsegpt_worked_example() {
    let h = Matrix::from_vec(2, 2, vec![2.0, 1.0, 1.0, 2.0]).unwrap();
    let mut w = Matrix::from_vec(1, 2, vec![1.0, 2.0]).unwrap();
    let settings = SparseGptSettings {
        block_size: 128,
        dampening: 0.0,
    };
    let keep = sparsegpt_prune(&mut w, &h, Target::Sparsity(0.5), settings).unwrap();
    assert_eq!(keep, vec![false, true]);
    assert!(
        (w.get(0, 0)).abs() == 0.0 && (w.get(0, 1) - 2.5).abs() < 1e-14,
        "{:?}",
        w.data()
    );
}

/// With one block covering every column the mask is decided once, from the original
/// weights: the `⌊r·c·s⌋` lowest `w²/[(H_FF)⁻¹]_00`, F = {j, …, c−1} (damped H).
fn expected_single_block_mask(w: &Matrix, h: &[Vec<f64>], sparsity: f64) -> Vec<bool> {
    let c = w.cols();
    let diag: Vec<f64> = (0..c)
        .map(|j| {
            let f: Vec<usize> = (j..c).collect();
            let mut e = vec![0.0; f.len()];
            e[0] = 1.0;
            solve(&sub(h, &f, &f), &e)[0]
        })
        .collect();
    let mut idx: Vec<usize> = (0..w.rows() * c).collect();
    let score = |i: usize| w.data()[i].powi(2) / diag[i % c];
    idx.sort_by(|&a, &b| score(a).total_cmp(&score(b)).then(a.cmp(&b)));
    let mut keep = vec![true; w.rows() * c];
    let prune = ((w.rows() * c) as f64 * sparsity).floor() as usize;
    for &i in &idx[..prune] {
        keep[i] = false;
    }
    keep
}

/// SparseGPT on a 4 × 8 layer whose small weights sit in the first four columns:
/// its mask prunes exactly those (checked against the formula), every pruned column
/// precedes every kept one, and then the result must be the exact OBS / least-squares
/// optimum of that mask, solved here from the normal equations row by row.
#[test]
fn sparsegpt_equals_the_exact_optimum_when_pruned_columns_come_first() {
    let x = correlated_inputs(64, 8, 21);
    let g = gram(&x);
    let w0 = Matrix::from_fn(4, 8, |r, c| {
        let v = random_weights(4, 8, 4).get(r, c);
        if c < 4 { 1e-3 * v } else { v }
    });
    for dampening in [0.01, 1e-12] {
        let h = damped(&g, dampening);
        let mut w = w0.clone();
        let settings = SparseGptSettings {
            block_size: 128,
            dampening,
        };
        let keep = sparsegpt_prune(&mut w, &g, Target::Sparsity(0.5), settings).unwrap();
        assert_eq!(keep, expected_single_block_mask(&w0, &h, 0.5));
        for r in 0..4 {
            assert_eq!(kept_columns(&keep, r, 8), vec![4, 5, 6, 7]);
        }
        let want = Matrix::from_fn(4, 8, |r, c| least_squares_row(&h, w0.row(r), &[4, 5, 6, 7])[c]);
        assert!(
            close(&w, &want, 1e-9),
            "dampening {dampening}: {:?} vs {:?}",
            w.data(),
            want.data()
        );
        if dampening < 1e-9 {
            // undamped: the least-squares optimum of ‖(W − Ŵ)X‖² on the tokens themselves
            let e = error_on_tokens(&w0, &w, &x);
            let perturbed = Matrix::from_fn(4, 8, |r, c| w.get(r, c) + if c == 5 && r == 1 { 1e-3 } else { 0.0 });
            assert!(e < error_on_tokens(&w0, &perturbed, &x));
        }
    }
}

/// For any mask (interleaved, N:M), SparseGPT's weights are the sequential OBS solution
/// (notes, SparseGPT check 3): sweeping columns in order, each pruned column `i` is set
/// to 0 and the later columns `R = {j > i}` re-solved with `S = {j ≤ i}` fixed,
/// `w_R = w0_R − (w_S − w0_S)·H_SR·H_RR⁻¹`. That solution is never better than the
/// global least-squares optimum of the same mask.
#[test]
fn sparsegpt_matches_sequential_obs_and_is_bounded_by_least_squares() {
    for (seed, target) in [
        (1, Target::Sparsity(0.5)),
        (2, Target::Sparsity(0.5)),
        (3, Target::NM { n: 2, m: 4 }),
        (4, Target::NM { n: 2, m: 4 }),
    ] {
        let x = correlated_inputs(50, 8, 100 + seed);
        let g = gram(&x);
        let h = damped(&g, 0.01);
        let w0 = random_weights(4, 8, seed);
        let mut w = w0.clone();
        let keep = sparsegpt_prune(&mut w, &g, target, SparseGptSettings::default()).unwrap();
        for r in 0..4 {
            let mut cur = w0.row(r).to_vec();
            for i in 0..8 {
                if keep[r * 8 + i] {
                    continue;
                }
                cur[i] = 0.0;
                let s: Vec<usize> = (0..=i).collect();
                let rest: Vec<usize> = (i + 1..8).collect();
                if rest.is_empty() {
                    continue;
                }
                // (w_S − w0_S)·H_SR, then solve H_RR·y = that (H symmetric)
                let ds: Vec<f64> = s.iter().map(|&k| cur[k] - w0.get(r, k)).collect();
                let rhs: Vec<f64> = rest
                    .iter()
                    .map(|&j| s.iter().zip(&ds).map(|(&k, d)| d * h[k][j]).sum())
                    .collect();
                let y = solve(&sub(&h, &rest, &rest), &rhs);
                for (idx, &j) in rest.iter().enumerate() {
                    cur[j] = w0.get(r, j) - y[idx];
                }
            }
            for (c, want) in cur.iter().enumerate() {
                assert!(
                    (w.get(r, c) - want).abs() < 1e-9,
                    "seed {seed}, row {r}, column {c}: {} vs {want}",
                    w.get(r, c)
                );
            }
            let ls = least_squares_row(&h, w0.row(r), &kept_columns(&keep, r, 8));
            let q = |v: &[f64]| -> f64 {
                let d: Vec<f64> = (0..8).map(|j| w0.get(r, j) - v[j]).collect();
                (0..8).map(|i| (0..8).map(|j| d[i] * h[i][j] * d[j]).sum::<f64>()).sum()
            };
            assert!(q(&ls) <= q(w.row(r)) * (1.0 + 1e-12), "seed {seed}, row {r}");
        }
        if let Target::NM { n, m } = target {
            for r in 0..4 {
                for grp in 0..8 / m {
                    let kept = (0..m).filter(|k| keep[r * 8 + grp * m + k]).count();
                    assert_eq!(kept, n);
                }
            }
        }
    }
}

/// Lazy batching is exact algebra: with N:M masks (chosen from the current weights at
/// each group) block sizes 4, 8 and 16 give the same weights.
#[test]
fn sparsegpt_lazy_blocks_are_exact() {
    let x = correlated_inputs(80, 16, 7);
    let g = gram(&x);
    let w0 = random_weights(3, 16, 8);
    let run = |b: usize| {
        let mut w = w0.clone();
        let settings = SparseGptSettings {
            block_size: b,
            dampening: 0.01,
        };
        let keep = sparsegpt_prune(&mut w, &g, Target::NM { n: 2, m: 4 }, settings).unwrap();
        (w, keep)
    };
    let (w16, k16) = run(16);
    for b in [4, 8] {
        let (w, k) = run(b);
        assert_eq!(k, k16, "block {b}");
        assert!(close(&w, &w16, 1e-10), "block {b}");
    }
}

/// On random correlated inputs: least squares (SparseGPT's mask) ≤ SparseGPT ≤ Wanda ≤
/// magnitude, each error computed from the tokens here.
#[test]
fn reconstruction_error_ordering_on_correlated_inputs() {
    for seed in 0..6 {
        let x = correlated_inputs(96, 16, 200 + seed);
        let g = gram(&x);
        let w0 = random_weights(8, 16, 300 + seed);
        for target in [Target::Sparsity(0.5), Target::NM { n: 2, m: 4 }] {
            let sq: Vec<f64> = (0..16).map(|j| g.get(j, j)).collect();
            let mag = error_on_tokens(&w0, &masked(&w0, &magnitude_keep(&w0, target)), &x);
            let wanda = error_on_tokens(&w0, &masked(&w0, &wanda_keep(&w0, &sq, target)), &x);
            let mut w = w0.clone();
            let keep = sparsegpt_prune(&mut w, &g, target, SparseGptSettings::default()).unwrap();
            let sgpt = error_on_tokens(&w0, &w, &x);
            let h = damped(&g, 0.0);
            let ls = Matrix::from_fn(8, 16, |r, c| {
                least_squares_row(&h, w0.row(r), &kept_columns(&keep, r, 16))[c]
            });
            let opt = error_on_tokens(&w0, &ls, &x);
            assert!(
                opt <= sgpt * (1.0 + 1e-9) && sgpt <= wanda && wanda <= mag,
                "seed {seed}, {target:?}: least squares {opt:.4}, SparseGPT {sgpt:.4}, Wanda {wanda:.4}, magnitude {mag:.4}"
            );
        }
    }
}

// ---------------------------------------------------------------- driver

#[test]
fn the_driver_reports_the_error_it_leaves_and_both_modes_agree_on_one_layer() {
    let (model, w, x) = fixed_layer();
    let w0 = Matrix::from_fn(5, 8, |o, j| f64::from(w[j * 5 + o]));
    for mode in [CaptureMode::Sequential, CaptureMode::OnePass] {
        let config = OneShotConfig::new(OneShotMethod::SparseGpt).with_mode(mode.clone());
        let out = prune(&model, &batches(&x, 8), &config).unwrap();
        let l = &out.layers[0];
        let w1 = Matrix::from_fn(5, 8, |o, j| f64::from(l.weights[j * 5 + o]));
        let e = error_on_tokens(&w0, &w1, &x);
        assert!(
            (l.error.unwrap() - e).abs() < 1e-3 * e,
            "{mode:?}: reported {:?}, measured {e}",
            l.error
        );
        assert!((l.sparsity() - 0.5).abs() < 1e-12);
        let applied = out.apply(model.clone()).unwrap();
        assert_eq!(sparse_core::host::to_vec(applied.fc.weight.val()).unwrap(), l.weights);
        assert_eq!(applied.fc.weight.id, model.fc.weight.id);
    }
}

#[test]
fn bad_requests_get_clear_errors() {
    let (model, _, x) = fixed_layer();
    let data = batches(&x, 10);
    let err = |c: OneShotConfig, d: &[Tensor<2>]| prune(&model, d, &c).unwrap_err().to_string();
    assert!(err(OneShotConfig::new(OneShotMethod::Wanda), &[]).contains("calibration"));
    let e = err(
        OneShotConfig::new(OneShotMethod::Wanda)
            .with_pattern(Pattern::NM { n: 2, m: 4 })
            .with_sparsity(0.3),
        &data,
    );
    assert!(e.contains("2:4") && e.contains("0.5"), "{e}");
    let e = err(
        OneShotConfig::new(OneShotMethod::Wanda)
            .with_pattern(Pattern::NM { n: 2, m: 3 })
            .with_sparsity(1.0 / 3.0),
        &data,
    );
    assert!(e.contains("fan-in 8"), "{e}");
    assert!(err(OneShotConfig::new(OneShotMethod::Magnitude).with_sparsity(1.0), &data).contains("sparsity"));
    assert!(
        err(
            OneShotConfig::new(OneShotMethod::Wanda).with_pattern(Pattern::Channel),
            &data
        )
        .contains("channel")
    );
    let e = err(
        OneShotConfig::new(OneShotMethod::SparseGpt)
            .with_block_size(6)
            .with_pattern(Pattern::NM { n: 2, m: 4 }),
        &data,
    );
    assert!(e.contains("multiple of M"), "{e}");
    // magnitude needs no data
    let out = prune(&model, &[], &OneShotConfig::new(OneShotMethod::Magnitude)).unwrap();
    assert_eq!(out.layers[0].error, None);
    assert_eq!(out.layers[0].mask.count_ones(), 20);
}
