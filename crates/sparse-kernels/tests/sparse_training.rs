//! Training in sparse execution (`sparse_kernels::train`): the CSR structure of
//! a mask, the optimizer step on a `CompactLinear`'s values against the
//! masked-dense `MaskedOptimizer`, the re-alignment of values and moments at
//! a topology update, a layer's gradients, and a two-layer MLP trained with
//! `compact_step` against `Sparsifier::step` (on every backend CI runs).

use crate::common;

use std::collections::HashMap;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use common::{device, rand, rel_err, tensor, values};
use sparse_core::{
    AdamSettings, CompactRule, IntoMethod, Mask, MaskedOptimizer, OptimizerConfig, Rng, SgdSettings, SparseLayer,
    Sparsifier, SparsityConfig, UpdateSchedule,
};
use sparse_kernels::train::growth::random_top_k;
use sparse_kernels::train::pattern::{csr_plan, entry_map};
use sparse_kernels::train::{
    CompactLinear, CompactModel, CompactUpdate, Growth, UpdateAt, compact_prepare, compact_step, exchange, take_traces,
    try_map_layers, update_model, with_output_probes,
};
use sparse_kernels::{Activation, KernelError, OpKind};
use sparse_methods::{RigL, RigLConfig, Set, SetConfig, StaticRandom};

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

/// The compact side: a `CompactLinear` and its own optimizer, as
/// `compact_step` drives them.
struct CompactSide {
    layer: CompactLinear,
    optim: MaskedOptimizer,
}

impl CompactSide {
    fn step(&mut self, lr: f64, grad: &[f32], dev: &Device) {
        let g = self.layer.gather(grad).unwrap();
        let n = g.len();
        let mut grads = GradientsParams::new();
        grads.register(self.layer.values.id, tensor(g, [n], dev));
        let layer = std::mem::replace(&mut self.layer, placeholder(dev));
        self.layer = self.optim.step(lr, layer, grads, &HashMap::new());
    }

    /// A topology update as `compact_step` does it: values from the weights
    /// the method leaves (here: unchanged, so grown ones are 0), moments re-aligned.
    fn change_mask(&mut self, mask: Mask, dev: &Device) {
        let weights = self.layer.dense_weight().unwrap();
        let layer = std::mem::replace(&mut self.layer, placeholder(dev));
        let (layer, map) = layer.with_mask(mask, &weights).unwrap();
        self.optim.realign(layer.values.id, &layer.values_path(), &map);
        self.layer = layer;
    }

    fn slots(&self) -> Vec<Vec<f32>> {
        self.optim
            .state_of(self.layer.values.id)
            .unwrap_or_default()
            .into_iter()
            .map(|s| self.layer.scatter(&values(s)).unwrap())
            .collect()
    }
}

fn placeholder(dev: &Device) -> CompactLinear {
    CompactLinear::new(
        SparseLayer::linear("none.weight", 1, 1),
        Mask::ones(1),
        &[0.0],
        vec![0.0],
        dev,
    )
    .unwrap()
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
        let mut compact = CompactSide {
            layer: CompactLinear::new(layer.clone(), mask, &w, vec![0.0; d_out], &dev).unwrap(),
            optim: config.init(),
        };
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
                compact.change_mask(next, &dev);
            }
            let g = rand(&mut rng, layer.numel());
            let lr = 0.05 + 0.01 * t as f64;
            dense.step(lr, &g, &dev);
            compact.step(lr, &g, &dev);

            let got_w = compact.layer.dense_weight().unwrap();
            assert!(got_w == dense.weights(), "{config:?} step {t}: weights differ");
            let (got_s, want_s) = (compact.slots(), dense.slots());
            assert_eq!(got_s.len(), want_s.len(), "{config:?}: slot count");
            for (k, (got, want)) in got_s.iter().zip(&want_s).enumerate() {
                assert!(got == want, "{config:?} step {t}: slot {k} differs");
            }
        }
    }
}

/// `with_mask` and `realign`: kept positions keep value and every moment,
/// grown ones start at 0 (or at what the method wrote), dropped ones are
/// gone; expectations read from the state before.
#[test]
fn a_new_mask_keeps_zeroes_and_drops() {
    let dev = device();
    let layer = SparseLayer::linear("fc.weight", 6, 5);
    let mut rng = Rng::new(7);
    let old = random_mask(30, 0.5, &mut rng);
    let new = random_mask(30, 0.5, &mut rng);
    let w: Vec<f32> = (0..30).map(|i| i as f32 + 1.0).collect();
    let mut side = CompactSide {
        layer: CompactLinear::new(layer, old.clone(), &w, vec![0.0; 5], &dev).unwrap(),
        optim: OptimizerConfig::adam().init(),
    };
    side.step(0.1, &rand(&mut rng, 30), &dev);
    let before_w = side.layer.dense_weight().unwrap();
    let before_s = side.slots();
    assert!(old.iter_ones().all(|f| before_w[f] != 0.0 && before_s[0][f] != 0.0));

    side.change_mask(new.clone(), &dev);
    assert_eq!(side.layer.nnz(), new.count_ones());
    assert_eq!(side.layer.mask(), &new);
    let after_w = side.layer.dense_weight().unwrap();
    let after_s = side.slots();
    for f in 0..30 {
        let (was, is) = (old.get(f), new.get(f));
        let want = |v: &Vec<f32>| if was && is { v[f] } else { 0.0 };
        assert_eq!(after_w[f], want(&before_w), "value at {f} (was {was}, is {is})");
        for k in 0..2 {
            assert_eq!(after_s[k][f], want(&before_s[k]), "slot {k} at {f}");
        }
    }
    // a value the method wrote at a grown position is taken
    let grown = new.iter_ones().find(|&f| !old.get(f)).expect("a grown position");
    let mut written = side.layer.dense_weight().unwrap();
    written[grown] = 0.25;
    let (layer, _) = std::mem::replace(&mut side.layer, placeholder(&dev))
        .with_mask(new.clone(), &written)
        .unwrap();
    assert_eq!(layer.dense_weight().unwrap()[grown], 0.25);
    // a mask or weights of another size are errors naming the layer
    let err = layer.clone().with_mask(Mask::ones(31), &written).unwrap_err();
    assert!(err.to_string().contains("fc.weight"), "{err}");
    let err: KernelError = layer.with_mask(new, &written[1..]).unwrap_err();
    assert!(err.to_string().contains("fc.weight"), "{err}");
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

/// The sparse side: both layers as `CompactLinear`s.
#[derive(Module, Debug)]
struct CompactMlp2 {
    layers: Vec<CompactLinear>,
}

impl CompactMlp2 {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let h = self.layers[0].forward(x, Activation::Relu);
        self.layers[1].forward(h, Activation::None)
    }
}

impl CompactModel for CompactMlp2 {
    fn compact_layers(&self) -> Vec<&CompactLinear> {
        self.layers.iter().collect()
    }

    fn try_map_compact(
        mut self,
        f: &mut dyn FnMut(usize, CompactLinear) -> Result<CompactLinear, KernelError>,
    ) -> Result<Self, KernelError> {
        self.layers = try_map_layers(std::mem::take(&mut self.layers), f)?;
        Ok(self)
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Trains the MLP `steps` steps both ways, each side with its own instance of
/// the method (`make`): the same loss, the same masks after every step, and
/// weights and biases within 1e-5. Returns the steps that changed masks.
fn compact_equals_masked_dense<M: IntoMethod>(make: impl Fn() -> M, steps: u64) -> usize {
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
    let sparsity = || SparsityConfig::new().with_sparsity(0.7).with_seed(11);
    let mut dense = Sparsifier::new(&model, sparsity(), make(), &config).unwrap();
    let mut sparse = Sparsifier::new(&model, sparsity(), make(), &config).unwrap();
    let mut model = dense.init(model).unwrap();
    let twin = sparse.init(model.clone()).unwrap();
    let layer = |l: usize, linear: &Linear| {
        let plan = &sparse.layers()[l];
        let bias = values(linear.bias.as_ref().unwrap().val());
        CompactLinear::new(
            plan.clone(),
            sparse.masks()[l].clone(),
            &values(linear.weight.val()),
            bias,
            &dev,
        )
        .unwrap()
    };
    let mut compact = CompactMlp2 {
        layers: vec![layer(0, &twin.fc1), layer(1, &twin.fc2)],
    };
    sparse.release_device_masks();
    let start = values(model.fc1.weight.val());
    let mut changes = 0;
    for t in 0..steps {
        let (x, y) = batch(t, &dev);
        let l = loss(model.forward(x.clone()), y.clone(), &dev);
        let dense_loss = values(l.clone())[0];
        let grads = GradientsParams::from_grads(l.backward(), &model);
        model = dense.step(model, grads, lr).unwrap();

        let before = sparse.masks().to_vec();
        compact = compact_prepare(compact, &sparse, Some(x.dims()[0])).unwrap();
        let l = loss(compact.forward(x), y, &dev);
        let sparse_loss = values(l.clone())[0];
        let grads = GradientsParams::from_grads(l.backward(), &compact);
        compact = compact_step(compact, &mut sparse, grads, lr).unwrap();
        changes += usize::from(sparse.masks() != before.as_slice());

        assert!(
            (dense_loss - sparse_loss).abs() <= 1e-5,
            "step {t}: loss {dense_loss} vs {sparse_loss}"
        );
        assert_eq!(sparse.masks(), dense.masks(), "step {t}: masks differ");
        for (i, linear) in [&model.fc1, &model.fc2].into_iter().enumerate() {
            let c = &compact.layers[i];
            let diff = max_diff(&c.dense_weight().unwrap(), &values(linear.weight.val()));
            assert!(diff <= 1e-5, "step {t}: layer {i} weights differ by {diff}");
            let diff = max_diff(
                &c.bias_values().unwrap().unwrap(),
                &values(linear.bias.as_ref().unwrap().val()),
            );
            assert!(diff <= 1e-5, "step {t}: layer {i} biases differ by {diff}");
        }
    }
    let moved = max_diff(&values(model.fc1.weight.val()), &start);
    assert!(moved > 1e-2, "fc1 moved only {moved}");
    changes
}

fn every_third(steps: u64) -> UpdateSchedule {
    UpdateSchedule::new(steps).with_interval(3)
}

#[test]
fn static_mlp_trains_compact_as_masked_dense() {
    assert_eq!(compact_equals_masked_dense(|| StaticRandom, 12), 0);
}

#[test]
fn set_and_rigl_train_compact_as_masked_dense() {
    let set = || Set::with_schedule(&SetConfig::new(), every_third(12)).unwrap();
    assert!(
        compact_equals_masked_dense(set, 12) >= 2,
        "SET changed masks too rarely"
    );
    let rigl = || RigL::with_schedule(&RigLConfig::new(), every_third(12)).unwrap();
    assert!(
        compact_equals_masked_dense(rigl, 12) >= 2,
        "RigL changed masks too rarely"
    );
}

/// The tiled growth equals `sparse_core::select::top_k` over the dense
/// `|Xᵀ·dY|` (computed here by plain loops in f64) on eligible positions, for
/// every tile width; small integer inputs make the sums exact, so the many
/// ties exercise the tie rule (lower flat index first).
#[test]
fn tiled_growth_equals_the_dense_top_k() {
    use sparse_kernels::train::growth::grow_top_k;
    let mut rng = Rng::new(21);
    // the second shape spans three row blocks of the gemm tiles; in the third
    // the tiles' running top-k fill up and share their floors
    for (d_in, d_out, batch) in [(9, 14, 5), (2051, 7, 3), (1500, 48, 4)] {
        let layer = SparseLayer::linear("fc.weight", d_in, d_out);
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
        for k in [0, 1, 7, 30, 3000, layer.numel()] {
            let want = sparse_core::select::top_k(eligible.clone(), k, |f| dense[f as usize]);
            for tile in [1, 3, 14, 100] {
                let got = grow_top_k(&layer, &x, &dy, batch, &exclude, k, tile).unwrap();
                assert_eq!(got, want, "{d_in}x{d_out}, k {k}, tile {tile}");
            }
        }
    }
    let layer = SparseLayer::linear("fc.weight", 9, 14);
    let (x, dy, batch, exclude) = (vec![0.0; 45], vec![0.0; 70], 5, Mask::zeros(126));
    let conv = SparseLayer::conv("conv.weight", &[2, 2, 1, 1]);
    let err = grow_top_k(&conv, &[], &[], 0, &Mask::ones(4), 1, 1).unwrap_err();
    assert!(err.to_string().contains("conv.weight"), "{err}");
    let err = grow_top_k(&layer, &x[1..], &dy, batch, &exclude, 1, 1).unwrap_err();
    assert!(err.to_string().contains("fc.weight"), "{err}");
}

/// A [`sparse_kernels::train::CompactLinear`]'s gradients equal those of the
/// masked dense product `act(x·(W⊙M) + b)`: the values' gradient (the
/// handwritten backward) at the active positions, the input's and the bias's;
/// with a probe, the dense weight gradient at every position, and the values'
/// gradient registered from it; multiplying densely, the same gradients. On
/// every backend CI runs (flex, ndarray, wgpu).
#[test]
fn compact_linear_gradients_equal_the_masked_dense_ones() {
    use sparse_kernels::train::CompactLinear;
    let dev = device().autodiff();
    let mut rng = Rng::new(17);
    for (d_in, d_out, batch, density, act) in [
        (9, 6, 4, 0.5, Activation::Relu),
        (33, 17, 12, 0.2, Activation::None),
        (16, 40, 1, 0.9, Activation::Relu),
    ] {
        let layer = SparseLayer::linear("fc.weight", d_in, d_out);
        let mask = random_mask(layer.numel(), density, &mut rng);
        let (w, b, x, r) = (
            rand(&mut rng, d_in * d_out),
            rand(&mut rng, d_out),
            rand(&mut rng, batch * d_in),
            rand(&mut rng, batch * d_out),
        );
        let masked: Vec<f32> = w
            .iter()
            .enumerate()
            .map(|(i, v)| if mask.get(i) { *v } else { 0.0 })
            .collect();
        // the masked dense reference, every tensor a leaf
        let (wd, bd, xd) = (
            tensor(masked.clone(), [d_in, d_out], &dev).require_grad(),
            tensor(b.clone(), [d_out], &dev).require_grad(),
            tensor(x.clone(), [batch, d_in], &dev).require_grad(),
        );
        let y = xd.clone().matmul(wd.clone()) + bd.clone().unsqueeze();
        let y = if act == Activation::Relu {
            burn::tensor::activation::relu(y)
        } else {
            y
        };
        let grads = (y * tensor(r.clone(), [batch, d_out], &dev)).sum().backward();
        let (gw, gb, gx) = (
            values(wd.grad(&grads).unwrap()),
            values(bd.grad(&grads).unwrap()),
            values(xd.grad(&grads).unwrap()),
        );
        for (probe, dense) in [(false, false), (false, true), (true, false)] {
            let mut compact = CompactLinear::new(layer.clone(), mask.clone(), &w, b.clone(), &dev)
                .unwrap()
                .with_dense_product(dense);
            if probe {
                compact = compact.with_probe().unwrap();
            }
            let xc = tensor(x.clone(), [batch, d_in], &dev).require_grad();
            let loss = (compact.forward(xc.clone(), act) * tensor(r.clone(), [batch, d_out], &dev)).sum();
            let raw = loss.backward();
            let gxc = values(xc.grad(&raw).expect("input gradient"));
            let mut params = GradientsParams::from_grads(raw, &compact);
            let dense_grad = if probe {
                let (c, g) = compact.take_probe_grad(&mut params).unwrap();
                compact = c;
                Some(g.expect("a probe gives the dense gradient"))
            } else {
                None
            };
            let case = format!("{d_in}x{d_out} batch {batch} probe {probe} dense product {dense}");
            let gv = values(params.get::<1>(compact.values.id).expect("values gradient"));
            assert!(
                rel_err(&compact.scatter(&gv).unwrap(), &mask_of(&gw, &mask)) < 1e-5,
                "{case}: values"
            );
            assert!(
                rel_err(
                    &values(params.get::<1>(compact.bias.as_ref().unwrap().id).unwrap()),
                    &gb
                ) < 1e-5,
                "{case}: bias"
            );
            assert!(rel_err(&gxc, &gx) < 1e-5, "{case}: input");
            if let Some(g) = dense_grad {
                assert!(rel_err(&g, &gw) < 1e-5, "{case}: dense gradient");
            }
        }
    }
}

/// `dense` with zeros where `mask` is inactive.
fn mask_of(dense: &[f32], mask: &Mask) -> Vec<f32> {
    dense
        .iter()
        .enumerate()
        .map(|(i, v)| if mask.get(i) { *v } else { 0.0 })
        .collect()
}

/// The compact rule of the library's SET or RigL defaults on the schedule `updates`.
fn compact_rule(method: &str, updates: UpdateSchedule, seed: u64) -> CompactUpdate {
    let (growth, drop, drop_noise, skip_optimizer) = match method {
        "set" => {
            let c = SetConfig::new();
            let drop = c.drop_schedule.with_alpha(c.drop_fraction, c.drop_exponent).unwrap();
            (Growth::Random, drop, 0.0, false)
        }
        _ => {
            let c = RigLConfig::new();
            let drop = c.drop_schedule.with_alpha(c.drop_fraction, c.drop_exponent).unwrap();
            (Growth::Gradient, drop, c.drop_noise, c.skip_weight_update)
        }
    };
    CompactUpdate {
        rule: CompactRule { growth, drop_noise },
        updates,
        drop,
        skip_optimizer,
        seed,
        tile: 5,
    }
}

/// The topology updates computed on the compact layers (no dense weight,
/// gradient or score vector; RigL's growth from the output probes' `dY` and
/// the layers' inputs) make the same decisions as the library's SET and RigL
/// on the masked-dense path: the same masks and weights within 1e-5 after
/// every step of a short training run, with the initial masks of
/// `random_mask` equal to the methods' own.
#[test]
fn compact_updates_train_as_the_masked_dense_methods() {
    for method in ["set", "rigl"] {
        let dev = device().autodiff();
        let config = OptimizerConfig::sgd(0.9, 5e-4);
        let steps = 12;
        let model = Mlp2 {
            fc1: LinearConfig::new(D[0], D[1]).init(&dev),
            fc2: LinearConfig::new(D[1], D[2]).init(&dev),
        };
        let seed = 11;
        let sparsity = SparsityConfig::new().with_sparsity(0.7).with_seed(seed);
        let mut dense = match method {
            "set" => Sparsifier::new(
                &model,
                sparsity,
                Set::with_schedule(&SetConfig::new(), every_third(steps)).unwrap(),
                &config,
            ),
            _ => Sparsifier::new(
                &model,
                sparsity,
                RigL::with_schedule(&RigLConfig::new(), every_third(steps)).unwrap(),
                &config,
            ),
        }
        .unwrap();
        let mut model = dense.init(model).unwrap();
        for (l, layer) in dense.layers().iter().enumerate() {
            let mask = &dense.masks()[l];
            let want = sparse_kernels::train::random_mask(layer, mask.count_ones(), seed).unwrap();
            assert_eq!(&want, mask, "{method}: initial mask of {}", layer.path);
        }
        let layer = |l: usize, linear: &Linear| {
            let bias = values(linear.bias.as_ref().unwrap().val());
            let mask = dense.masks()[l].clone();
            CompactLinear::new(
                dense.layers()[l].clone(),
                mask,
                &values(linear.weight.val()),
                bias,
                &dev,
            )
            .unwrap()
        };
        let mut compact = CompactMlp2 {
            layers: vec![layer(0, &model.fc1), layer(1, &model.fc2)],
        };
        let rule = compact_rule(method, every_third(steps), seed);
        let mut optimizer = config.init();
        let mut changes = 0;
        for t in 0..steps {
            let (x, y) = batch(t, &dev);
            let l = loss(model.forward(x.clone()), y.clone(), &dev);
            let grads = GradientsParams::from_grads(l.backward(), &model);
            model = dense.step(model, grads, 0.1).unwrap();

            if rule.needs_trace(t) {
                compact = with_output_probes(compact, BATCH).unwrap();
            }
            let h = compact.layers[0].forward(x.clone(), Activation::Relu);
            let logits = compact.layers[1].forward(h.clone(), Activation::None);
            let inputs = [values(x), values(h)];
            let mut grads = GradientsParams::from_grads(loss(logits, y, &dev).backward(), &compact);
            let (c, traces) = take_traces(compact, &mut grads).unwrap();
            assert_eq!(
                traces.iter().all(Option::is_some),
                rule.needs_trace(t),
                "{method} step {t}"
            );
            for (trace, input) in traces.iter().flatten().zip(&inputs) {
                assert_eq!(&trace.x, input, "{method} step {t}: the recorded input");
            }
            compact = c;
            if rule.optimizer_steps(t) {
                compact = optimizer.step(0.1, compact, grads, &HashMap::new());
            }
            let before: Vec<Mask> = compact.layers.iter().map(|l| l.mask().clone()).collect();
            if rule.is_update_step(t) {
                compact = update_model(compact, &rule, &mut optimizer, t, &traces).unwrap();
            }
            let masks: Vec<Mask> = compact.layers.iter().map(|l| l.mask().clone()).collect();
            changes += usize::from(masks != before);
            assert_eq!(masks.as_slice(), dense.masks(), "{method} step {t}: masks differ");
            for (i, linear) in [&model.fc1, &model.fc2].into_iter().enumerate() {
                let diff = max_diff(&compact.layers[i].dense_weight().unwrap(), &values(linear.weight.val()));
                assert!(diff <= 1e-5, "{method} step {t}: layer {i} weights differ by {diff}");
            }
        }
        assert!(changes >= 2, "{method} changed masks {changes} times");
    }
}

/// SET's growth without a score vector equals ranking the whole layer's
/// `Rng::scores(numel)` over the eligible positions, also across the
/// parallel chunks of a layer above 2²² weights.
#[test]
fn random_growth_equals_ranking_the_stored_scores() {
    let mut rng = Rng::new(5);
    for (d_in, d_out, ks) in [(13, 17, vec![0, 1, 9, 100, 221]), (2049, 2048, vec![1, 1000])] {
        let layer = SparseLayer::linear("fc.weight", d_in, d_out);
        let exclude = random_mask(layer.numel(), 0.3, &mut rng);
        let start = Rng::for_layer(3, "fc.weight", 40, "set-grow");
        let scores = start.clone().scores(layer.numel());
        let eligible = (0..layer.numel() as u32).filter(|&f| !exclude.get(f as usize));
        for k in ks {
            let want = sparse_core::select::top_k(eligible.clone(), k, |f| scores[f as usize]);
            let got = random_top_k(&layer, Some(&exclude), k, &start).unwrap();
            assert_eq!(got, want, "{d_in}x{d_out}, k {k}");
        }
    }
}

/// A layer's output probe has the gradient `dY` of the pre-activation output
/// and changes nothing else: here `L = Σ r ⊙ y`, so `dY = r` without
/// activation and `r ⊙ [x·W + b > 0]` under ReLU; the values' gradient is the
/// one without the probe.
#[test]
fn the_output_probe_gradient_is_dy() {
    let dev = device().autodiff();
    let mut rng = Rng::new(8);
    let (d_in, d_out, batch) = (7, 5, 3);
    let layer = SparseLayer::linear("fc.weight", d_in, d_out);
    let mask = random_mask(layer.numel(), 0.5, &mut rng);
    let weight = rand(&mut rng, layer.numel());
    let (x, r) = (rand(&mut rng, batch * d_in), rand(&mut rng, batch * d_out));
    for act in [Activation::None, Activation::Relu] {
        let base = CompactLinear::new(layer.clone(), mask.clone(), &weight, rand(&mut rng, d_out), &dev).unwrap();
        let run = |l: &CompactLinear| {
            let y = l.forward(tensor(x.clone(), [batch, d_in], &dev), act);
            let out = values(y.clone());
            let loss = (y * tensor(r.clone(), [batch, d_out], &dev)).sum();
            (out, GradientsParams::from_grads(loss.backward(), l))
        };
        let (_, mut plain) = run(&base);
        let mut probed = base.clone().with_output_probe(batch);
        let (_, mut grads) = run(&probed);
        let dy = probed.take_output_grad(&mut grads).unwrap().unwrap();
        let pre = {
            let plain_layer = base.clone();
            values(plain_layer.forward(tensor(x.clone(), [batch, d_in], &dev), Activation::None))
        };
        let want: Vec<f32> = r
            .iter()
            .zip(&pre)
            .map(|(g, p)| if act == Activation::Relu && *p <= 0.0 { 0.0 } else { *g })
            .collect();
        assert!(max_diff(&dy, &want) <= 1e-6, "{act:?}: dY {dy:?} vs {want:?}");
        let g = |grads: &mut GradientsParams| values(grads.remove::<1>(base.values.id).unwrap());
        assert!(
            max_diff(&g(&mut grads), &g(&mut plain)) <= 1e-6,
            "{act:?}: values' gradient changed"
        );
        assert!(probed.output_probe.is_none());
    }
}

/// An output probe of another batch size than the forward pass's is left
/// out (no broadcast into a wrong `dY`): the output is the plain one, the
/// layer has no trace, and a gradient growth says what was missing.
#[test]
fn an_output_probe_of_another_batch_size_leaves_no_trace() {
    let dev = device().autodiff();
    let mut rng = Rng::new(9);
    let (d_in, d_out, batch) = (6, 4, 3);
    let layer = SparseLayer::linear("fc.weight", d_in, d_out);
    let mask = random_mask(layer.numel(), 0.5, &mut rng);
    let base = CompactLinear::new(
        layer.clone(),
        mask.clone(),
        &rand(&mut rng, layer.numel()),
        vec![0.1; d_out],
        &dev,
    )
    .unwrap();
    let x = rand(&mut rng, batch * d_in);
    for rows in [1, batch + 1] {
        let mut probed = base.clone().with_output_probe(rows);
        let y = probed.forward(tensor(x.clone(), [batch, d_in], &dev), Activation::Relu);
        let plain = base.forward(tensor(x.clone(), [batch, d_in], &dev), Activation::Relu);
        assert_eq!(values(y.clone()), values(plain), "rows {rows}");
        let mut grads = GradientsParams::from_grads(y.sum().backward(), &probed);
        assert!(probed.take_trace(&mut grads).unwrap().is_none(), "rows {rows}");
        let rule = CompactRule {
            growth: Growth::Gradient,
            drop_noise: 0.0,
        };
        let at = UpdateAt {
            seed: 0,
            step: 0,
            fraction: 0.5,
            tile: 4,
        };
        let values = probed.values_host().unwrap();
        let err = exchange(&rule, &at, (&layer, &mask), (&values, &probed.positions()), None).unwrap_err();
        assert!(err.to_string().contains("output probe of the batch's rows"), "{err}");
    }
}

/// `with_kept_values` keeps the value of every kept position, starts grown
/// ones at 0 and maps each new entry to its old one.
#[test]
fn kept_values_survive_a_compact_update() {
    let dev = device();
    let mut rng = Rng::new(4);
    let layer = SparseLayer::linear("fc.weight", 6, 9);
    let mask = random_mask(layer.numel(), 0.4, &mut rng);
    let weight = mask_of(&rand(&mut rng, layer.numel()), &mask);
    let old = CompactLinear::new(layer.clone(), mask.clone(), &weight, vec![0.0; 9], &dev).unwrap();
    let new_mask = mask
        .and(&random_mask(layer.numel(), 0.6, &mut rng))
        .or(&random_mask(layer.numel(), 0.2, &mut rng));
    let (new, map) = old.clone().with_kept_values(new_mask.clone()).unwrap();
    let dense = new.dense_weight().unwrap();
    for f in 0..layer.numel() {
        let want = if new_mask.get(f) && mask.get(f) { weight[f] } else { 0.0 };
        assert_eq!(dense[f], want, "position {f}");
    }
    let (old_pos, new_pos) = (old.positions(), new.positions());
    for (e, m) in map.iter().enumerate() {
        assert_eq!(
            m.map(|o| old_pos[o as usize]),
            mask.get(new_pos[e]).then_some(new_pos[e])
        );
    }
    assert_eq!(new.values.id, old.values.id);
}

/// RigL's drop noise decides between equal magnitudes exactly as the
/// masked-dense RigL's `add_noise_at` does (two draws per flat position of
/// the `(seed, path, step, "rigl-noise")` stream, written out here), and SET's
/// growth ranks the `(seed, path, step, "set-grow")` scores: with every
/// `|w|` equal, `layer_mask` equals `Pattern::exchange` over those scores,
/// and differs from the same rule without noise.
#[test]
fn drop_noise_breaks_ties_as_the_dense_rigl() {
    use sparse_core::{DropSchedule, Pattern};
    let layer = SparseLayer::linear("fc.weight", 40, 30);
    let mut rng = Rng::new(6);
    let mask = random_mask(layer.numel(), 0.3, &mut rng);
    let (seed, step, noise) = (9, 6, 1e-5);
    let weights: Vec<f32> = (0..layer.numel())
        .map(|f| if mask.get(f) { 0.5 } else { 0.0 })
        .collect();
    let mut drop: Vec<f32> = weights.iter().map(|w| w.abs()).collect();
    for f in mask.iter_ones() {
        let mut r = Rng::for_layer(seed, "fc.weight", step, "rigl-noise");
        r.skip(2 * f as u64);
        drop[f] += (r.normal() * noise) as f32;
    }
    let grow = Rng::for_layer(seed, "fc.weight", step, "set-grow").scores(layer.numel());
    let rule = |drop_noise: f64| CompactUpdate {
        rule: CompactRule {
            growth: Growth::Random,
            drop_noise,
        },
        updates: UpdateSchedule::new(12).with_interval(3),
        drop: DropSchedule::Cosine.with_alpha(0.3, 3.0).unwrap(),
        skip_optimizer: false,
        seed,
        tile: 4,
    };
    let n_drop = (rule(noise).fraction(step) * mask.count_ones() as f64).floor() as usize;
    assert!(n_drop > 0);
    let want = Pattern::Unstructured.exchange(&layer, &mask, &drop, &grow, n_drop);
    let positions: Vec<usize> = mask.iter_ones().collect();
    let values: Vec<f32> = positions.iter().map(|&f| weights[f]).collect();
    let got = rule(noise)
        .layer_mask(step, &layer, &mask, &values, &positions, None)
        .unwrap();
    assert_eq!(got, want);
    let plain = rule(0.0)
        .layer_mask(step, &layer, &mask, &values, &positions, None)
        .unwrap();
    assert_ne!(plain, want, "the noise decided nothing: the test cannot tell");
    let mut wrong = positions.clone();
    wrong[0] = (0..layer.numel()).find(|&f| !mask.get(f)).unwrap();
    let err = rule(noise)
        .layer_mask(step, &layer, &mask, &values, &wrong, None)
        .unwrap_err();
    assert!(err.to_string().contains("fc.weight"), "{err}");
}

/// A convolution's bias lives at `conv.weight.bias` in the compact model
/// (the field of its `CompactConv2d`) and at `conv.bias` in the dense
/// `Conv2d`: the optimizer state of a checkpoint is keyed by the dense
/// path and comes back under the compact one, next to the values' state.
#[test]
fn a_conv_bias_state_is_keyed_as_the_dense_model_keys_it() {
    use sparse_core::optim::SavedParamState;
    use sparse_kernels::train::{CompactConv2d, compact_state, dense_state};

    #[derive(Module, Debug)]
    struct OneConv {
        conv: CompactConv2d,
    }
    impl CompactModel for OneConv {
        fn compact_layers(&self) -> Vec<&CompactLinear> {
            vec![&self.conv.weight]
        }
        fn try_map_compact(
            mut self,
            f: &mut dyn FnMut(usize, CompactLinear) -> Result<CompactLinear, KernelError>,
        ) -> Result<Self, KernelError> {
            self.conv.weight = f(0, self.conv.weight)?;
            Ok(self)
        }
    }
    let dev = device();
    let dense = burn::nn::conv::Conv2dConfig::new([2, 3], [3, 3]).init(&dev);
    let layer = SparseLayer::conv("conv.weight", &[3, 2, 3, 3]);
    let mask = random_mask(layer.numel(), 0.5, &mut Rng::new(8));
    let nnz = mask.count_ones();
    let model = OneConv {
        conv: CompactConv2d::new(&dense, layer, mask.clone()).unwrap(),
    };
    let (compact_bias, dense_bias) = model.conv.weight.bias_paths();
    assert_eq!(
        (compact_bias.as_str(), dense_bias.as_str()),
        ("conv.weight.bias", "conv.bias")
    );
    let numels = Sparsifier::param_numels(&model);
    assert_eq!(numels.get("conv.weight.bias"), Some(&3), "{numels:?}");
    assert_eq!(numels.get("conv.weight.values"), Some(&nnz), "{numels:?}");
    let state = |path: &str, n: usize| SavedParamState {
        path: path.into(),
        time: 2,
        slots: vec![(0..n).map(|i| i as f32 + 1.0).collect()],
    };
    let saved = dense_state(
        &model,
        vec![state("conv.weight.values", nnz), state("conv.weight.bias", 3)],
    )
    .unwrap();
    let mut paths: Vec<&str> = saved.iter().map(|s| s.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["conv.bias", "conv.weight"]);
    let back = compact_state(&model, saved).unwrap();
    let mut paths: Vec<(&str, usize)> = back.iter().map(|s| (s.path.as_str(), s.slots[0].len())).collect();
    paths.sort_unstable();
    assert_eq!(paths, [("conv.weight.bias", 3), ("conv.weight.values", nnz)]);
}
