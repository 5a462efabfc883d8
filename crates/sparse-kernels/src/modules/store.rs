//! Writing sparse layers to a safetensors map and reading them back.
//!
//! Each layer stores its tensors under `{prefix}.{name}` (values, bias and the
//! index arrays of its format, in their own integer widths) and returns a
//! small JSON record (format, geometry, activation) that the model writes
//! into the file's metadata. Reading validates every index against the
//! geometry, so a corrupt or foreign file is an error, never a panic.

use std::collections::{BTreeMap, HashMap};

use burn::nn::PaddingConfig2d;
use burn::tensor::Device;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde_json::{Value, json};

use super::conv::{ConvConfig, ConvWeight, SparseConv2d};
use super::host;
use super::linear::{LinearWeight, SparseLinear};
use super::weight::SparseWeight;
use crate::activation::Activation;
use crate::error::{KernelError, Result};
use crate::formats::Built;
use crate::indices::Indices;
use crate::plan::{Bsr, CsrView, OpKind, Sell, SellIndex, SparsePlan, Storage};

/// The metadata key holding the model's JSON.
pub const METADATA_KEY: &str = "sparseburn";

fn err(detail: impl Into<String>) -> KernelError {
    KernelError::Serialization(detail.into())
}

/// Named tensors (raw little-endian bytes), as a safetensors file holds them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TensorMap {
    tensors: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>,
}

impl TensorMap {
    fn put(&mut self, name: String, dtype: Dtype, shape: Vec<usize>, bytes: Vec<u8>) {
        self.tensors.insert(name, (dtype, shape, bytes));
    }

    /// Stores f32 values.
    pub fn put_f32(&mut self, name: String, shape: Vec<usize>, v: &[f32]) {
        self.put(name, Dtype::F32, shape, bytemuck::cast_slice(v).to_vec());
    }

    fn put_u32(&mut self, name: String, v: &[u32]) {
        self.put(name, Dtype::U32, vec![v.len()], bytemuck::cast_slice(v).to_vec());
    }

    fn put_indices(&mut self, name: String, v: &Indices) {
        match v {
            Indices::U16(x) => self.put(name, Dtype::U16, vec![x.len()], bytemuck::cast_slice(x).to_vec()),
            Indices::U32(x) => self.put_u32(name, x),
        }
    }

    fn raw(&self, name: &str, want: Dtype) -> Result<&[u8]> {
        match self.tensors.get(name) {
            Some((d, _, b)) if *d == want => Ok(b),
            Some((d, _, _)) => Err(err(format!("tensor `{name}` is {d:?}, expected {want:?}"))),
            None => Err(err(format!("tensor `{name}` is missing"))),
        }
    }

    /// The stored shape of tensor `name`, if there is one.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.1.as_slice())
    }

    /// Reads f32 values.
    pub fn f32(&self, name: &str) -> Result<Vec<f32>> {
        Ok(bytemuck::pod_collect_to_vec(self.raw(name, Dtype::F32)?))
    }

    fn u32(&self, name: &str) -> Result<Vec<u32>> {
        Ok(bytemuck::pod_collect_to_vec(self.raw(name, Dtype::U32)?))
    }

    fn indices(&self, name: &str) -> Result<Indices> {
        match self.tensors.get(name).map(|t| t.0) {
            Some(Dtype::U16) => Ok(Indices::U16(bytemuck::pod_collect_to_vec(self.raw(name, Dtype::U16)?))),
            _ => Ok(Indices::U32(self.u32(name)?)),
        }
    }

    /// The safetensors bytes, with `metadata` under [`METADATA_KEY`].
    pub fn to_bytes(&self, metadata: &Value) -> Result<Vec<u8>> {
        let views = self
            .tensors
            .iter()
            .map(|(k, (d, s, b))| {
                Ok((
                    k.clone(),
                    TensorView::new(*d, s.clone(), b).map_err(|e| err(e.to_string()))?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let info = HashMap::from([(METADATA_KEY.to_string(), metadata.to_string())]);
        safetensors::tensor::serialize(views, Some(info)).map_err(|e| err(e.to_string()))
    }

    /// Parses safetensors bytes written by [`TensorMap::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<(Self, Value)> {
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| err(e.to_string()))?;
        let json = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(METADATA_KEY))
            .ok_or_else(|| err(format!("no `{METADATA_KEY}` metadata: not a sparseburn sparse model")))?;
        let json: Value = serde_json::from_str(json).map_err(|e| err(e.to_string()))?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| err(e.to_string()))?;
        let mut map = Self::default();
        for name in st.names() {
            let t = st.tensor(name).map_err(|e| err(e.to_string()))?;
            map.put(name.to_string(), t.dtype(), t.shape().to_vec(), t.data().to_vec());
        }
        Ok((map, json))
    }
}

fn usize_of(meta: &Value, key: &str) -> Result<usize> {
    meta.get(key)
        .and_then(Value::as_u64)
        .map(|v| v as usize)
        .ok_or_else(|| err(format!("layer metadata has no `{key}`")))
}

fn act_name(a: Activation) -> &'static str {
    match a {
        Activation::None => "none",
        Activation::Relu => "relu",
    }
}

fn act_of(meta: &Value) -> Activation {
    if meta.get("act").and_then(Value::as_str) == Some("relu") {
        Activation::Relu
    } else {
        Activation::None
    }
}

/// Writes a sparse weight's plan and values; returns its JSON.
fn save_weight(w: &SparseWeight, prefix: &str, map: &mut TensorMap) -> Result<Value> {
    let plan = &w.plan;
    map.put_f32(format!("{prefix}.values"), vec![plan.n_values], &host(w.values.val())?);
    map.put_u32(format!("{prefix}.pad"), &plan.pad);
    let mut meta =
        json!({"storage": plan.storage_name(), "rows": plan.rows, "cols": plan.cols, "n_values": plan.n_values});
    match &plan.storage {
        Storage::Csr => {
            let c = plan.csr();
            map.put_u32(format!("{prefix}.row_ptr"), &c.row_ptr);
            map.put_indices(format!("{prefix}.col"), &c.col);
        }
        Storage::Sell(s) => {
            map.put_u32(format!("{prefix}.kept"), &s.kept);
            meta["k"] = json!(s.k);
            match &s.idx {
                SellIndex::Abs(i) => map.put_indices(format!("{prefix}.idx"), i),
                SellIndex::Nm { n, m, idx } => {
                    map.put(format!("{prefix}.idx"), Dtype::U8, vec![idx.len()], idx.clone());
                    meta["n"] = json!(n);
                    meta["m"] = json!(m);
                }
            }
        }
        Storage::Bsr(b) => {
            map.put_u32(format!("{prefix}.block_row_ptr"), &b.block_row_ptr);
            map.put_u32(format!("{prefix}.block_col"), &b.block_col);
            meta["br"] = json!(b.br);
            meta["bc"] = json!(b.bc);
        }
    }
    Ok(meta)
}

fn check(ok: bool, what: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(err(format!("corrupt sparse layer: {what}")))
    }
}

/// Reads and validates a sparse weight written by [`save_weight`].
fn load_weight(prefix: &str, map: &TensorMap, meta: &Value, op: OpKind, device: &Device) -> Result<SparseWeight> {
    let (rows, cols, n_values) = (
        usize_of(meta, "rows")?,
        usize_of(meta, "cols")?,
        usize_of(meta, "n_values")?,
    );
    let values = map.f32(&format!("{prefix}.values"))?;
    let pad = map.u32(&format!("{prefix}.pad"))?;
    check(
        values.len() == n_values && pad.iter().all(|&p| (p as usize) < n_values),
        "values or padding",
    )?;
    let storage_name = meta.get("storage").and_then(Value::as_str).unwrap_or("");
    let (storage, csr) = match storage_name {
        "csr" => {
            let row_ptr = map.u32(&format!("{prefix}.row_ptr"))?;
            let col = map.indices(&format!("{prefix}.col"))?;
            check(row_ptr.len() == rows + 1 && row_ptr[0] == 0, "row pointers")?;
            check(
                row_ptr.windows(2).all(|w| w[0] <= w[1]) && row_ptr[rows] as usize == col.len(),
                "row pointers",
            )?;
            check(
                col.len() == n_values && col.to_u32().iter().all(|&c| (c as usize) < cols),
                "columns",
            )?;
            (
                Storage::Csr,
                Some(CsrView {
                    row_ptr,
                    col,
                    perm: None,
                }),
            )
        }
        "condensed" | "nm" => {
            let kept = map.u32(&format!("{prefix}.kept"))?;
            let k = usize_of(meta, "k")?;
            check(kept.iter().all(|&r| (r as usize) < rows), "kept rows")?;
            check(
                n_values == kept.len().div_ceil(Sell::LANES) * k * Sell::LANES,
                "SELL size",
            )?;
            let idx = if storage_name == "nm" {
                let (n, m) = (usize_of(meta, "n")?, usize_of(meta, "m")?);
                let idx = map.raw(&format!("{prefix}.idx"), Dtype::U8)?.to_vec();
                check(
                    n > 0 && m > 0 && n <= m && k.is_multiple_of(n) && k / n * m <= cols,
                    "N:M geometry",
                )?;
                check(
                    idx.len() == n_values && idx.iter().all(|&i| (i as usize) < m),
                    "N:M offsets",
                )?;
                SellIndex::Nm { n, m, idx }
            } else {
                let idx = map.indices(&format!("{prefix}.idx"))?;
                check(
                    idx.len() == n_values && idx.to_u32().iter().all(|&c| (c as usize) < cols),
                    "columns",
                )?;
                SellIndex::Abs(idx)
            };
            (Storage::Sell(Sell { kept, k, idx }), None)
        }
        "bsr" => {
            let (br, bc) = (usize_of(meta, "br")?, usize_of(meta, "bc")?);
            let block_row_ptr = map.u32(&format!("{prefix}.block_row_ptr"))?;
            let block_col = map.u32(&format!("{prefix}.block_col"))?;
            check(
                br > 0 && bc > 0 && rows.is_multiple_of(br) && block_row_ptr.len() == rows / br + 1,
                "BSR rows",
            )?;
            check(block_row_ptr.windows(2).all(|w| w[0] <= w[1]), "BSR row pointers")?;
            check(
                block_row_ptr.last().map(|&l| l as usize) == Some(block_col.len()),
                "BSR row pointers",
            )?;
            check(block_col.iter().all(|&c| (c as usize + 1) * bc <= cols), "BSR columns")?;
            check(n_values == block_col.len() * br * bc, "BSR size")?;
            (
                Storage::Bsr(Bsr {
                    br,
                    bc,
                    block_row_ptr,
                    block_col,
                }),
                None,
            )
        }
        other => return Err(err(format!("unknown storage `{other}`"))),
    };
    let plan = SparsePlan::new(rows, cols, n_values, op, storage, csr, pad);
    Ok(SparseWeight::new(Built { plan, values }, device))
}

impl SparseLinear {
    /// Writes the layer under `prefix`; returns its metadata.
    pub fn save(&self, prefix: &str, map: &mut TensorMap) -> Result<Value> {
        map.put_f32(format!("{prefix}.bias"), vec![self.d_output], &host(self.bias.val())?);
        let mut meta = json!({"d_input": self.d_input, "d_output": self.d_output, "act": act_name(self.act), "format": self.format()});
        match &self.weight {
            LinearWeight::Sparse(w) => meta["sparse"] = save_weight(w, prefix, map)?,
            LinearWeight::Dense(w) => map.put_f32(format!("{prefix}.weight"), w.dims().to_vec(), &host(w.val())?),
            LinearWeight::Pruned(p) => {
                map.put_f32(
                    format!("{prefix}.weight"),
                    p.weight.dims().to_vec(),
                    &host(p.weight.val())?,
                );
                let kept: Vec<u32> = host_int(p.kept.clone())?;
                map.put_u32(format!("{prefix}.kept"), &kept);
            }
        }
        Ok(meta)
    }

    /// Reads a layer written by [`SparseLinear::save`] onto `device`.
    pub fn load(prefix: &str, map: &TensorMap, meta: &Value, device: &Device) -> Result<Self> {
        let (d_input, d_output) = (usize_of(meta, "d_input")?, usize_of(meta, "d_output")?);
        let bias = map.f32(&format!("{prefix}.bias"))?;
        check(bias.len() == d_output, "bias length")?;
        let format = meta.get("format").and_then(Value::as_str).unwrap_or("");
        let weight = match format {
            "dense" => {
                let w = map.f32(&format!("{prefix}.weight"))?;
                check(w.len() == d_input * d_output, "dense weight")?;
                LinearWeight::Dense(param(w, [d_input, d_output], device))
            }
            "channel" => {
                let kept = map.u32(&format!("{prefix}.kept"))?;
                let w = map.f32(&format!("{prefix}.weight"))?;
                check(
                    kept.iter().all(|&k| (k as usize) < d_output) && w.len() == d_input * kept.len(),
                    "pruned weight",
                )?;
                LinearWeight::Pruned(super::linear::PrunedLinear {
                    weight: param(w, [d_input, kept.len()], device),
                    kept: int_tensor(&kept, device),
                })
            }
            _ => {
                let sm = meta
                    .get("sparse")
                    .ok_or_else(|| err("sparse layer without `sparse` metadata"))?;
                check(
                    usize_of(sm, "rows")? == d_output && usize_of(sm, "cols")? == d_input,
                    "geometry",
                )?;
                LinearWeight::Sparse(load_weight(prefix, map, sm, OpKind::Linear, device)?)
            }
        };
        Ok(Self {
            weight,
            bias: param(bias, [d_output], device),
            d_input,
            d_output,
            act: act_of(meta),
        })
    }
}

fn padding_json(p: &PaddingConfig2d) -> Value {
    match p {
        PaddingConfig2d::Same => json!("same"),
        PaddingConfig2d::Valid => json!("valid"),
        PaddingConfig2d::Explicit(t, l, b, r) => json!([t, l, b, r]),
    }
}

fn padding_of(v: &Value) -> Result<PaddingConfig2d> {
    match v {
        Value::String(s) if s == "same" => Ok(PaddingConfig2d::Same),
        Value::String(s) if s == "valid" => Ok(PaddingConfig2d::Valid),
        Value::Array(a) if a.len() == 4 => {
            let g = |i: usize| a[i].as_u64().map(|v| v as usize).ok_or_else(|| err("padding"));
            Ok(PaddingConfig2d::Explicit(g(0)?, g(1)?, g(2)?, g(3)?))
        }
        _ => Err(err("padding")),
    }
}

fn pair(meta: &Value, key: &str) -> Result<[usize; 2]> {
    let a = meta
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| err(format!("no `{key}`")))?;
    let g = |i: usize| {
        a.get(i)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .filter(|&v| v > 0)
            .ok_or_else(|| err(key.to_string()))
    };
    Ok([g(0)?, g(1)?])
}

impl SparseConv2d {
    /// Writes the layer under `prefix`; returns its metadata.
    pub fn save(&self, prefix: &str, map: &mut TensorMap) -> Result<Value> {
        let c = &self.config;
        map.put_f32(format!("{prefix}.bias"), vec![c.shape[0]], &host(self.bias.val())?);
        let mut meta = json!({
            "shape": c.shape, "stride": c.stride, "dilation": c.dilation, "groups": c.groups,
            "padding": padding_json(&c.padding), "act": act_name(self.act), "format": self.format(),
        });
        match &self.weight {
            ConvWeight::Sparse(w) => meta["sparse"] = save_weight(w, prefix, map)?,
            ConvWeight::Dense(w) => map.put_f32(format!("{prefix}.weight"), w.dims().to_vec(), &host(w.val())?),
            ConvWeight::Pruned(p) => {
                map.put_f32(
                    format!("{prefix}.weight"),
                    p.weight.dims().to_vec(),
                    &host(p.weight.val())?,
                );
                map.put_u32(format!("{prefix}.kept"), &host_int(p.kept.clone())?);
            }
        }
        Ok(meta)
    }

    /// Reads a layer written by [`SparseConv2d::save`] onto `device`.
    pub fn load(prefix: &str, map: &TensorMap, meta: &Value, device: &Device) -> Result<Self> {
        let shape: Vec<usize> = meta
            .get("shape")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_u64).map(|v| v as usize).collect())
            .unwrap_or_default();
        check(shape.len() == 4 && shape.iter().all(|&d| d > 0), "conv shape")?;
        let shape = [shape[0], shape[1], shape[2], shape[3]];
        let groups = usize_of(meta, "groups")?;
        check(groups > 0 && shape[0].is_multiple_of(groups), "groups")?;
        let config = ConvConfig {
            shape,
            stride: pair(meta, "stride")?,
            dilation: pair(meta, "dilation")?,
            groups,
            padding: padding_of(meta.get("padding").unwrap_or(&Value::Null))?,
        };
        let bias = map.f32(&format!("{prefix}.bias"))?;
        check(bias.len() == shape[0], "bias length")?;
        let numel: usize = shape.iter().product();
        let weight = match meta.get("format").and_then(Value::as_str).unwrap_or("") {
            "dense" => {
                let w = map.f32(&format!("{prefix}.weight"))?;
                check(w.len() == numel, "dense weight")?;
                ConvWeight::Dense(param(w, shape, device))
            }
            "channel" => {
                let kept = map.u32(&format!("{prefix}.kept"))?;
                let w = map.f32(&format!("{prefix}.weight"))?;
                check(
                    kept.iter().all(|&k| (k as usize) < shape[0]) && w.len() == numel / shape[0] * kept.len(),
                    "pruned weight",
                )?;
                ConvWeight::Pruned(super::conv::PrunedConv {
                    weight: param(w, [kept.len(), shape[1], shape[2], shape[3]], device),
                    kept: int_tensor(&kept, device),
                })
            }
            _ => {
                let sm = meta
                    .get("sparse")
                    .ok_or_else(|| err("sparse layer without `sparse` metadata"))?;
                check(
                    usize_of(sm, "rows")? == shape[0] && usize_of(sm, "cols")? == numel / shape[0],
                    "geometry",
                )?;
                let op = OpKind::Conv {
                    cin_g: shape[1],
                    kernel: [shape[2], shape[3]],
                    groups,
                };
                ConvWeight::Sparse(load_weight(prefix, map, sm, op, device)?)
            }
        };
        Ok(Self {
            weight,
            bias: param(bias, [shape[0]], device),
            config,
            act: act_of(meta),
        })
    }
}

fn param<const D: usize>(
    v: Vec<f32>,
    dims: [usize; D],
    device: &Device,
) -> burn::module::Param<burn::tensor::Tensor<D>> {
    burn::module::Param::from_tensor(burn::tensor::Tensor::from_data(
        burn::tensor::TensorData::new(v, dims),
        device,
    ))
}

fn int_tensor(v: &[u32], device: &Device) -> burn::tensor::Tensor<1, burn::tensor::Int> {
    let v: Vec<i32> = v.iter().map(|&x| x as i32).collect();
    let n = v.len();
    burn::tensor::Tensor::from_data(burn::tensor::TensorData::new(v, [n]), device)
}

fn host_int(t: burn::tensor::Tensor<1, burn::tensor::Int>) -> Result<Vec<u32>> {
    let data = t
        .try_into_data()
        .map_err(|e| KernelError::TensorRead(format!("{e:?}")))?;
    let v = data
        .convert::<i64>()
        .try_into_vec::<i64>()
        .map_err(|e| KernelError::TensorRead(format!("{e:?}")))?;
    Ok(v.into_iter().map(|x| x as u32).collect())
}
