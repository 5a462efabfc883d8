//! Training in sparse execution (`sparse_kernels::train`): the CSR structure of
//! a mask, the compact optimizer step against the masked-dense
//! `MaskedOptimizer`, the re-alignment of values and moments at a topology
//! update, and a two-layer MLP trained sparse against the masked-dense path.

use crate::common;

use std::collections::HashMap;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use common::{device, rand, tensor, values};
use sparse_core::method::{InitContext, Method, StepContext};
use sparse_core::{AdamSettings, Mask, OptimizerConfig, Rng, SgdSettings, SparseLayer, Sparsifier, SparsityConfig};
use sparse_kernels::train::pattern::{csr_plan, entry_map};
use sparse_kernels::{Activation, OpKind, SparseParam};
use sparse_methods::{Set, SetConfig, StaticRandom};

fn random_mask(n: usize, density: f64, rng: &mut Rng) -> Mask {
    Mask::from_indices(n, (0..n).filter(|_| rng.next_f64() < density))
}

/// The plan's rows, columns and value order, against nested loops over the
/// layer's own `flat` map.
#[test]
fn csr_plan_lists_the_active_positions_row_by_row() {
    let mut rng = Rng::new(3);
    let cases = [
        (SparseLayer::linear("fc.weight", 7, 5), OpKind::Linear),
        (
            SparseLayer::conv("conv.weight", &[4, 3, 2, 2]),
            OpKind::Conv {
                cin_g: 3,
                kernel: [2, 2],
                groups: 1,
            },
        ),
    ];
    for (layer, op) in cases {
        let mask = random_mask(layer.numel(), 0.4, &mut rng);
        let plan = csr_plan(&layer, op, &mask).unwrap();
        let csr = plan.csr();
        let mut want_ptr = vec![0u32];
        let mut want_col = Vec::new();
        for o in 0..layer.neurons() {
            for j in 0..layer.fan_in() {
                if mask.get(layer.flat(o, j)) {
                    want_col.push(j);
                }
            }
            want_ptr.push(want_col.len() as u32);
        }
        assert_eq!(csr.row_ptr, want_ptr, "{}", layer.path);
        let got_col: Vec<usize> = (0..csr.nnz()).map(|e| csr.col.get(e)).collect();
        assert_eq!(got_col, want_col, "{}", layer.path);
        assert_eq!(plan.n_values, mask.count_ones());
    }
    // a mask of another layer is an error, not a panic
    let layer = SparseLayer::linear("fc.weight", 7, 5);
    let err = csr_plan(&layer, OpKind::Linear, &Mask::ones(34)).unwrap_err();
    assert!(err.to_string().contains("fc.weight"), "{err}");
}

#[test]
fn entry_map_finds_kept_positions_and_marks_grown_ones() {
    let layer = SparseLayer::linear("fc.weight", 3, 2); // flat = j·2 + o
    // old: (o0: j0, j2), (o1: j1); new: (o0: j2), (o1: j0, j1)
    let old = Mask::from_indices(6, [0, 4, 3]);
    let new = Mask::from_indices(6, [4, 1, 3]);
    let (a, b) = (
        csr_plan(&layer, OpKind::Linear, &old).unwrap(),
        csr_plan(&layer, OpKind::Linear, &new).unwrap(),
    );
    // old entries in order: (0,0)=0, (0,2)=1, (1,1)=2; new: (0,2), (1,0), (1,1)
    assert_eq!(entry_map(&a, &b), vec![Some(1), None, Some(2)]);
}

/// The dense state of a layer in the masked-dense path: weights and slots.
struct DenseSide {
    model: Linear,
    optim: sparse_core::MaskedOptimizer,
    mask: Mask,
}

impl DenseSide {
    fn step(&mut self, lr: f64, grad: &[f32], dev: &Device) {
        let [d_in, d_out] = self.model.weight.dims();
        let mut grads = GradientsParams::new();
        grads.register(self.model.weight.id, tensor(grad.to_vec(), [d_in, d_out], dev));
        let keep = HashMap::from([(self.model.weight.id, self.mask.float_tensor(dev))]);
        let model = self.model.clone();
        self.model = self.optim.step(lr, model, grads, &keep);
    }

    /// A topology update as the `Sparsifier` does it: moments of inactive
    /// positions zeroed, weights re-masked.
    fn change_mask(&mut self, mask: Mask, dev: &Device) {
        let keep = mask.float_tensor(dev);
        let id = self.model.weight.id;
        self.optim.reset_inactive(&[(id, "fc.weight", &mask, keep.clone())]);
        let dims = self.model.weight.dims();
        let w = self.model.weight.val() * keep.reshape(dims);
        self.model.weight = self.model.weight.clone().map(|_| w);
        self.mask = mask;
    }

    fn weights(&self) -> Vec<f32> {
        values(self.model.weight.val())
    }

    fn slots(&self) -> Vec<Vec<f32>> {
        self.optim
            .state_of(self.model.weight.id)
            .unwrap_or_default()
            .into_iter()
            .map(values)
            .collect()
    }
}

/// Same gradients into both paths for several steps, a topology update in
/// the middle: the compact values and moments equal the masked-dense
/// weights and moments at every position, bit for bit (inactive ones are 0
/// in both; `==` takes -0 and +0 as equal).
#[test]
fn compact_step_equals_the_masked_optimizer_bit_for_bit() {
    let configs = [
        OptimizerConfig::sgd(0.0, 0.0),
        OptimizerConfig::Sgd(
            SgdSettings::new()
                .with_momentum(0.9)
                .with_weight_decay(5e-4)
                .with_nesterov(true),
        ),
        OptimizerConfig::Sgd(SgdSettings::new().with_momentum(0.8).with_dampening(0.1)),
        OptimizerConfig::Adam(AdamSettings::new().with_weight_decay(1e-3)),
        OptimizerConfig::Adam(AdamSettings::new().with_weight_decay(1e-2).with_decoupled(true)),
    ];
    let dev = device();
    let (d_in, d_out) = (13, 9);
    let layer = SparseLayer::linear("fc.weight", d_in, d_out);
    for (c, config) in configs.iter().enumerate() {
        let mut rng = Rng::new(10 + c as u64);
        let mask = random_mask(layer.numel(), 0.3, &mut rng);
        let mut w = rand(&mut rng, layer.numel());
        mask.apply(&mut w);
        let mut model = LinearConfig::new(d_in, d_out).init(&dev);
        model.weight = model.weight.clone().map(|_| tensor(w.clone(), [d_in, d_out], &dev));
        let mut dense = DenseSide {
            model,
            optim: config.init(),
            mask: mask.clone(),
        };
        let mut sparse = SparseParam::from_dense(layer.clone(), OpKind::Linear, mask, &w, &dev).unwrap();
        for t in 0..8 {
            if t == 4 {
                // drop a third of the active positions, grow as many elsewhere
                let active: Vec<usize> = dense.mask.iter_ones().collect();
                let inactive: Vec<usize> = (0..layer.numel()).filter(|&i| !dense.mask.get(i)).collect();
                let n = active.len() / 3;
                let kept = active.iter().copied().skip(n);
                let grown = inactive.iter().copied().step_by(3).take(n);
                let next = Mask::from_indices(layer.numel(), kept.chain(grown));
                dense.change_mask(next.clone(), &dev);
                sparse.rebuild(next).unwrap();
            }
            let g = rand(&mut rng, layer.numel());
            let lr = 0.05 + 0.01 * t as f64;
            dense.step(lr, &g, &dev);
            let g_active: Vec<f32> = sparse.flat_positions().iter().map(|&f| g[f]).collect();
            let n = g_active.len();
            sparse.step(config, lr, tensor(g_active, [n], &dev)).unwrap();

            let want_w = dense.weights();
            let got_w = sparse.to_dense(sparse.values()).unwrap();
            assert!(got_w == want_w, "{config:?} step {t}: weights differ");
            let want_s = dense.slots();
            let got_s: Vec<Vec<f32>> = sparse
                .slots()
                .iter()
                .map(|s| sparse.to_dense(s.clone()).unwrap())
                .collect();
            assert_eq!(got_s.len(), want_s.len(), "{config:?}: slot count");
            for (k, (got, want)) in got_s.iter().zip(&want_s).enumerate() {
                assert!(got == want, "{config:?} step {t}: slot {k} differs");
            }
            assert_eq!(sparse.time(), t + 1);
        }
    }
}

/// `rebuild`: kept positions keep value and every moment, grown ones start at
/// 0, dropped ones are gone; expectations read from the state before.
#[test]
fn rebuild_keeps_zeroes_and_drops() {
    let dev = device();
    let layer = SparseLayer::linear("fc.weight", 6, 5);
    let mut rng = Rng::new(7);
    let old = random_mask(30, 0.5, &mut rng);
    let new = random_mask(30, 0.5, &mut rng);
    let w: Vec<f32> = (0..30).map(|i| i as f32 + 1.0).collect();
    let mut p = SparseParam::from_dense(layer, OpKind::Linear, old.clone(), &w, &dev).unwrap();
    let config = OptimizerConfig::adam();
    let n = p.nnz();
    p.step(&config, 0.1, tensor(rand(&mut rng, n), [n], &dev)).unwrap();
    let before_w = p.to_dense(p.values()).unwrap();
    let before_s: Vec<Vec<f32>> = p.slots().iter().map(|s| p.to_dense(s.clone()).unwrap()).collect();
    assert!(old.iter_ones().all(|f| before_w[f] != 0.0 && before_s[0][f] != 0.0));

    p.rebuild(new.clone()).unwrap();
    assert_eq!(p.nnz(), new.count_ones());
    assert_eq!(p.mask(), &new);
    assert_eq!(p.time(), 1);
    let after_w = p.to_dense(p.values()).unwrap();
    let after_s: Vec<Vec<f32>> = p.slots().iter().map(|s| p.to_dense(s.clone()).unwrap()).collect();
    for f in 0..30 {
        let (was, is) = (old.get(f), new.get(f));
        let want = |v: &Vec<f32>| if was && is { v[f] } else { 0.0 };
        assert_eq!(after_w[f], want(&before_w), "value at {f} (was {was}, is {is})");
        for k in 0..2 {
            assert_eq!(after_s[k][f], want(&before_s[k]), "slot {k} at {f}");
        }
    }
    // a mask of another size is an error naming the layer
    let err = p.rebuild(Mask::ones(31)).unwrap_err();
    assert!(err.to_string().contains("fc.weight"), "{err}");
}

/// A gradient of the wrong length is an error, not a panic.
#[test]
fn step_refuses_a_gradient_of_another_length() {
    let dev = device();
    let layer = SparseLayer::linear("fc.weight", 4, 4);
    let mut p = SparseParam::from_dense(layer, OpKind::Linear, Mask::ones(16), &[0.5; 16], &dev).unwrap();
    let err = p
        .step(&OptimizerConfig::sgd(0.9, 0.0), 0.1, Tensor::zeros([15], &dev))
        .unwrap_err();
    assert!(err.to_string().contains("16"), "{err}");
}

#[derive(Module, Debug)]
struct Mlp2 {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp2 {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.fc2.forward(burn::tensor::activation::relu(self.fc1.forward(x)))
    }
}

const D: [usize; 3] = [12, 16, 4];
const BATCH: usize = 24;

fn batch(t: u64, dev: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    let mut rng = Rng::for_stream(99, "batch", t, "data");
    let x = rand(&mut rng, BATCH * D[0]);
    let y: Vec<i32> = (0..BATCH).map(|_| rng.below(D[2] as u64) as i32).collect();
    (
        tensor(x, [BATCH, D[0]], dev),
        Tensor::from_data(TensorData::new(y, [BATCH]), dev),
    )
}

fn loss(logits: Tensor<2>, y: Tensor<1, Int>, dev: &Device) -> Tensor<1> {
    CrossEntropyLossConfig::new().init(dev).forward(logits, y)
}

/// A bias trained with the same rule as the masked-dense path applies to it.
struct Bias {
    value: Tensor<1>,
    slots: Vec<Tensor<1>>,
    time: u64,
}

/// The sparse side of the comparison: both weights as `SparseParam`s, biases
/// dense; topology updates by its own instance of the method, which sees the
/// compact values (scattered to the host only at update steps, until the
/// `Sparsifier` hands methods compact weights).
struct SparseMlp {
    layers: [SparseParam; 2],
    biases: [Bias; 2],
}

impl SparseMlp {
    fn step(&mut self, t: u64, config: &OptimizerConfig, lr: f64, dev: &Device) -> f32 {
        let (x, y) = batch(t, dev);
        let v: Vec<Tensor<1>> = self.layers.iter().map(SparseParam::tracked).collect();
        let b: Vec<Tensor<1>> = self
            .biases
            .iter()
            .map(|b| Tensor::from_inner(b.value.clone()).require_grad())
            .collect();
        let h =
            sparse_kernels::ops::sparse_linear(x, v[0].clone(), b[0].clone(), self.layers[0].plan(), Activation::Relu);
        let logits =
            sparse_kernels::ops::sparse_linear(h, v[1].clone(), b[1].clone(), self.layers[1].plan(), Activation::None);
        let l = loss(logits, y, dev);
        let value = values(l.clone())[0];
        let grads = l.backward();
        for i in 0..2 {
            self.layers[i].step(config, lr, v[i].grad(&grads).unwrap()).unwrap();
            let bias = &mut self.biases[i];
            let g = b[i].grad(&grads).unwrap();
            bias.value =
                sparse_core::optim::update_values(config, lr, None, bias.value.clone(), g, &mut bias.slots, bias.time);
            bias.time += 1;
        }
        value
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Trains the MLP `steps` steps both ways with `method` (and a second instance
/// `twin` for the sparse side): the same masks after every step and weights
/// and biases within 1e-5.
fn sparse_equals_masked_dense(method: impl Method + 'static, mut twin: impl Method, steps: u64) -> usize {
    let dev = device().autodiff();
    let config = OptimizerConfig::Sgd(
        SgdSettings::new()
            .with_momentum(0.9)
            .with_weight_decay(5e-4)
            .with_nesterov(true),
    );
    let lr = 0.1;
    let model = Mlp2 {
        fc1: LinearConfig::new(D[0], D[1]).init(&dev),
        fc2: LinearConfig::new(D[1], D[2]).init(&dev),
    };
    let sparsity = SparsityConfig::new().with_sparsity(0.7).with_seed(11);
    let mut dense = Sparsifier::new(&model, sparsity, method, &config).unwrap();
    let mut model = dense.init(model).unwrap();
    let plan = dense.plan().clone();

    let weights: Vec<Vec<f32>> = [&model.fc1, &model.fc2]
        .iter()
        .map(|l| values(l.weight.val()))
        .collect();
    let mut masks: Vec<Mask> = plan.layers().iter().map(|l| Mask::ones(l.numel())).collect();
    let mut init_weights = weights.clone();
    twin.init(
        &mut InitContext::new(&plan, &mut init_weights, plan.config().seed),
        &mut masks,
    )
    .unwrap();
    assert_eq!(masks, dense.masks(), "the twin method chose other initial masks");
    let param = |l: usize| {
        SparseParam::from_dense(
            plan.layers()[l].clone(),
            OpKind::Linear,
            masks[l].clone(),
            &weights[l],
            &dev,
        )
        .unwrap()
    };
    let bias = |l: &Linear| Bias {
        value: l.bias.as_ref().unwrap().val().inner(),
        slots: Vec::new(),
        time: 0,
    };
    let mut sparse = SparseMlp {
        layers: [param(0), param(1)],
        biases: [bias(&model.fc1), bias(&model.fc2)],
    };
    let start = weights.clone();
    let mut updates = 0;
    for t in 0..steps {
        let (x, y) = batch(t, &dev);
        let l = loss(model.forward(x), y, &dev);
        let dense_loss = values(l.clone())[0];
        let grads = GradientsParams::from_grads(l.backward(), &model);
        model = dense.step(model, grads, lr).unwrap();

        let needs = twin.needs(t);
        assert!(
            !needs.skip_optimizer && !needs.grads,
            "this test drives methods without dense gradients"
        );
        let sparse_loss = sparse.step(t, &config, lr, &dev);
        if needs.update {
            let mut w: Vec<Vec<f32>> = sparse.layers.iter().map(|p| p.to_dense(p.values()).unwrap()).collect();
            let mut next: Vec<Mask> = sparse.layers.iter().map(|p| p.mask().clone()).collect();
            let mut ctx = StepContext::new(t, &plan, plan.config().seed, &mut next).with_weights(&mut w);
            twin.on_step(&mut ctx).unwrap();
            for (p, m) in sparse.layers.iter_mut().zip(next) {
                if &m != p.mask() {
                    updates += 1;
                    p.rebuild(m).unwrap();
                }
            }
        }
        twin.before_step(t + 1);

        assert!(
            (dense_loss - sparse_loss).abs() <= 1e-5,
            "step {t}: loss {dense_loss} vs {sparse_loss}"
        );
        for (i, layer) in [&model.fc1, &model.fc2].into_iter().enumerate() {
            assert_eq!(
                sparse.layers[i].mask(),
                &dense.masks()[i],
                "step {t}: layer {i} masks differ"
            );
            let want = values(layer.weight.val());
            let got = sparse.layers[i].to_dense(sparse.layers[i].values()).unwrap();
            let diff = max_diff(&got, &want);
            assert!(diff <= 1e-5, "step {t}: layer {i} weights differ by {diff}");
            let want_b = values(layer.bias.as_ref().unwrap().val());
            let diff_b = max_diff(&values(sparse.biases[i].value.clone()), &want_b);
            assert!(diff_b <= 1e-5, "step {t}: layer {i} biases differ by {diff_b}");
        }
    }
    // the weights did train
    let moved = max_diff(&values(model.fc1.weight.val()), &start[0]);
    assert!(moved > 1e-2, "fc1 moved only {moved}");
    updates
}

#[test]
fn static_mlp_trains_sparse_as_masked_dense() {
    sparse_equals_masked_dense(StaticRandom, StaticRandom, 12);
}

#[test]
fn set_mlp_trains_sparse_as_masked_dense() {
    let schedule = || sparse_core::UpdateSchedule::new(12).with_interval(3);
    let set = || Set::with_schedule(&SetConfig::new(), schedule()).unwrap();
    let updates = sparse_equals_masked_dense(set(), set(), 12);
    assert!(updates >= 2, "SET changed masks only {updates} times");
}

/// The tiled growth equals `sparse_core::select::top_k` over the dense
/// `|Xᵀ·dY|` (computed here by plain loops in f64) on eligible positions, for
/// every tile width; small integer inputs make the sums exact, so the many
/// ties exercise the tie rule (lower flat index first).
#[test]
fn tiled_growth_equals_the_dense_top_k() {
    use sparse_kernels::train::growth::grow_top_k;
    let (d_in, d_out, batch) = (9, 14, 5);
    let layer = SparseLayer::linear("fc.weight", d_in, d_out);
    let mut rng = Rng::new(21);
    let int = |rng: &mut Rng, n: usize| -> Vec<f32> { (0..n).map(|_| rng.below(5) as f32 - 2.0).collect() };
    let (x, dy) = (int(&mut rng, batch * d_in), int(&mut rng, batch * d_out));
    let exclude = random_mask(layer.numel(), 0.4, &mut rng);
    let mut dense = vec![0.0f32; layer.numel()];
    for i in 0..d_in {
        for o in 0..d_out {
            let s: f64 = (0..batch)
                .map(|b| f64::from(x[b * d_in + i]) * f64::from(dy[b * d_out + o]))
                .sum();
            dense[i * d_out + o] = s.abs() as f32;
        }
    }
    let eligible = (0..layer.numel() as u32).filter(|&f| !exclude.get(f as usize));
    for k in [0, 1, 7, 30, layer.numel()] {
        let want = sparse_core::select::top_k(eligible.clone(), k, |f| dense[f as usize]);
        for tile in [1, 3, 14, 100] {
            let got = grow_top_k(&layer, &x, &dy, batch, &exclude, k, tile).unwrap();
            assert_eq!(got, want, "k {k}, tile {tile}");
        }
    }
    let conv = SparseLayer::conv("conv.weight", &[2, 2, 1, 1]);
    let err = grow_top_k(&conv, &[], &[], 0, &Mask::ones(4), 1, 1).unwrap_err();
    assert!(err.to_string().contains("conv.weight"), "{err}");
    let err = grow_top_k(&layer, &x[1..], &dy, batch, &exclude, 1, 1).unwrap_err();
    assert!(err.to_string().contains("fc.weight"), "{err}");
}
