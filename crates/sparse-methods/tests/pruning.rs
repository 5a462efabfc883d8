//! SNIP, GraSP, GMP and lottery tickets against their definitions.

#![allow(clippy::needless_range_loop)] // index loops mirror the formulas

use crate::common;

use burn::module::{Module, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use common::{Data, Mlp, device, host};
use sparse_core::method::{GradRequest, GradientOracle};
use sparse_core::{Distribution, Mask, OptimizerConfig, SparseError, Sparsifier, SparsityConfig, SparsitySchedule};
use sparse_methods::grasp::{hessian_gradient, keep_scores};
use sparse_methods::lth::{self, LthConfig, LthCount, RewindKind};
use sparse_methods::{Gmp, Grasp, GraspConfig, Snip};

fn grads_fn(data: Data) -> impl FnMut(&Mlp, &GradRequest) -> sparse_core::Result<GradientsParams> {
    move |model: &Mlp, _req: &GradRequest| Ok(model.grads(&data))
}

#[test]
fn snip_keeps_every_score_above_every_dropped_one() {
    let data = Data::new(64, 12, 4, 0.5, 1);
    for distribution in [Distribution::Erk { power_scale: 1.0 }, Distribution::Global] {
        let model = Mlp::new(&[12, 16, 4], false, &device());
        let config = SparsityConfig::new()
            .with_sparsity(0.8)
            .with_distribution(distribution.clone());
        let mut sparse = Sparsifier::new(&model, config, Snip, &OptimizerConfig::sgd(0.0, 0.0)).unwrap();
        // scores |g ⊙ θ| computed here, before pruning
        let grads = model.grads(&data);
        let scores: Vec<Vec<f32>> = (0..2)
            .map(|l| {
                let g = host(grads.get::<2>(model.weight_id(l)).unwrap());
                model.weight(l).iter().zip(&g).map(|(w, g)| (w * g).abs()).collect()
            })
            .collect();
        sparse.init_with(model, grads_fn(data.clone())).unwrap();
        let masks = sparse.masks();
        let (mut kept_min, mut dropped_max) = (f32::INFINITY, f32::NEG_INFINITY);
        for l in 0..2 {
            let (mut lk, mut ld) = (f32::INFINITY, f32::NEG_INFINITY);
            for (i, s) in scores[l].iter().enumerate() {
                if masks[l].get(i) {
                    lk = lk.min(*s)
                } else {
                    ld = ld.max(*s)
                }
            }
            if distribution != Distribution::Global {
                assert!(ld <= lk, "layer {l}: dropped {ld} > kept {lk}");
            }
            kept_min = kept_min.min(lk);
            dropped_max = dropped_max.max(ld);
        }
        if distribution == Distribution::Global {
            assert!(
                dropped_max <= kept_min,
                "global: dropped {dropped_max} > kept {kept_min}"
            );
        }
        assert!((sparse.report().sparsity() - 0.8).abs() < 1e-3);
    }
}

#[test]
fn snip_without_data_says_how_to_give_it() {
    let model = Mlp::new(&[4, 4], false, &device());
    let mut sparse = Sparsifier::new(&model, SparsityConfig::new(), Snip, &OptimizerConfig::sgd(0.0, 0.0)).unwrap();
    let err = sparse.init(model).unwrap_err();
    assert!(err.to_string().contains("init_with"), "{err}");
}

// ---------- GraSP: finite-difference H·g against an exact analytic H·g ----------

const T: f64 = 200.0;

/// An MLP x·W1 → tanh → ·W2 with softmax cross-entropy on logits / T, in Burn.
#[derive(Module, Debug)]
struct TanhNet {
    w1: Param<Tensor<2>>,
    w2: Param<Tensor<2>>,
}

struct Problem {
    x: Vec<f64>,
    y: Vec<usize>,
    b: usize,
    d: usize,
    h: usize,
    c: usize,
}

impl TanhNet {
    fn from(w1: &[f32], w2: &[f32], p: &Problem) -> Self {
        let device = device();
        let t =
            |v: &[f32], r, c| Param::from_tensor(Tensor::<2>::from_data(TensorData::new(v.to_vec(), [r, c]), &device));
        Self {
            w1: t(w1, p.d, p.h),
            w2: t(w2, p.h, p.c),
        }
    }

    fn grads(&self, p: &Problem, temperature: f32) -> Vec<Vec<f32>> {
        let device = device();
        let x = Tensor::<2>::from_data(
            TensorData::new(p.x.iter().map(|v| *v as f32).collect::<Vec<_>>(), [p.b, p.d]),
            &device,
        );
        let y = Tensor::<1, burn::tensor::Int>::from_data(
            TensorData::new(p.y.iter().map(|v| *v as i64).collect::<Vec<_>>(), [p.b]),
            &device,
        );
        let logits = x
            .matmul(self.w1.val())
            .tanh()
            .matmul(self.w2.val())
            .div_scalar(temperature);
        let loss = CrossEntropyLossConfig::new().init(&device).forward(logits, y);
        let g = GradientsParams::from_grads(loss.backward(), self);
        vec![
            host(g.get::<2>(self.w1.id).unwrap()),
            host(g.get::<2>(self.w2.id).unwrap()),
        ]
    }
}

struct Oracle<'a> {
    p: &'a Problem,
    weights: Vec<Vec<f32>>,
}

impl GradientOracle for Oracle<'_> {
    fn gradients(&mut self, weights: Option<&[Vec<f32>]>, request: &GradRequest) -> sparse_core::Result<Vec<Vec<f32>>> {
        let w = weights
            .map(<[Vec<f32>]>::to_vec)
            .unwrap_or_else(|| self.weights.clone());
        Ok(TanhNet::from(&w[0], &w[1], self.p).grads(self.p, request.temperature))
    }
}

/// Exact `H v` of the mean cross-entropy of softmax(tanh(x W1) W2 / T), by
/// Pearlmutter's R-operator, in f64.
fn exact_hv(p: &Problem, w1: &[f64], w2: &[f64], v1: &[f64], v2: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (b, d, h, c) = (p.b, p.d, p.h, p.c);
    let mm = |a: &[f64], bm: &[f64], n: usize, k: usize, m: usize| -> Vec<f64> {
        let mut out = vec![0.0; n * m];
        for i in 0..n {
            for j in 0..m {
                out[i * m + j] = (0..k).map(|t| a[i * k + t] * bm[t * m + j]).sum();
            }
        }
        out
    };
    let tr = |a: &[f64], n: usize, m: usize| -> Vec<f64> {
        let mut out = vec![0.0; n * m];
        for i in 0..n {
            for j in 0..m {
                out[j * n + i] = a[i * m + j];
            }
        }
        out
    };
    let a = mm(&p.x, w1, b, d, h);
    let z: Vec<f64> = a.iter().map(|v| v.tanh()).collect();
    let o = mm(&z, w2, b, h, c);
    let mut prob = vec![0.0; b * c];
    for i in 0..b {
        let row: Vec<f64> = (0..c).map(|j| o[i * c + j] / T).collect();
        let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = row.iter().map(|v| (v - mx).exp()).collect();
        let s: f64 = e.iter().sum();
        for j in 0..c {
            prob[i * c + j] = e[j] / s;
        }
    }
    let mut dout = prob.clone();
    for i in 0..b {
        dout[i * c + p.y[i]] -= 1.0;
    }
    let dout: Vec<f64> = dout.iter().map(|v| v / (b as f64 * T)).collect();
    let dz = mm(&dout, &tr(w2, h, c), b, c, h);
    // R-pass
    let ra = mm(&p.x, v1, b, d, h);
    let rz: Vec<f64> = ra.iter().zip(&z).map(|(r, z)| (1.0 - z * z) * r).collect();
    let ro: Vec<f64> = mm(&rz, w2, b, h, c)
        .iter()
        .zip(mm(&z, v2, b, h, c))
        .map(|(a, b)| a + b)
        .collect();
    let mut rdout = vec![0.0; b * c];
    for i in 0..b {
        let rs: Vec<f64> = (0..c).map(|j| ro[i * c + j] / T).collect();
        let avg: f64 = (0..c).map(|j| prob[i * c + j] * rs[j]).sum();
        for j in 0..c {
            rdout[i * c + j] = prob[i * c + j] * (rs[j] - avg) / (b as f64 * T);
        }
    }
    let hv2: Vec<f64> = mm(&tr(&rz, b, h), &dout, h, b, c)
        .iter()
        .zip(mm(&tr(&z, b, h), &rdout, h, b, c))
        .map(|(a, b)| a + b)
        .collect();
    let rdz: Vec<f64> = mm(&rdout, &tr(w2, h, c), b, c, h)
        .iter()
        .zip(mm(&dout, &tr(v2, h, c), b, c, h))
        .map(|(a, b)| a + b)
        .collect();
    let rda: Vec<f64> = (0..b * h)
        .map(|k| rdz[k] * (1.0 - z[k] * z[k]) + dz[k] * (-2.0 * z[k] * rz[k]))
        .collect();
    let hv1 = mm(&tr(&p.x, b, d), &rda, d, b, h);
    (hv1, hv2)
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn global_keep(scores: &[f64], keep: usize) -> Vec<bool> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut out = vec![false; scores.len()];
    for &i in &idx[..keep] {
        out[i] = true;
    }
    out
}

#[test]
fn grasp_finite_difference_hg_matches_the_exact_product() {
    let (b, d, h, c) = (40, 16, 24, 4);
    let mut rng = sparse_core::Rng::new(21);
    let p = Problem {
        x: (0..b * d).map(|_| rng.normal()).collect(),
        y: (0..b).map(|i| i % c).collect(),
        b,
        d,
        h,
        c,
    };
    let w1: Vec<f32> = (0..d * h).map(|_| (rng.normal() * 0.6) as f32).collect();
    let w2: Vec<f32> = (0..h * c).map(|_| (rng.normal() * 0.6) as f32).collect();
    let weights = vec![w1.clone(), w2.clone()];
    let mut oracle = Oracle {
        p: &p,
        weights: weights.clone(),
    };
    let request = GradRequest {
        temperature: T as f32,
        samples_per_class: Some(10),
    };
    let (g, hg) = hessian_gradient(&mut oracle, &weights, &request, 5e-3).unwrap();

    let f64v = |v: &[f32]| v.iter().map(|x| f64::from(*x)).collect::<Vec<_>>();
    let (e1, e2) = exact_hv(&p, &f64v(&w1), &f64v(&w2), &f64v(&g[0]), &f64v(&g[1]));
    let fd: Vec<f64> = hg.concat();
    let exact: Vec<f64> = e1.iter().chain(&e2).copied().collect();
    let cos = cosine(&fd, &exact);
    assert!(cos > 0.999, "cosine {cos}");

    // masks at 90% sparsity from the two score vectors (global, keep the lowest −θ⊙Hg)
    let theta: Vec<f64> = f64v(&w1).into_iter().chain(f64v(&w2)).collect();
    let keep = theta.len() / 10;
    let ours = global_keep(
        &keep_scores(&weights, &hg)
            .concat()
            .iter()
            .map(|x| f64::from(*x))
            .collect::<Vec<_>>(),
        keep,
    );
    let reference = global_keep(&theta.iter().zip(&exact).map(|(t, h)| t * h).collect::<Vec<_>>(), keep);
    let inter = ours.iter().zip(&reference).filter(|(a, b)| **a && **b).count() as f64;
    let union = ours.iter().zip(&reference).filter(|(a, b)| **a || **b).count() as f64;
    assert!(inter / union > 0.98, "IoU {}", inter / union);
}

#[test]
fn grasp_checks_its_samples() {
    for (per_class, classes) in [(0, 10), (3, 0)] {
        // the settings are checked when GraSP is built, before any data is scored
        let err = Grasp::new(GraspConfig::new().with_samples_per_class(per_class), classes).unwrap_err();
        assert!(
            err.to_string().contains("samples") && err.to_string().contains("class"),
            "{err}"
        );
    }
}

#[test]
fn grasp_prunes_to_the_target_through_the_hook() {
    let data = Data::new(80, 12, 4, 0.5, 1);
    let model = Mlp::new(&[12, 16, 4], false, &device());
    let grasp = Grasp::new(GraspConfig::new(), 4).unwrap();
    let config = SparsityConfig::new()
        .with_sparsity(0.9)
        .with_distribution(Distribution::Global);
    let mut sparse = Sparsifier::new(&model, config, grasp, &OptimizerConfig::sgd(0.0, 0.0)).unwrap();
    let d2 = data.clone();
    sparse
        .init_with(model, move |m: &Mlp, req: &GradRequest| {
            assert_eq!(req.temperature, 200.0);
            assert_eq!(req.samples_per_class, Some(10));
            Ok(m.grads(&d2))
        })
        .unwrap();
    assert!((sparse.report().sparsity() - 0.9).abs() <= 1.0 / 256.0);
}

// ---------- GMP ----------

#[test]
fn gmp_follows_the_cubic_schedule_and_never_revives() {
    let data = Data::new(64, 20, 4, 0.5, 1);
    let device = device();
    let mut model = Mlp::new(&[20, 30, 4], false, &device);
    let schedule = SparsitySchedule::cubic(0.0, 0.9, 10, 6, 5); // t0 = 10, n = 6, ΔT = 5
    let config = SparsityConfig::new()
        .with_sparsity(0.9)
        .with_distribution(Distribution::Uniform {
            dense_first_layer: false,
        });
    let mut sparse = Sparsifier::new(
        &model,
        config,
        Gmp::with_schedule(schedule.clone()).unwrap(),
        &OptimizerConfig::sgd(0.9, 0.0),
    )
    .unwrap();
    model = sparse.init(model).unwrap();
    let numel = [600usize, 120];
    let mut pruned_before: Vec<Vec<bool>> = numel.iter().map(|n| vec![false; *n]).collect();
    for t in 0..50u64 {
        let grads = model.grads(&data);
        model = sparse.step(model, grads, 0.05).unwrap();
        // the sparsity after step t follows Eq. 1 at the last grid point <= t
        let k = if t < 10 { 0.0 } else { (((t - 10) / 5).min(6)) as f64 };
        let s = 0.9 + (0.0 - 0.9) * (1.0 - k / 6.0f64).powi(3);
        // uniform distribution: the total is round(d·N), each layer within one weight of d·N_l
        let total: usize = (0..2).map(|l| sparse.masks()[l].count_ones()).sum();
        assert_eq!(total, ((1.0 - s) * 720.0).round() as usize, "step {t}");
        for l in 0..2 {
            let exact = (1.0 - s) * numel[l] as f64;
            assert!(
                (sparse.masks()[l].count_ones() as f64 - exact).abs() < 1.0,
                "layer {l} step {t}"
            );
            let w = model.weight(l);
            for i in 0..numel[l] {
                if pruned_before[l][i] {
                    assert!(
                        !sparse.masks()[l].get(i) && w[i] == 0.0,
                        "weight {i} of layer {l} came back at step {t}"
                    );
                }
                pruned_before[l][i] = !sparse.masks()[l].get(i);
            }
        }
    }
    assert!((sparse.report().sparsity() - 0.9).abs() < 1e-2);
}

// ---------- lottery tickets ----------

/// The weights and masks at the start of every training segment that begins at `k`.
type Starts = Vec<(Vec<Vec<f32>>, Vec<Mask>)>;

/// Runs `rounds` lottery-ticket rounds on a 10-20-4 MLP for 12 steps each and
/// returns the result with the weights and masks at each segment starting at `k`.
fn lottery(
    config: &LthConfig,
    k: u64,
    fresh: &mut dyn FnMut() -> Mlp,
) -> (sparse_methods::lth::LthResult<Mlp>, Starts) {
    let data = Data::new(64, 10, 4, 0.5, 1);
    let model = Mlp::new(&[10, 20, 4], true, &device());
    let mut starts = Vec::new();
    let result = lth::run(
        config,
        SparsityConfig::new(),
        &OptimizerConfig::sgd(0.9, 0.0),
        model,
        12,
        fresh,
        |mut m: Mlp, sparse: &mut Sparsifier, steps| {
            if steps.start == k && steps.end == 12 {
                assert_eq!(sparse.step_count(), k);
                starts.push(((0..2).map(|l| m.weight(l)).collect(), sparse.masks().to_vec()));
            }
            for _ in steps {
                let g = m.grads(&data);
                m = sparse.step(m, g, 0.05)?;
            }
            Ok(m)
        },
    )
    .unwrap();
    (result, starts)
}

/// `weights ⊙ mask`, layer by layer.
fn masked(weights: &[Vec<f32>], masks: &[Mask]) -> Vec<Vec<f32>> {
    weights
        .iter()
        .zip(masks)
        .map(|(w, m)| {
            w.iter()
                .enumerate()
                .map(|(i, &x)| if m.get(i) { x } else { 0.0 })
                .collect()
        })
        .collect()
}

#[test]
fn lottery_ticket_rounds_prune_20_percent_and_rewind_exactly() {
    let device = device();
    let numel = [200usize, 80];
    for global in [true, false] {
        // the `target` count: densities (1 − p)^r exactly (open_lth's count is tested in lth_open_lth.rs)
        let config = LthConfig::new()
            .with_prune_count(LthCount::Target)
            .with_rounds(3)
            .with_global(global)
            .with_rewind(RewindKind::Step)
            .with_rewind_step(3);
        let (result, starts) = lottery(&config, 3, &mut || Mlp::new(&[10, 20, 4], true, &device));
        // segment 0 starts at θ_3 with dense masks; round r ≥ 1 starts at θ_3 ⊙ M_r exactly
        assert_eq!(starts.len(), 4);
        let theta_k = &starts[0].0;
        for (r, (weights, masks)) in starts.iter().enumerate().skip(1) {
            assert_eq!(weights, &masked(theta_k, masks), "round {r}: not rewound to θ_3 ⊙ M");
            let expected = 0.8f64.powi(r as i32);
            if global {
                let total: usize = masks.iter().map(Mask::count_ones).sum();
                let density = total as f64 / 280.0;
                assert!(
                    (density - expected).abs() <= 1.0 / 280.0 + 1e-12,
                    "round {r}: {density} vs {expected}"
                );
            } else {
                for l in 0..2 {
                    let want = (expected * numel[l] as f64).round() as usize;
                    let got = masks[l].count_ones();
                    assert!(got.abs_diff(want) <= 1, "round {r} layer {l}: {got} vs {want}");
                }
            }
            assert!((result.densities[r] - expected).abs() <= 2.0 / 280.0, "round {r}");
        }
        // each round prunes inside the previous mask
        for r in 2..starts.len() {
            for l in 0..2 {
                assert_eq!(starts[r].1[l].and_not(&starts[r - 1].1[l]).count_ones(), 0);
            }
        }
    }
}

#[test]
fn the_random_reinitialisation_control_starts_each_round_from_fresh_weights() {
    let device = device();
    let mut produced: Vec<Vec<Vec<f32>>> = Vec::new();
    let config = LthConfig::new().with_rounds(2).with_rewind(RewindKind::Reinit);
    let (_, starts) = lottery(&config, 0, &mut || {
        let m = Mlp::new(&[10, 20, 4], true, &device);
        produced.push((0..2).map(|l| m.weight(l)).collect());
        m
    });
    assert_eq!(produced.len(), 2, "one fresh model per round");
    assert_eq!(starts.len(), 3);
    for r in 1..3 {
        let (weights, masks) = &starts[r];
        assert_eq!(weights, &masked(&produced[r - 1], masks), "round {r}");
        assert_ne!(
            weights,
            &masked(&starts[0].0, masks),
            "round {r} reused the original init"
        );
    }
}

#[test]
fn one_shot_pruning_with_fine_tuning_keeps_the_trained_weights() {
    let data = Data::new(64, 10, 4, 0.5, 1);
    let device = device();
    let config = LthConfig::new()
        .with_prune_count(LthCount::Target)
        .with_rounds(1)
        .with_prune_fraction(0.9)
        .with_rewind(RewindKind::FineTune);
    let mut trained: Option<Vec<f32>> = None;
    let result = lth::run(
        &config,
        SparsityConfig::new(),
        &OptimizerConfig::sgd(0.9, 0.0),
        Mlp::new(&[10, 20, 4], false, &device),
        10,
        || Mlp::new(&[10, 20, 4], false, &device),
        |mut m: Mlp, sparse: &mut Sparsifier, steps| {
            if sparse.report().density() < 1.0 {
                // fine-tuning starts from the trained weights, pruned
                let w = m.weight(0);
                let t = trained.as_ref().unwrap();
                for i in 0..w.len() {
                    assert_eq!(w[i], if sparse.masks()[0].get(i) { t[i] } else { 0.0 });
                }
            }
            for _ in steps {
                let g = m.grads(&data);
                m = sparse.step(m, g, 0.05)?;
            }
            trained = Some(m.weight(0));
            Ok(m)
        },
    )
    .unwrap();
    assert!((result.densities[1] - 0.1).abs() < 1.0 / 280.0);
}

#[test]
fn a_sparsity_of_one_is_rejected() {
    let model = Mlp::new(&[4, 4], false, &device());
    let err = Sparsifier::new(
        &model,
        SparsityConfig::new().with_sparsity(1.0),
        Snip,
        &OptimizerConfig::sgd(0.0, 0.0),
    )
    .unwrap_err();
    assert!(matches!(err, SparseError::InvalidSparsity { .. }));
}
