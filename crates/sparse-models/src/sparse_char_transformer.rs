//! The sparse twin of [`CharTransformer`]: every attention and MLP projection
//! of every block, and the head, a [`SparseLinear`] (each in the format asked
//! for, or the one its mask and `auto` choose: a layer without a mask, or too
//! small to gain, stays dense under `auto`); the embedding
//! tables and the LayerNorms as they are. The forward pass is the dense
//! model's in evaluation mode (no dropout), written out because Burn's
//! `MultiHeadAttention` calls its own `Linear`s:
//!
//! ```text
//! x = E_tok[tokens] + E_pos[0..T]
//! for each block:  x = x + W_o · attention(LN_a(x)),   x = x + W_2 · gelu(W_1 · LN_f(x))
//! logits = W_head · LN(x)
//! attention(h) = softmax(q kᵀ / √d_k, future positions filled with `min_float`) v, per head
//! ```
//!
//! with Burn's pre-norm `TransformerEncoderLayer` naming: `norm_2` before the
//! attention and `norm_1` before the MLP.

use burn::module::{Module, Param};
use burn::nn::activation::Activation as BurnActivation;
use burn::nn::attention::generate_autoregressive_mask;
use burn::nn::transformer::TransformerEncoderConfig;
use burn::nn::{LayerNorm, LayerNormConfig, Linear};
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde_json::{Value, json};
use sparse_kernels::modules::TensorMap;
use sparse_kernels::{Activation, KernelError, SparseLinear};

use crate::char_transformer::{CharTransformer, NextToken};
use crate::dense_twin::dense_linear;
use crate::sparse_store::{SparseStore, count, load_linear};
use crate::to_sparse::{SparseMasks, SparseOptions, ToSparse, linear};
use sparse_kernels::modules::host;

/// One pre-norm transformer block with sparse projections.
#[derive(Module, Debug)]
pub struct SparseDecoderBlock {
    /// LayerNorm before the attention (Burn's `norm_2`).
    pub norm_attention: LayerNorm,
    /// Query projection.
    pub query: SparseLinear,
    /// Key projection.
    pub key: SparseLinear,
    /// Value projection.
    pub value: SparseLinear,
    /// Output projection.
    pub output: SparseLinear,
    /// LayerNorm before the MLP (Burn's `norm_1`).
    pub norm_mlp: LayerNorm,
    /// MLP expansion (`linear_inner`), GELU after it.
    pub inner: SparseLinear,
    /// MLP projection back (`linear_outer`).
    pub outer: SparseLinear,
    heads: usize,
    min_float: f64,
}

/// Inference-only sparse char transformer.
#[derive(Module, Debug)]
pub struct SparseCharTransformer {
    /// Token embedding `[V, d]`.
    pub tok_emb: Param<Tensor<2>>,
    /// Position embedding `[T, d]`.
    pub pos_emb: Param<Tensor<2>>,
    /// The blocks.
    pub blocks: Vec<SparseDecoderBlock>,
    /// Final LayerNorm.
    pub norm: LayerNorm,
    /// Output head `[d, V]`.
    pub head: SparseLinear,
}

/// `x` `[B, T, d]` through `layer` as `[B·T, d]`.
fn per_token(layer: &SparseLinear, x: Tensor<3>) -> Tensor<3> {
    let [b, t, d] = x.dims();
    let y = layer.forward(x.reshape([b * t, d]));
    let [_, out] = y.dims();
    y.reshape([b, t, out])
}

impl SparseDecoderBlock {
    fn attention(&self, h: Tensor<3>, mask: Tensor<4, burn::tensor::Bool>) -> Tensor<3> {
        let [b, t, d] = h.dims();
        let dk = d / self.heads;
        let split = |l: &SparseLinear| per_token(l, h.clone()).reshape([b, t, self.heads, dk]).swap_dims(1, 2);
        let (q, k, v) = (split(&self.query), split(&self.key), split(&self.value));
        let scores = q
            .matmul(k.transpose())
            .div_scalar((dk as f32).sqrt())
            .mask_fill(mask, self.min_float);
        let context = softmax(scores, 3).matmul(v).swap_dims(1, 2).reshape([b, t, d]);
        per_token(&self.output, context)
    }

    fn forward(&self, x: Tensor<3>, mask: Tensor<4, burn::tensor::Bool>) -> Tensor<3> {
        let x = x.clone() + self.attention(self.norm_attention.forward(x), mask);
        let hidden = gelu(per_token(&self.inner, self.norm_mlp.forward(x.clone())));
        x + per_token(&self.outer, hidden)
    }
}

impl SparseCharTransformer {
    /// Logits `[B, T, V]` for token ids `[B, T]` (`T` ≤ the context length).
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let [b, t] = tokens.dims();
        let device = tokens.device();
        let [_, d] = self.tok_emb.dims();
        let tok = self.tok_emb.val().select(0, tokens.reshape([b * t])).reshape([b, t, d]);
        let pos = self.pos_emb.val().slice(0..t).unsqueeze_dim::<3>(0);
        let mask = generate_autoregressive_mask(b, t, &device).reshape([b, 1, t, t]);
        let x = self
            .blocks
            .iter()
            .fold(tok + pos, |x, block| block.forward(x, mask.clone()));
        per_token(&self.head, self.norm.forward(x))
    }

    /// The context length.
    pub fn block(&self) -> usize {
        self.pos_emb.dims()[0]
    }

    /// Vocabulary size.
    pub fn vocab(&self) -> usize {
        self.tok_emb.dims()[0]
    }

    /// Every linear layer, by name, in forward order.
    pub fn linears(&self) -> Vec<(String, &SparseLinear)> {
        let mut out = Vec::new();
        for (i, b) in self.blocks.iter().enumerate() {
            for (name, l) in [
                ("query", &b.query),
                ("key", &b.key),
                ("value", &b.value),
                ("output", &b.output),
                ("inner", &b.inner),
                ("outer", &b.outer),
            ] {
                out.push((format!("blocks.{i}.{name}"), l));
            }
        }
        out.push(("head".to_string(), &self.head));
        out
    }

    /// The same model with every layer dense (the dense twin for benchmarks).
    pub fn to_dense(&self) -> Result<Self, KernelError> {
        let dense = |l: &SparseLinear, name: &str| dense_linear(l, name);
        Ok(Self {
            tok_emb: self.tok_emb.clone(),
            pos_emb: self.pos_emb.clone(),
            blocks: self
                .blocks
                .iter()
                .map(|b| {
                    Ok(SparseDecoderBlock {
                        norm_attention: b.norm_attention.clone(),
                        query: dense(&b.query, "query")?,
                        key: dense(&b.key, "key")?,
                        value: dense(&b.value, "value")?,
                        output: dense(&b.output, "output")?,
                        norm_mlp: b.norm_mlp.clone(),
                        inner: dense(&b.inner, "inner")?,
                        outer: dense(&b.outer, "outer")?,
                        heads: b.heads,
                        min_float: b.min_float,
                    })
                })
                .collect::<Result<_, KernelError>>()?,
            norm: self.norm.clone(),
            head: dense(&self.head, "head")?,
        })
    }
}

impl NextToken for SparseCharTransformer {
    fn logits(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        self.forward(tokens)
    }

    fn context(&self) -> usize {
        self.block()
    }
}

/// An embedding table `[rows, d]` with its mask applied (a sparse table's
/// masked entries are zero after training; the mask makes sure).
fn table(layer: &Linear, masks: &SparseMasks, path: &str) -> Result<Param<Tensor<2>>, KernelError> {
    let weight = layer.weight.val();
    let dims = weight.dims();
    let mut values = host(weight)?;
    if let Some(mask) = masks.0.get(path) {
        if mask.len() != values.len() {
            return Err(KernelError::shape(path, "the mask does not fit the embedding table"));
        }
        for (i, v) in values.iter_mut().enumerate() {
            if !mask.get(i) {
                *v = 0.0;
            }
        }
    }
    let device = layer.weight.val().device();
    Ok(Param::from_tensor(Tensor::from_data(
        TensorData::new(values, dims),
        &device,
    )))
}

impl ToSparse for CharTransformer {
    type Sparse = SparseCharTransformer;

    fn to_sparse(&self, masks: &SparseMasks, options: &SparseOptions) -> Result<SparseCharTransformer, KernelError> {
        let lin = |l: &Linear, path: String, act| linear(l, masks, options, &format!("{path}.weight"), act);
        let blocks = self
            .blocks
            .layers
            .iter()
            .enumerate()
            .map(|(i, layer)| {
                let p = format!("blocks.layers.{i}");
                let mha = &layer.mha;
                let exact_gelu = matches!(&layer.pwff.activation, BurnActivation::Gelu(g) if !g.approximate);
                if mha.quiet_softmax || !layer.norm_first || !exact_gelu {
                    return Err(KernelError::InvalidConfig(format!(
                        "`{p}`: the sparse twin runs pre-norm blocks with the plain softmax and the exact GELU, as `CharTransformer` builds them"
                    )));
                }
                Ok(SparseDecoderBlock {
                    norm_attention: layer.norm_2.clone(),
                    query: lin(&mha.query, format!("{p}.mha.query"), Activation::None)?,
                    key: lin(&mha.key, format!("{p}.mha.key"), Activation::None)?,
                    value: lin(&mha.value, format!("{p}.mha.value"), Activation::None)?,
                    output: lin(&mha.output, format!("{p}.mha.output"), Activation::None)?,
                    norm_mlp: layer.norm_1.clone(),
                    inner: lin(&layer.pwff.linear_inner, format!("{p}.pwff.linear_inner"), Activation::None)?,
                    outer: lin(&layer.pwff.linear_outer, format!("{p}.pwff.linear_outer"), Activation::None)?,
                    heads: mha.n_heads,
                    min_float: mha.min_float,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(SparseCharTransformer {
            tok_emb: table(&self.tok_emb, masks, "tok_emb.weight")?,
            pos_emb: table(&self.pos_emb, masks, "pos_emb.weight")?,
            blocks,
            norm: self.norm.clone(),
            head: lin(&self.head, "head".into(), Activation::None)?,
        })
    }
}

fn save_norm(norm: &LayerNorm, name: &str, map: &mut TensorMap) -> Result<(), KernelError> {
    let gamma = host(norm.gamma.val())?;
    let beta = match &norm.beta {
        Some(b) => host(b.val())?,
        None => vec![0.0; gamma.len()],
    };
    map.put_f32(format!("{name}.gamma"), vec![gamma.len()], &gamma);
    map.put_f32(format!("{name}.beta"), vec![beta.len()], &beta);
    Ok(())
}

fn load_norm(map: &TensorMap, name: &str, d: usize, eps: f64, device: &Device) -> Result<LayerNorm, KernelError> {
    let (gamma, beta) = (map.f32(&format!("{name}.gamma"))?, map.f32(&format!("{name}.beta"))?);
    if gamma.len() != d || beta.len() != d {
        return Err(KernelError::Serialization(format!(
            "`{name}` has {} and {} values, the model width is {d}",
            gamma.len(),
            beta.len()
        )));
    }
    let vector = |v: Vec<f32>| Param::from_tensor(Tensor::from_data(TensorData::new(v, [d]), device));
    let mut norm = LayerNormConfig::new(d).with_epsilon(eps).init(device);
    norm.gamma = vector(gamma);
    norm.beta = Some(vector(beta));
    Ok(norm)
}

fn save_table(t: &Param<Tensor<2>>, name: &str, map: &mut TensorMap) -> Result<(), KernelError> {
    let dims = t.dims();
    let v = host(t.val())?;
    map.put_f32(name.to_string(), dims.to_vec(), &v);
    Ok(())
}

/// An embedding table `[rows, d]` as stored (its shape from the file).
fn load_table(map: &TensorMap, name: &str, device: &Device) -> Result<Param<Tensor<2>>, KernelError> {
    let v = map.f32(name)?;
    let (rows, d) = match map.shape(name) {
        Some(&[rows, d]) if rows > 0 && d > 0 && rows * d == v.len() => (rows, d),
        other => {
            return Err(KernelError::Serialization(format!(
                "`{name}` is not a table of rows: shape {other:?} for {} values",
                v.len()
            )));
        }
    };
    Ok(Param::from_tensor(Tensor::from_data(
        TensorData::new(v, [rows, d]),
        device,
    )))
}

/// The LayerNorm epsilon of the blocks (`TransformerEncoderConfig`'s default,
/// which `CharTransformer` keeps) and of the final norm (`LayerNormConfig`'s).
fn default_epsilons() -> (f64, f64) {
    (
        TransformerEncoderConfig::new(1, 1, 1, 1).layer_norm_eps,
        LayerNormConfig::new(1).epsilon,
    )
}

/// A float of the metadata that must be finite and satisfy `ok`.
fn number(meta: &Value, key: &str, ok: impl Fn(f64) -> bool) -> Result<f64, KernelError> {
    meta.get(key)
        .and_then(Value::as_f64)
        .filter(|v| v.is_finite() && ok(*v))
        .ok_or_else(|| KernelError::Serialization(format!("no valid `{key}` in the model metadata")))
}

impl SparseStore for SparseCharTransformer {
    const ARCHITECTURE: &'static str = "char-transformer";

    fn save_into(&self, map: &mut TensorMap) -> Result<Value, KernelError> {
        let mut layers = serde_json::Map::new();
        for (name, l) in self.linears() {
            layers.insert(name.clone(), l.save(&name, map)?);
        }
        save_table(&self.tok_emb, "tok_emb", map)?;
        save_table(&self.pos_emb, "pos_emb", map)?;
        for (i, b) in self.blocks.iter().enumerate() {
            save_norm(&b.norm_attention, &format!("blocks.{i}.norm_attention"), map)?;
            save_norm(&b.norm_mlp, &format!("blocks.{i}.norm_mlp"), map)?;
        }
        save_norm(&self.norm, "norm", map)?;
        let (block_eps, final_eps) = default_epsilons();
        let first = self.blocks.first();
        Ok(json!({
            "blocks": self.blocks.len(),
            "heads": first.map_or(1, |b| b.heads),
            "min_float": first.map_or(-1.0e4, |b| b.min_float),
            "block_norm_epsilon": block_eps,
            "final_norm_epsilon": final_eps,
            "layers": layers,
        }))
    }

    fn load_from(map: &TensorMap, meta: &Value, device: &Device) -> Result<Self, KernelError> {
        let tok_emb = load_table(map, "tok_emb", device)?;
        let pos_emb = load_table(map, "pos_emb", device)?;
        let d = tok_emb.dims()[1];
        let heads = count(meta, "heads")?;
        if heads == 0 || !d.is_multiple_of(heads) || pos_emb.dims()[1] != d {
            return Err(KernelError::Serialization(format!(
                "{heads} heads and position embeddings {:?} for a model width of {d}",
                pos_emb.dims()
            )));
        }
        let min_float = number(meta, "min_float", |v| v < 0.0)?;
        let block_eps = number(meta, "block_norm_epsilon", |v| v > 0.0)?;
        let final_eps = number(meta, "final_norm_epsilon", |v| v > 0.0)?;
        let lin = |name: &str| load_linear(name, map, meta, device);
        let blocks = (0..count(meta, "blocks")?)
            .map(|i| {
                let p = format!("blocks.{i}");
                Ok(SparseDecoderBlock {
                    norm_attention: load_norm(map, &format!("{p}.norm_attention"), d, block_eps, device)?,
                    query: lin(&format!("{p}.query"))?,
                    key: lin(&format!("{p}.key"))?,
                    value: lin(&format!("{p}.value"))?,
                    output: lin(&format!("{p}.output"))?,
                    norm_mlp: load_norm(map, &format!("{p}.norm_mlp"), d, block_eps, device)?,
                    inner: lin(&format!("{p}.inner"))?,
                    outer: lin(&format!("{p}.outer"))?,
                    heads,
                    min_float,
                })
            })
            .collect::<Result<Vec<_>, KernelError>>()?;
        let model = Self {
            tok_emb,
            pos_emb,
            blocks,
            norm: load_norm(map, "norm", d, final_eps, device)?,
            head: lin("head")?,
        };
        model.check_layers(d)?;
        Ok(model)
    }
}

impl SparseCharTransformer {
    /// Every projection maps `d → d` (the MLP `d → 4d → d`) and the head `d → V`,
    /// none with a fused activation: a file whose layers disagree is refused at
    /// load, not at the first token.
    fn check_layers(&self, d: usize) -> Result<(), KernelError> {
        let vocab = self.vocab();
        for (name, l) in self.linears() {
            if l.act != Activation::None {
                return Err(KernelError::Serialization(format!(
                    "layer `{name}` has a fused activation; the transformer's projections have none"
                )));
            }
            let (din, dout) = (l.d_input, l.d_output);
            let want = match name.rsplit('.').next() {
                Some("inner") => (d, 4 * d),
                Some("outer") => (4 * d, d),
                Some("head") => (d, vocab),
                _ => (d, d),
            };
            if (din, dout) != want {
                return Err(KernelError::Serialization(format!(
                    "layer `{name}` maps {din} → {dout}, the model needs {} → {}",
                    want.0, want.1
                )));
            }
        }
        Ok(())
    }
}
