//! A decoder-only transformer for character- or byte-level language modelling
//! (GPT-style, after nanoGPT's `model.py`, Karpathy 2022): learned token and
//! position embeddings, `L` pre-LayerNorm blocks of causal multi-head
//! self-attention and a 4×-wide GELU MLP (Burn's `TransformerEncoder` with
//! `norm_first` and the autoregressive mask), a final LayerNorm, and a linear
//! head to the vocabulary (not tied to the token embedding). Weights start from
//! `N(0, 0.02)` as in GPT-2 (without nanoGPT's `1/√(2L)` scaling of residual
//! projections); Burn's linear layers keep their biases.
//!
//! The loss is the mean next-token cross-entropy; [`NextToken::bits_per_token`]
//! reports it in bits (bits per character for a char vocabulary).
//!
//! **Sparse weights.** The embeddings are stored as `Linear` weights
//! (`tok_emb.weight` `[V, d]`, `pos_emb.weight` `[T, d]`) and looked up by row, which
//! equals multiplying a one-hot input by them, so sparse-core can find and mask
//! them like any linear layer. [`CharTransformer::sparsity_filter`] keeps them and
//! the head (`head.weight`) dense and makes the attention projections
//! (`query`, `key`, `value`, `output`: three separate `d×d` layers for Q, K, V, as
//! ERK sees them) and the MLP projections (`linear_inner`, `linear_outer`) of every
//! block sparse; [`CharTransformer::sparsity_filter_with`] switches embeddings and
//! head on.

use burn::config::Config;
use burn::module::Module;
use burn::nn::attention::generate_autoregressive_mask;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::transformer::{TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput};
use burn::nn::{Dropout, DropoutConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use sparse_core::{LayerFilter, Rng, host};

use crate::error::ModelError;

/// Shape of the model.
#[derive(Config, Debug)]
pub struct CharTransformerConfig {
    /// Vocabulary size.
    pub vocab: usize,
    /// Context length `T` (tokens).
    #[config(default = 128)]
    pub block: usize,
    /// Transformer blocks `L`.
    #[config(default = 4)]
    pub layers: usize,
    /// Attention heads.
    #[config(default = 4)]
    pub heads: usize,
    /// Model width `d`.
    #[config(default = 128)]
    pub d_model: usize,
    /// Dropout on embeddings, attention weights and residual branches.
    #[config(default = 0.1)]
    pub dropout: f64,
}

/// The decoder-only transformer.
#[derive(Module, Debug)]
pub struct CharTransformer {
    /// Token embedding `[V, d]` (looked up by row).
    pub tok_emb: Linear,
    /// Position embedding `[T, d]` (looked up by row).
    pub pos_emb: Linear,
    /// The transformer blocks.
    pub blocks: TransformerEncoder,
    /// Final LayerNorm.
    pub norm: LayerNorm,
    /// Output head `[d, V]`.
    pub head: Linear,
    dropout: Dropout,
    block: usize,
}

impl CharTransformerConfig {
    /// Checks the shape.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.vocab == 0 || self.block == 0 || self.layers == 0 || self.heads == 0 {
            return Err(ModelError::InvalidConfig(
                "vocabulary, context, layers and heads must all be at least 1".into(),
            ));
        }
        if !self.d_model.is_multiple_of(self.heads) {
            return Err(ModelError::InvalidConfig(format!(
                "d_model {} must be a multiple of the number of heads {}",
                self.d_model, self.heads
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ModelError::InvalidConfig(format!(
                "dropout {} must be in [0, 1)",
                self.dropout
            )));
        }
        Ok(())
    }

    /// Builds the model on `device`.
    pub fn init(&self, device: &Device) -> Result<CharTransformer, ModelError> {
        self.validate()?;
        let normal = Initializer::Normal { mean: 0.0, std: 0.02 };
        let linear = |i, o| LinearConfig::new(i, o).with_initializer(normal.clone()).init(device);
        let table = |rows, d| {
            LinearConfig::new(rows, d)
                .with_bias(false)
                .with_initializer(normal.clone())
                .init(device)
        };
        Ok(CharTransformer {
            tok_emb: table(self.vocab, self.d_model),
            pos_emb: table(self.block, self.d_model),
            blocks: TransformerEncoderConfig::new(self.d_model, 4 * self.d_model, self.heads, self.layers)
                .with_dropout(self.dropout)
                .with_norm_first(true)
                .with_initializer(normal.clone())
                .init(device),
            norm: LayerNormConfig::new(self.d_model).init(device),
            head: linear(self.d_model, self.vocab),
            dropout: DropoutConfig::new(self.dropout).init(),
            block: self.block,
        })
    }
}

impl CharTransformer {
    /// The context length.
    pub fn block(&self) -> usize {
        self.block
    }

    /// Logits `[B, T, V]` for token ids `[B, T]` (`T` ≤ the context length).
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let [b, t] = tokens.dims();
        let device = tokens.device();
        let [_, d] = self.tok_emb.weight.dims();
        let tok = self
            .tok_emb
            .weight
            .val()
            .select(0, tokens.reshape([b * t]))
            .reshape([b, t, d]);
        let pos = self.pos_emb.weight.val().slice(0..t).unsqueeze_dim::<3>(0);
        let x = self.dropout.forward(tok + pos);
        let mask = generate_autoregressive_mask(b, t, &device);
        let x = self.blocks.forward(TransformerEncoderInput::new(x).mask_attn(mask));
        self.head.forward(self.norm.forward(x))
    }

    /// Mean next-token cross-entropy (nats) of `targets` `[B, T]` given `tokens` `[B, T]`.
    pub fn loss(&self, tokens: Tensor<2, Int>, targets: Tensor<2, Int>) -> Tensor<1> {
        let [b, t] = tokens.dims();
        let logits = self.forward(tokens);
        let [_, _, v] = logits.dims();
        CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits.reshape([b * t, v]), targets.reshape([b * t]))
    }

    /// The default sparse weights: attention and MLP projections of every block;
    /// embeddings and head dense.
    pub fn sparsity_filter(&self) -> LayerFilter {
        self.sparsity_filter_with(false, false)
    }

    /// The block projections, plus the embeddings and/or the head when asked.
    pub fn sparsity_filter_with(&self, embeddings: bool, head: bool) -> LayerFilter {
        let mut exclude = Vec::new();
        if !embeddings {
            exclude.extend(["tok_emb.weight".to_string(), "pos_emb.weight".to_string()]);
        }
        if !head {
            exclude.push("head.weight".to_string());
        }
        LayerFilter::new().with_exclude(exclude)
    }
}

/// A next-token model: logits `[B, T, V]` for token ids `[B, T]`, with a
/// context of at most [`NextToken::context`] tokens. The dense
/// [`CharTransformer`] and its sparse twin
/// ([`crate::sparse_char_transformer::SparseCharTransformer`]) share the
/// evaluation ([`NextToken::bits_per_token`]) and the sampling
/// ([`NextToken::generate`]) through it.
pub trait NextToken {
    /// Logits `[B, T, V]` for token ids `[B, T]` (`T` ≤ the context).
    fn logits(&self, tokens: Tensor<2, Int>) -> Tensor<3>;

    /// The context length.
    fn context(&self) -> usize;

    /// Bits per token of the model on `tokens`: every token after the first is
    /// predicted from the tokens before it in consecutive, non-overlapping windows of
    /// the context length (the context restarts at each window), `batch` windows per
    /// forward pass. Run it on a model in evaluation mode (`model.valid()`).
    fn bits_per_token(&self, tokens: &[u32], batch: usize, device: &Device) -> Result<f64, ModelError> {
        let t = self.context();
        if tokens.len() < 2 {
            return Err(ModelError::InvalidConfig(
                "bits per token needs at least 2 tokens".into(),
            ));
        }
        let predicted = tokens.len() - 1;
        let windows: Vec<(usize, usize)> = (0..predicted).step_by(t).map(|s| (s, (predicted - s).min(t))).collect();
        let mut nats = 0.0f64;
        for group in windows.chunks(batch.max(1)) {
            // windows of one group share a length except possibly the very last one
            for same in group.chunk_by(|a, b| a.1 == b.1) {
                nats += window_nats(self, tokens, same, device)?;
            }
        }
        Ok(nats / predicted as f64 / std::f64::consts::LN_2)
    }

    /// Continues `prompt` by `n` tokens: greedy when `temperature` is 0, else sampled
    /// from `softmax(logits / temperature)` with a generator seeded by `seed`. The
    /// context is the last [`NextToken::context`] tokens. Run it on a model in evaluation mode.
    fn generate(
        &self,
        prompt: &[u32],
        n: usize,
        temperature: f64,
        seed: u64,
        device: &Device,
    ) -> Result<Vec<u32>, ModelError> {
        if prompt.is_empty() {
            return Err(ModelError::InvalidConfig(
                "generation needs a prompt of at least one token".into(),
            ));
        }
        let mut rng = Rng::new(seed);
        let mut out = prompt.to_vec();
        for _ in 0..n {
            let context = &out[out.len().saturating_sub(self.context())..];
            let ids: Vec<i64> = context.iter().map(|x| i64::from(*x)).collect();
            let len = ids.len();
            let logits = self.logits(Tensor::from_data(TensorData::new(ids, [1, len]), device));
            let [_, _, v] = logits.dims();
            let last = logits.slice([0..1, len - 1..len, 0..v]).reshape([v]);
            let last = host::to_vec(last).map_err(|e| ModelError::InvalidConfig(e.to_string()))?;
            out.push(pick(&last, temperature, &mut rng));
        }
        Ok(out)
    }
}

impl NextToken for CharTransformer {
    fn logits(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        self.forward(tokens)
    }

    fn context(&self) -> usize {
        self.block
    }
}

/// Summed negative log-likelihood (nats) of windows `(start, len)` of equal length.
fn window_nats<M: NextToken + ?Sized>(
    model: &M,
    tokens: &[u32],
    windows: &[(usize, usize)],
    device: &Device,
) -> Result<f64, ModelError> {
    let (b, len) = (windows.len(), windows[0].1);
    let ids = |offset: usize| -> Vec<i64> {
        windows
            .iter()
            .flat_map(|&(s, l)| tokens[s + offset..s + offset + l].iter().map(|x| i64::from(*x)))
            .collect()
    };
    let inputs = Tensor::<2, Int>::from_data(TensorData::new(ids(0), [b, len]), device);
    let targets = Tensor::<3, Int>::from_data(TensorData::new(ids(1), [b, len, 1]), device);
    let logp = log_softmax(model.logits(inputs), 2).gather(2, targets);
    let sum = host::to_vec(logp.sum()).map_err(|e| ModelError::InvalidConfig(e.to_string()))?;
    Ok(-f64::from(sum[0]))
}

/// Greedy (`temperature == 0`) or sampled token from `logits`.
fn pick(logits: &[f32], temperature: f64, rng: &mut Rng) -> u32 {
    let best = logits.iter().enumerate().fold(
        (0, f32::NEG_INFINITY),
        |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) },
    );
    if temperature <= 0.0 {
        return best.0 as u32;
    }
    let weights: Vec<f64> = logits
        .iter()
        .map(|&l| ((f64::from(l) - f64::from(best.1)) / temperature).exp())
        .collect();
    let mut u = rng.next_f64() * weights.iter().sum::<f64>();
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return i as u32;
        }
        u -= w;
    }
    best.0 as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_follows_the_tempered_softmax() {
        let logits = [0.0f32, (2.0f32).ln(), f32::NEG_INFINITY];
        let mut rng = Rng::new(3);
        let mut counts = [0usize; 3];
        for _ in 0..30_000 {
            counts[pick(&logits, 1.0, &mut rng) as usize] += 1;
        }
        // probabilities 1/3, 2/3, 0
        assert_eq!(counts[2], 0);
        assert!((counts[1] as f64 / 30_000.0 - 2.0 / 3.0).abs() < 0.015, "{counts:?}");
        // temperature 0.5 squares the odds: 1/5, 4/5
        let mut counts = [0usize; 3];
        for _ in 0..30_000 {
            counts[pick(&logits, 0.5, &mut rng) as usize] += 1;
        }
        assert!((counts[1] as f64 / 30_000.0 - 0.8).abs() < 0.015, "{counts:?}");
        assert_eq!(pick(&logits, 0.0, &mut rng), 1);
    }
}
