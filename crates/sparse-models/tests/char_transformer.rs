//! The character-level transformer: initial loss, causality, parameter count,
//! which weights are sparse, bits per token against the loss, generation, and
//! that it learns.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use sparse_core::method::{InitContext, Method};
use sparse_core::{BackendKind, Mask, OptimizerConfig, Rng, Sparsifier, SparsityConfig, host};
use sparse_models::{CharTransformer, CharTransformerConfig, NextToken, count_params};

fn device() -> Device {
    BackendKind::from_env()
        .expect("SPARSEBURN_DEVICE")
        .device()
        .expect("backend compiled")
        .autodiff()
}

fn small(vocab: usize, block: usize) -> CharTransformerConfig {
    CharTransformerConfig::new(vocab)
        .with_block(block)
        .with_layers(2)
        .with_heads(2)
        .with_d_model(32)
        .with_dropout(0.0)
}

fn ids(values: Vec<i64>, b: usize, t: usize, device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(values, [b, t]), device)
}

fn random_ids(n: usize, vocab: usize, seed: u64) -> Vec<i64> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.below(vocab as u64) as i64).collect()
}

#[derive(Clone, Debug)]
struct Dense;
impl Method for Dense {
    fn name(&self) -> &'static str {
        "dense"
    }
    fn init(&mut self, _ctx: &mut InitContext<'_>, _masks: &mut [Mask]) -> sparse_core::Result<()> {
        Ok(())
    }
}

#[test]
fn the_initial_loss_is_about_ln_v() {
    let device = device();
    let model = small(113, 16).init(&device).expect("model").valid();
    let inner = device.inner();
    let x = ids(random_ids(8 * 16, 113, 1), 8, 16, &inner);
    let y = ids(random_ids(8 * 16, 113, 2), 8, 16, &inner);
    let loss = host::to_vec(model.loss(x, y)).expect("loss")[0];
    assert!(
        (f64::from(loss) - 113f64.ln()).abs() < 0.05,
        "{loss} vs ln 113 = {}",
        113f64.ln()
    );
}

#[test]
fn changing_later_tokens_leaves_earlier_logits_unchanged() {
    let device = device().inner();
    let model = small(20, 12).init(&device).expect("model");
    let a = random_ids(12, 20, 3);
    let mut b = a.clone();
    for v in &mut b[7..] {
        *v = (*v + 5) % 20;
    }
    let la = host::to_vec(model.forward(ids(a, 1, 12, &device))).expect("logits");
    let lb = host::to_vec(model.forward(ids(b, 1, 12, &device))).expect("logits");
    let v = 20;
    for t in 0..12 {
        let (ra, rb) = (&la[t * v..(t + 1) * v], &lb[t * v..(t + 1) * v]);
        let diff = ra.iter().zip(rb).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        if t < 7 {
            assert!(diff < 1e-5, "position {t} saw the future ({diff})");
        } else {
            assert!(diff > 1e-4, "position {t} must see its own token ({diff})");
        }
    }
}

/// Per block: Q, K, V, O `4(d² + d)`, MLP `d·4d + 4d + 4d·d + d`, two LayerNorms
/// `4d`; plus embeddings `V·d + T·d`, final LayerNorm `2d`, head `d·V + V`.
#[test]
fn parameter_count_follows_the_architecture() {
    let (v, t, l, d) = (65usize, 64usize, 3usize, 48usize);
    let model = CharTransformerConfig::new(v)
        .with_block(t)
        .with_layers(l)
        .with_heads(4)
        .with_d_model(d)
        .init(&device())
        .expect("model");
    let per_block = 4 * (d * d + d) + (8 * d * d + 5 * d) + 4 * d;
    let expected = l * per_block + v * d + t * d + 2 * d + d * v + v;
    assert_eq!(count_params(&model), expected);
}

#[test]
fn block_projections_are_sparse_and_embeddings_and_head_dense_by_default() {
    let device = device();
    let model = small(30, 8).init(&device).expect("model");
    let paths = |filter| {
        let config = SparsityConfig::new().with_filter(filter).with_sparsity(0.9);
        let sparse = Sparsifier::new(&model, config, Dense, &OptimizerConfig::adam()).expect("sparsifier");
        sparse.layers().iter().map(|l| l.path.clone()).collect::<Vec<_>>()
    };
    let default = paths(model.sparsity_filter());
    let mut expected = Vec::new();
    for b in 0..2 {
        for p in [
            "mha.query",
            "mha.key",
            "mha.value",
            "mha.output",
            "pwff.linear_inner",
            "pwff.linear_outer",
        ] {
            expected.push(format!("blocks.layers.{b}.{p}.weight"));
        }
    }
    assert_eq!(default, expected);
    let all = paths(model.sparsity_filter_with(true, true));
    assert_eq!(all.len(), 15);
    for p in ["tok_emb.weight", "pos_emb.weight", "head.weight"] {
        assert!(all.contains(&p.to_string()), "{p} switchable to sparse");
    }
}

/// Bits per token from the model's own windows against the cross-entropy loss
/// of the same windows (a different code path), including a short last window.
#[test]
fn bits_per_token_equals_the_mean_cross_entropy_over_windows_in_bits() {
    let device = device().inner();
    let model = small(17, 8).init(&device).expect("model");
    let tokens: Vec<u32> = random_ids(30, 17, 9).iter().map(|&x| x as u32).collect();
    let bpt = model.bits_per_token(&tokens, 2, &device).expect("bits");
    let ce = CrossEntropyLossConfig::new().init(&device);
    let mut nats = 0.0;
    for start in (0..29).step_by(8) {
        let len = (29 - start).min(8);
        let x: Vec<i64> = tokens[start..start + len].iter().map(|&v| i64::from(v)).collect();
        let y: Vec<i64> = tokens[start + 1..start + len + 1]
            .iter()
            .map(|&v| i64::from(v))
            .collect();
        let logits = model.forward(ids(x, 1, len, &device)).reshape([len, 17]);
        let loss = ce.forward(logits, Tensor::from_data(TensorData::new(y, [len]), &device));
        nats += f64::from(host::to_vec(loss).expect("loss")[0]) * len as f64;
    }
    let expected = nats / 29.0 / std::f64::consts::LN_2;
    assert!((bpt - expected).abs() < 1e-4, "{bpt} vs {expected}");
}

#[test]
fn generation_is_seeded_and_continues_past_the_context() {
    let device = device().inner();
    let model = small(11, 6).init(&device).expect("model");
    let a = model.generate(&[1, 2, 3], 10, 1.0, 5, &device).expect("sample");
    let b = model.generate(&[1, 2, 3], 10, 1.0, 5, &device).expect("sample");
    assert_eq!(a, b);
    assert_eq!(a.len(), 13);
    assert_eq!(&a[..3], &[1, 2, 3]);
    assert!(a.iter().all(|&t| t < 11));
    let greedy = model.generate(&[4], 3, 0.0, 0, &device).expect("greedy");
    let x = ids(greedy[..3].iter().map(|&t| i64::from(t)).collect(), 1, 3, &device);
    let logits = host::to_vec(model.forward(x)).expect("logits");
    let last = &logits[2 * 11..3 * 11];
    let best = (0..11).max_by(|&i, &j| last[i].total_cmp(&last[j])).expect("argmax");
    assert_eq!(greedy[3] as usize, best, "greedy picks the arg max");
    assert!(model.generate(&[], 3, 1.0, 0, &device).is_err());
}

/// A periodic sequence is learned to near-zero loss within a couple hundred steps.
#[test]
fn it_learns_a_periodic_sequence() {
    let device = device();
    let mut model = small(7, 16).init(&device).expect("model");
    let mut optim = AdamConfig::new().init();
    let seq: Vec<i64> = (0..17).map(|i| [0, 3, 1, 4, 1, 5, 2][i % 7]).collect();
    let x = ids(seq[..16].to_vec(), 1, 16, &device);
    let y = ids(seq[1..].to_vec(), 1, 16, &device);
    let mut last = f32::MAX;
    for _ in 0..150 {
        let loss = model.loss(x.clone(), y.clone());
        last = host::to_vec(loss.clone().inner()).expect("loss")[0];
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(3e-3, model, grads);
    }
    assert!(last < 0.2, "loss after 150 steps: {last}");
}

#[test]
fn bad_shapes_are_refused() {
    let device = device();
    let err = CharTransformerConfig::new(10)
        .with_d_model(30)
        .with_heads(4)
        .init(&device)
        .err();
    assert!(
        err.map(|e| e.to_string())
            .unwrap_or_default()
            .contains("multiple of the number of heads")
    );
    assert!(CharTransformerConfig::new(0).init(&device).is_err());
    let model: CharTransformer = small(5, 4).init(&device).expect("model");
    assert!(model.valid().bits_per_token(&[1], 4, &device.inner()).is_err());
}
