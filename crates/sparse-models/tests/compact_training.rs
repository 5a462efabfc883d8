//! Training in sparse execution ([`CompactMlp`], `compact_step`) makes the
//! same topology decisions and reaches the same weights as the masked-dense
//! `Sparsifier::step` on the `Mlp`: for a fixed-mask method, for SET (drops
//! by the active weights) and for RigL (grows by the dense gradient, read
//! from the layers' probes on update steps only), with SGD and with Adam;
//! and so does the small CNN as its [`CompactCnn`] (sparse convolutions with
//! their handwritten backward).

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use sparse_core::{
    AdamSettings, BackendKind, IntoMethod, OptimizerConfig, Pattern, SgdSettings, Sparsifier, SparsityConfig,
    UpdateSchedule,
};
use sparse_kernels::train::{CompactModel, compact_prepare, compact_step};
use sparse_methods::{Mest, MestConfig, RigL, RigLConfig, SRigL, SRigLConfig, Set, SetConfig, StaticRandom};
use sparse_models::{
    Classifier, CompactMlp, CompactTwin, Mlp, MlpConfig, MobileNetV1, MobileNetV1Config, ResNet, ResNetConfig,
    ResNetDepth, SmallCnn, SmallCnnConfig, Stem,
};

use crate::fixed_init::fixed_init;
use crate::masking::values;

const STEPS: u64 = 12;

fn device() -> Device {
    let device = BackendKind::from_env()
        .expect("SPARSEBURN_DEVICE")
        .device()
        .expect("device");
    device.seed(7);
    device.autodiff()
}

/// Batch `t`: 16 images `[1, 4, 5]` and labels, a function of `t` alone.
fn batch(t: u64, dev: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let mut rng = sparse_core::Rng::new(100 + t);
    let x: Vec<f32> = (0..16 * 20).map(|_| rng.next_f32() * 2.0 - 1.0).collect();
    let y: Vec<i64> = (0..16).map(|_| rng.below(3) as i64).collect();
    (
        Tensor::from_data(TensorData::new(x, [16, 1, 4, 5]), dev),
        Tensor::from_data(TensorData::new(y, [16]), dev),
    )
}

fn loss<M: Classifier>(model: &M, t: u64, dev: &Device) -> Tensor<1> {
    let (x, y) = batch(t, dev);
    CrossEntropyLossConfig::new().init(dev).forward(model.forward(x), y)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Trains a 20-24-16-3 MLP `STEPS` steps both ways, each side with its own
/// instance of the method (`make`): after every step the masks are equal and
/// the weights and biases agree within 1e-5. The sparse side runs twice:
/// told its batch (a method with a compact rule then updates on the compact
/// layers, from output probes) and not (dense probes). Returns the number
/// of steps on which the masks changed.
fn compact_equals_masked_dense<M: IntoMethod>(make: impl Fn() -> M, optimizer: OptimizerConfig) -> usize {
    compact_equals_masked_dense_with(make, optimizer, Pattern::Unstructured)
}

/// [`compact_equals_masked_dense`] with masks of `pattern`.
fn compact_equals_masked_dense_with<M: IntoMethod>(
    make: impl Fn() -> M,
    optimizer: OptimizerConfig,
    pattern: Pattern,
) -> usize {
    let told = compact_run(&make, optimizer.clone(), pattern.clone(), Some(16));
    let untold = compact_run(&make, optimizer, pattern, None);
    assert_eq!(told, untold, "the two sparse runs changed masks on different steps");
    told
}

/// One run of [`compact_equals_masked_dense_with`], the sparse side told
/// `rows` as its batch.
fn compact_run<M: IntoMethod>(
    make: &impl Fn() -> M,
    optimizer: OptimizerConfig,
    pattern: Pattern,
    rows: Option<usize>,
) -> usize {
    let dev = device();
    let config = MlpConfig::new()
        .with_input(20)
        .with_hidden(vec![24, 16])
        .with_classes(3);
    let mlp: Mlp = config.init(&dev);
    let sparsity = || {
        SparsityConfig::new()
            .with_sparsity(0.8)
            .with_seed(3)
            .with_pattern(pattern.clone())
    };
    let mut dense = Sparsifier::new(&mlp, sparsity(), make(), &optimizer).unwrap();
    let mut dense_model = dense.init(mlp.clone()).unwrap();
    let mut sparse = Sparsifier::new(&mlp, sparsity(), make(), &optimizer).unwrap();
    let start = sparse.init(mlp).unwrap();
    let mut compact = CompactMlp::from_dense(&start, &sparse).unwrap();
    sparse.release_device_masks();
    let lr = 0.05;
    let mut changes = 0;
    for t in 0..STEPS {
        let grads = GradientsParams::from_grads(loss(&dense_model, t, &dev).backward(), &dense_model);
        dense_model = dense.step(dense_model, grads, lr).unwrap();

        let before: Vec<_> = sparse.masks().to_vec();
        compact = compact_prepare(compact, &sparse, rows).unwrap();
        let dense_probe = compact.layers.iter().any(|l| l.probe.is_some());
        let output_probe = compact.layers.iter().any(|l| l.output_probe.is_some());
        // the compact rule leaves no tensor of a weight's shape, the other path probes densely
        let by_rule = rows.is_some() && sparse.compact_rule().is_some();
        assert!(
            !(by_rule && dense_probe),
            "step {t}: a dense probe under the compact rule"
        );
        assert!(
            !output_probe || by_rule,
            "step {t}: an output probe without the compact rule"
        );
        assert_eq!(
            dense_probe || output_probe,
            sparse.needs().grads,
            "step {t}: probes on a step without dense gradients, or none on one with"
        );
        let grads = GradientsParams::from_grads(loss(&compact, t, &dev).backward(), &compact);
        compact = compact_step(compact, &mut sparse, grads, lr).unwrap();
        changes += usize::from(sparse.masks() != before.as_slice());

        assert_eq!(sparse.masks(), dense.masks(), "step {t}: masks differ");
        assert!(
            compact
                .layers
                .iter()
                .all(|l| l.probe.is_none() && l.output_probe.is_none()),
            "step {t}: a probe is left"
        );
        for (i, (c, d)) in compact
            .compact_layers()
            .into_iter()
            .zip(&dense_model.layers)
            .enumerate()
        {
            assert_eq!(c.mask(), &sparse.masks()[i]);
            let diff = max_diff(&c.dense_weight().unwrap(), &values(d.weight.val()));
            assert!(diff <= 1e-5, "step {t}: layer {i} weights differ by {diff}");
            let bias = values(d.bias.as_ref().unwrap().val());
            let diff = max_diff(&c.bias_values().unwrap().expect("a bias"), &bias);
            assert!(diff <= 1e-5, "step {t}: layer {i} biases differ by {diff}");
        }
    }
    // the weights did train, and the dense model written back is the compact one
    let back = compact.to_dense(config.init(&dev)).unwrap();
    for (b, d) in back.layers.iter().zip(&dense_model.layers) {
        assert!(max_diff(&values(b.weight.val()), &values(d.weight.val())) <= 1e-5);
    }
    changes
}

fn sgd() -> OptimizerConfig {
    OptimizerConfig::Sgd(SgdSettings::new().with_momentum(0.9).with_weight_decay(5e-4))
}

fn adam() -> OptimizerConfig {
    OptimizerConfig::Adam(AdamSettings::new())
}

/// A 20-24-3 MLP.
fn small_mlp(dev: &Device) -> Mlp {
    MlpConfig::new()
        .with_input(20)
        .with_hidden(vec![24])
        .with_classes(3)
        .init(dev)
}

fn every_third() -> UpdateSchedule {
    UpdateSchedule::new(STEPS).with_interval(3)
}

#[test]
fn static_masks_train_compact_as_masked_dense() {
    assert_eq!(compact_equals_masked_dense(|| StaticRandom, sgd()), 0);
}

#[test]
fn set_trains_compact_as_masked_dense() {
    let set = || Set::with_schedule(&SetConfig::new(), every_third()).unwrap();
    assert!(compact_equals_masked_dense(set, sgd()) >= 2);
}

#[test]
fn rigl_trains_compact_as_masked_dense_with_sgd_and_adam() {
    let rigl = || RigL::with_schedule(&RigLConfig::new(), every_third()).unwrap();
    assert!(compact_equals_masked_dense(rigl, sgd()) >= 2);
    let no_skip = || RigL::with_schedule(&RigLConfig::new().with_skip_weight_update(false), every_third()).unwrap();
    assert!(compact_equals_masked_dense(no_skip, adam()) >= 2);
}

#[test]
fn rigl_with_a_gradient_window_trains_compact_as_masked_dense() {
    // the window reads dense gradients on the steps before each update too
    let rigl = || RigL::with_schedule(&RigLConfig::new().with_grad_window(2), every_third()).unwrap();
    assert!(compact_equals_masked_dense(rigl, sgd()) >= 2);
}

#[test]
fn srigl_and_mest_train_compact_as_masked_dense() {
    let srigl = || SRigL::with_schedule(&SRigLConfig::new(), every_third()).unwrap();
    assert!(compact_equals_masked_dense_with(srigl, sgd(), Pattern::ConstantFanIn) >= 2);
    for lambda in [0.0, 0.5] {
        let config = MestConfig::new().with_lambda(lambda);
        let mest = || Mest::with_schedule(&config, every_third(), vec![STEPS]).unwrap();
        assert!(compact_equals_masked_dense(mest, sgd()) >= 2, "lambda {lambda}");
    }
}

/// A model in sparse execution keeps no dense tensor of a layer's shape
/// between steps: its parameters are the active values and the biases.
#[test]
fn the_compact_model_holds_only_active_values() {
    let dev = device();
    let mlp = small_mlp(&dev);
    let mut sparse = Sparsifier::new(&mlp, SparsityConfig::new().with_sparsity(0.9), StaticRandom, &sgd()).unwrap();
    let mlp = sparse.init(mlp).unwrap();
    let compact = CompactMlp::from_dense(&mlp, &sparse).unwrap();
    let active: usize = sparse.masks().iter().map(|m| m.count_ones()).sum();
    assert_eq!(compact.num_params(), active + 24 + 3);
    assert!(active < (20 * 24 + 24 * 3) / 5);
}

/// A compact MLP initialised without its dense twin has the masks SET (and
/// every drop/grow method) draws for the dense `Mlp` of the same widths and
/// seed, values and biases inside Burn's `Linear` bound `1/√d_in`, and
/// refuses what it cannot express.
#[test]
fn random_compact_mlp_has_the_methods_initial_masks() {
    let dev = device();
    let config = SparsityConfig::new().with_sparsity(0.9).with_seed(4);
    let mlp = MlpConfig::new().with_hidden(vec![40, 24]).init(&dev);
    let mut sparse = Sparsifier::new(
        &mlp,
        config.clone(),
        Set::new(&SetConfig::new(), 100).unwrap(),
        &OptimizerConfig::sgd(0.9, 0.0),
    )
    .unwrap();
    let _ = sparse.init(mlp).unwrap();
    let compact = CompactMlp::random(&[784, 40, 24, 10], &config, &dev).unwrap();
    assert_eq!(compact.layers.len(), sparse.masks().len());
    for (layer, mask) in compact.layers.iter().zip(sparse.masks()) {
        assert_eq!(layer.mask(), mask, "{}", layer.layer().path);
        let bound = 1.0 / (layer.layer().shape[0] as f32).sqrt();
        let values = layer.values_host().unwrap();
        let bias = layer.bias_values().unwrap().expect("a bias");
        assert!(
            values.iter().chain(&bias).all(|v| v.abs() <= bound),
            "{}",
            layer.layer().path
        );
        let spread = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(
            spread > 0.5 * bound,
            "{}: values do not fill the bound",
            layer.layer().path
        );
    }
    let logits = compact.forward(Tensor::zeros([2, 1, 28, 28], &dev));
    assert_eq!(logits.dims(), [2, 10]);
    for bad in [
        config.clone().with_distribution(sparse_core::Distribution::Global),
        config
            .clone()
            .with_pattern(Pattern::NM { n: 2, m: 4 })
            .with_sparsity(0.5),
    ] {
        let err = CompactMlp::random(&[784, 40, 24, 10], &bad, &dev).unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
    }
    assert!(CompactMlp::random(&[784], &config, &dev).is_err());
}

/// Batch `t` for the CNN: 8 images `[1, 8, 8]` and labels, a function of `t` alone.
fn image_batch(t: u64, dev: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let mut rng = sparse_core::Rng::new(300 + t);
    let x: Vec<f32> = (0..8 * 64).map(|_| rng.next_f32() * 2.0 - 1.0).collect();
    let y: Vec<i64> = (0..8).map(|_| rng.below(3) as i64).collect();
    (
        Tensor::from_data(TensorData::new(x, [8, 1, 8, 8]), dev),
        Tensor::from_data(TensorData::new(y, [8]), dev),
    )
}

/// Batch `t` at 32×32: 8 images `[1, 32, 32]` and labels.
fn image_batch_32(t: u64, dev: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let mut rng = sparse_core::Rng::new(500 + t);
    let x: Vec<f32> = (0..8 * 1024).map(|_| rng.next_f32() * 2.0 - 1.0).collect();
    let y: Vec<i64> = (0..8).map(|_| rng.below(3) as i64).collect();
    (
        Tensor::from_data(TensorData::new(x, [8, 1, 32, 32]), dev),
        Tensor::from_data(TensorData::new(y, [8]), dev),
    )
}

/// A model of type `D` trained masked-dense next to its compact twin, from
/// the same initial weights and masks, on the image batches of [`image_batch`].
/// The weights come from [`fixed_init`], not from the device's generator:
/// that one is shared by the tests running beside this one, so the weights
/// it gave changed from run to run, and for about one draw in ten a ReLU
/// input sat within 1e-5 of 0 (ResNet-18 has 0.3 million of them here; one
/// at −3.6e-6 was seen), where the two sides' float order alone decides the
/// gate and the gradients upstream of it part by 1e-3 after one step.
struct Both<D: CompactTwin> {
    dense_model: Option<D>,
    dense: Sparsifier,
    compact: Option<D::Compact>,
    sparse: Sparsifier,
    /// Batch `t` ([`image_batch`] unless set).
    batch: fn(u64, &Device) -> (Tensor<4>, Tensor<1, Int>),
}

impl<D: CompactTwin + Clone> Both<D> {
    fn new<M: IntoMethod>(model: D, sparsity: SparsityConfig, make: impl Fn() -> M) -> Self {
        let model = fixed_init(model, 7);
        let mut dense = Sparsifier::new(&model, sparsity.clone(), make(), &sgd()).unwrap();
        let dense_model = dense.init(model.clone()).unwrap();
        let mut sparse = Sparsifier::new(&model, sparsity, make(), &sgd()).unwrap();
        let start = sparse.init(model).unwrap();
        let compact = start.to_compact(&sparse).unwrap();
        sparse.release_device_masks();
        Self {
            dense_model: Some(dense_model),
            dense,
            compact: Some(compact),
            sparse,
            batch: image_batch,
        }
    }

    /// Step `t` on both sides; whether the compact side's masks changed.
    fn step(&mut self, t: u64, dev: &Device) -> bool {
        let image_batch = self.batch;
        let loss = |logits: Tensor<2>| {
            let (_, y) = image_batch(t, dev);
            CrossEntropyLossConfig::new().init(dev).forward(logits, y)
        };
        let model = self.dense_model.take().unwrap();
        let grads = GradientsParams::from_grads(loss(model.forward(image_batch(t, dev).0)).backward(), &model);
        self.dense_model = Some(self.dense.step(model, grads, 0.05).unwrap());
        let before: Vec<_> = self.sparse.masks().to_vec();
        // told its batch: convolutions still take the dense probe (no compact rule for them)
        let rows = image_batch(t, dev).1.dims()[0];
        let compact = compact_prepare(self.compact.take().unwrap(), &self.sparse, Some(rows)).unwrap();
        let grads = GradientsParams::from_grads(loss(compact.forward(image_batch(t, dev).0)).backward(), &compact);
        self.compact = Some(compact_step(compact, &mut self.sparse, grads, 0.05).unwrap());
        self.sparse.masks() != before.as_slice()
    }

    /// The dense model and the compact one written into `fresh`.
    fn models(&self, fresh: D) -> (&D, D) {
        let back = fresh.with_compact(self.compact.as_ref().unwrap()).unwrap();
        (self.dense_model.as_ref().unwrap(), back)
    }
}

/// Trains a small CNN (two 3×3 convolutions with batch norm, two linear
/// layers) `STEPS` steps masked-dense and as its [`CompactCnn`] (the
/// convolutions through the sparse convolution and its handwritten
/// backward): after every step the masks are equal and the weights agree
/// within 1e-5. Returns the number of steps on which the masks changed.
fn compact_cnn_equals_masked_dense<M: IntoMethod>(make: impl Fn() -> M) -> usize {
    let dev = device();
    let config = SmallCnnConfig::new()
        .with_input([1, 8, 8])
        .with_channels([4, 6])
        .with_hidden(12)
        .with_classes(3);
    let sparsity = SparsityConfig::new().with_sparsity(0.7).with_seed(5);
    let mut both = Both::new(config.init(&dev), sparsity, make);
    let mut changes = 0;
    for t in 0..STEPS {
        changes += usize::from(both.step(t, &dev));
        assert_eq!(both.sparse.masks(), both.dense.masks(), "step {t}: masks differ");
        let (d, back): (&SmallCnn, SmallCnn) = both.models(config.init(&dev));
        let pairs = [
            (back.conv1.weight.val(), d.conv1.weight.val()),
            (back.conv2.weight.val(), d.conv2.weight.val()),
        ];
        for (i, (c, w)) in pairs.into_iter().enumerate() {
            let diff = max_diff(&values(c), &values(w));
            assert!(diff <= 1e-5, "step {t}: conv {i} weights differ by {diff}");
        }
        let diff = max_diff(&values(back.fc1.weight.val()), &values(d.fc1.weight.val()));
        assert!(diff <= 1e-5, "step {t}: fc1 weights differ by {diff}");
    }
    changes
}

#[test]
fn the_cnn_trains_compact_as_masked_dense() {
    assert_eq!(compact_cnn_equals_masked_dense(|| StaticRandom), 0);
    let set = || Set::with_schedule(&SetConfig::new(), every_third()).unwrap();
    assert!(compact_cnn_equals_masked_dense(set) >= 2);
    let rigl = || RigL::with_schedule(&RigLConfig::new(), every_third()).unwrap();
    assert!(compact_cnn_equals_masked_dense(rigl) >= 2);
}

/// ResNet-18 (CIFAR stem) as its [`CompactResNet`]: every convolution of
/// every block (strided ones and the projection shortcuts too) a sparse
/// convolution. Trained with RigL on 8×8 images next to the masked-dense
/// model, the masks are identical and the weights agree within 1e-5 through
/// the first update and the step after it. From the second update on the
/// runs may part at float-order ties: the two sides' weights differ by about
/// 1e-7 in absolute terms, a large relative difference for the weights RigL
/// grew at 0 one step earlier, which sit at the next drop threshold; how
/// many of the 1.1 million positions then swap (62 to 3568 seen) depends on
/// the summation order of Burn's multithreaded dense kernels, so the test
/// compares the steps before that point only.
#[test]
fn resnet18_trains_compact_as_masked_dense() {
    let dev = device();
    let config = ResNetConfig::new(ResNetDepth::R18)
        .with_stem(Stem::Cifar)
        .with_classes(3)
        .with_in_channels(1);
    let sparsity = SparsityConfig::new().with_sparsity(0.9).with_seed(5);
    let rigl = || RigL::with_schedule(&RigLConfig::new(), UpdateSchedule::new(4).with_interval(2)).unwrap();
    let mut both = Both::new(config.init(&dev), sparsity, rigl);
    let compact = both.compact.as_ref().unwrap();
    assert_eq!(compact.compact_layers().len(), both.sparse.layers().len());
    let (mut changes, mut compared) = (0, 0);
    for t in 0..4 {
        changes += usize::from(both.step(t, &dev));
        let differ: usize = both
            .sparse
            .masks()
            .iter()
            .zip(both.dense.masks())
            .map(|(a, b)| (0..a.len()).filter(|&i| a.get(i) != b.get(i)).count())
            .sum();
        if t >= 2 && differ > 0 {
            continue;
        }
        assert_eq!(differ, 0, "step {t}: masks differ");
        compared += 1;
        let (d, b): (&ResNet, ResNet) = both.models(config.init(&dev));
        let pairs = [
            (b.conv1.weight.val(), d.conv1.weight.val()),
            (b.layer1[0].conv1.weight.val(), d.layer1[0].conv1.weight.val()),
            (b.layer2[0].conv1.weight.val(), d.layer2[0].conv1.weight.val()),
            (b.layer4[1].conv2.weight.val(), d.layer4[1].conv2.weight.val()),
            (
                b.layer2[0].downsample.as_ref().unwrap().0.weight.val(),
                d.layer2[0].downsample.as_ref().unwrap().0.weight.val(),
            ),
        ];
        for (i, (c, w)) in pairs.into_iter().enumerate() {
            let diff = max_diff(&values(c), &values(w));
            assert!(diff <= 1e-5, "step {t}: conv {i} weights differ by {diff}");
        }
        let diff = max_diff(&values(b.fc.weight.val()), &values(d.fc.weight.val()));
        assert!(diff <= 1e-5, "step {t}: fc weights differ by {diff}");
    }
    assert!(changes >= 1, "RigL changed no mask");
    assert!(compared >= 2, "the masks differed from the first update on");
}

/// MobileNetV1 (width 0.25, small-image stem) as its [`CompactMobileNet`]:
/// the stem, the 13 pointwise convolutions and the classifier compact, the
/// depthwise convolutions dense. From the same weights and masks the twin's
/// logits equal the dense model's (within 1e-4 on 32×32 images), and one
/// training step with a SET update (forward, backward, SGD with momentum,
/// drop and grow) leaves identical masks and weights within 1e-5. Later
/// steps are not compared: at this size (8 images, 16 to 256 channels,
/// batch norms over as few as 32 values) the network's gradients are so
/// sensitive that weights 5e-7 apart give steps 1e-3 apart, in plain SGD as
/// much as with momentum (the dense model alone, its stem weights moved by
/// up to 5e-7, gave stem gradients 0.1 to 0.5 apart at a scale of 12 to 21
/// on three batches). A depthwise convolution in the sparse set is refused
/// with a message that names it.
#[test]
fn mobilenet_trains_compact_as_masked_dense() {
    let dev = device();
    let config = MobileNetV1Config::new()
        .with_classes(3)
        .with_width(0.25)
        .with_in_channels(1)
        .with_small_input(true);
    let sparsity = || {
        SparsityConfig::new()
            .with_sparsity(0.8)
            .with_seed(5)
            .with_filter(config.init(&dev).unwrap().sparsity_filter())
    };
    let set = || Set::with_schedule(&SetConfig::new(), UpdateSchedule::new(4).with_interval(1)).unwrap();
    let mut both = Both::new(config.init(&dev).unwrap(), sparsity(), set);
    both.batch = image_batch_32;
    let compact = both.compact.as_ref().unwrap();
    assert_eq!(compact.compact_layers().len(), 15); // stem, 13 pointwise, classifier
    let (d, compact) = (both.dense_model.as_ref().unwrap(), both.compact.as_ref().unwrap());
    let x = image_batch_32(9, &dev).0;
    let (a, b) = (
        values(d.forward(x.clone()).flatten::<1>(0, 1)),
        values(compact.forward(x).flatten::<1>(0, 1)),
    );
    assert!(max_diff(&a, &b) <= 1e-4, "logits differ by {}", max_diff(&a, &b));

    assert!(both.step(0, &dev), "SET changed no mask");
    assert_eq!(both.sparse.masks(), both.dense.masks(), "masks differ");
    let (d, b): (&MobileNetV1, MobileNetV1) = both.models(config.init(&dev).unwrap());
    let pairs = [
        (b.stem.0.weight.val(), d.stem.0.weight.val()),
        (b.blocks[0].dw.weight.val(), d.blocks[0].dw.weight.val()),
        (b.blocks[0].pw.weight.val(), d.blocks[0].pw.weight.val()),
        (b.blocks[12].pw.weight.val(), d.blocks[12].pw.weight.val()),
    ];
    for (i, (c, w)) in pairs.into_iter().enumerate() {
        let diff = max_diff(&values(c), &values(w));
        assert!(diff <= 1e-5, "conv {i} weights differ by {diff}");
    }
    let diff = max_diff(&values(b.fc.weight.val()), &values(d.fc.weight.val()));
    assert!(diff <= 1e-5, "fc weights differ by {diff}");

    // the depthwise convolutions in the sparse set: refused by name
    let model = config.init(&dev).unwrap();
    let all = SparsityConfig::new().with_sparsity(0.8).with_seed(5);
    let mut sparse = Sparsifier::new(&model, all, StaticRandom, &sgd()).unwrap();
    let model = sparse.init(model).unwrap();
    let err = model.to_compact(&sparse).unwrap_err().to_string();
    assert!(err.contains("blocks.0.dw.weight") && err.contains("depthwise"), "{err}");
}

/// The showcase's rules come from the methods' configs: RigL's drop noise
/// and skipped optimizer step carry over, and a RigL the compact layers
/// cannot update (a gradient window, grow noise) is refused with a message
/// naming the settings.
#[test]
fn the_showcase_rules_follow_the_method_configs() {
    use sparse_kernels::train::Growth;
    let rule = sparse_models::rigl_rule(&RigLConfig::new().with_drop_noise(2e-5), 1000, 1).unwrap();
    assert_eq!((rule.rule.growth, rule.rule.drop_noise), (Growth::Gradient, 2e-5));
    assert_eq!(rule.skip_optimizer, RigLConfig::new().skip_weight_update);
    let set = sparse_models::set_rule(&SetConfig::new(), 1000, 1).unwrap();
    assert_eq!((set.rule.growth, set.rule.drop_noise), (Growth::Random, 0.0));
    for config in [
        RigLConfig::new().with_grad_window(2),
        RigLConfig::new().with_grow_noise(1e-4),
    ] {
        let err = sparse_models::rigl_rule(&config, 1000, 1).unwrap_err().to_string();
        assert!(err.contains("grad_window") && err.contains("grow_noise"), "{err}");
    }
}

/// `Sparsifier::compact_rule_step` takes new masks on update steps and on
/// them only, and a method without a compact rule is sent to `compact_step`;
/// a refused call leaves the step where it was.
#[test]
fn compact_rule_steps_refuse_masks_at_the_wrong_steps() {
    let dev = device();
    let mlp = small_mlp(&dev);
    let config = || SparsityConfig::new().with_sparsity(0.8).with_seed(3);
    let set = Set::with_schedule(&SetConfig::new(), every_third()).unwrap();
    let mut sparse = Sparsifier::new(&mlp, config(), set, &sgd()).unwrap();
    sparse.init(mlp.clone()).unwrap();
    assert!(sparse.needs().update, "step 0 is an update step of every_third()");
    let err = sparse.compact_rule_step(None).unwrap_err().to_string();
    assert!(err.contains("is an update step") && err.contains("set"), "{err}");
    assert_eq!(sparse.step_count(), 0);
    let masks = sparse.masks().to_vec();
    sparse.compact_rule_step(Some(masks.clone())).unwrap();
    assert!(!sparse.needs().update);
    let err = sparse.compact_rule_step(Some(masks)).unwrap_err().to_string();
    assert!(err.contains("is no update step"), "{err}");
    assert_eq!(sparse.step_count(), 1);
    let mut fixed = Sparsifier::new(&mlp, config(), StaticRandom, &sgd()).unwrap();
    fixed.init(mlp).unwrap();
    let err = fixed.compact_rule_step(None).unwrap_err().to_string();
    assert!(err.contains("compact_step"), "{err}");
}
