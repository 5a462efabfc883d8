//! Compact storage of a model file's index arrays and zero-filled weights.
//!
//! The kernels' own arrays (`modules::store`) are what they run on: CSR
//! columns as `u16`/`u32` (2 bytes per nonzero) plus row pointers. On disk a
//! bitmap of the kept positions costs 1 bit per weight, less than 2 bytes per
//! nonzero whenever the density is above 1/16, so at 90% sparsity a CSR layer
//! takes 0.1·4 + 1/8 = 0.525 bytes per weight (13% of dense) instead of
//! 0.1·6 = 0.6 (15%). Three encodings, each used only where it is smaller:
//!
//! * `csr-bitmap`: a CSR layer's `col` and `row_ptr` replaced by the bitmap of
//!   its `[rows, cols]` pattern (rows with strictly increasing columns only);
//! * `sell-bitmap`: a condensed (constant fan-in, SELL-16) layer's column
//!   indices replaced by the bitmap of its kept rows' pattern (columns
//!   increasing along each row, padding lanes 0: what the builder writes);
//! * `zeros`: a dense weight that the masks left mostly zero (a layer `auto`
//!   keeps dense for speed) stored as the bitmap of its nonzero entries and
//!   their values; both zeros read back as +0.0 (masking leaves −0.0 where a
//!   negative weight was pruned; the sparse formats drop those entries too,
//!   so only the sign of an exactly zero sum can differ).
//!
//! Reading expands both back to the kernels' arrays before the layers are
//! validated as usual. The file's metadata lists what was packed under
//! `packing`, so a file without it is read as it is.

use std::collections::HashMap;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde_json::{Value, json};
use sparse_kernels::modules::store::METADATA_KEY;

use crate::exported::ExportError;

struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

type Tensors = std::collections::BTreeMap<String, Raw>;

fn corrupt(detail: impl Into<String>) -> ExportError {
    ExportError::Corrupt(detail.into())
}

fn read(bytes: &[u8]) -> Result<(Tensors, Value), ExportError> {
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| corrupt(e.to_string()))?;
    let text = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(METADATA_KEY))
        .ok_or_else(|| corrupt("no metadata"))?;
    let json: Value = serde_json::from_str(text).map_err(|e| corrupt(format!("metadata: {e}")))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| corrupt(e.to_string()))?;
    let tensors = st
        .tensors()
        .into_iter()
        .map(|(name, t)| {
            (
                name,
                Raw {
                    dtype: t.dtype(),
                    shape: t.shape().to_vec(),
                    data: t.data().to_vec(),
                },
            )
        })
        .collect();
    Ok((tensors, json))
}

fn write(tensors: &Tensors, json: &Value) -> Result<Vec<u8>, ExportError> {
    let views = tensors
        .iter()
        .map(|(k, r)| {
            TensorView::new(r.dtype, r.shape.clone(), &r.data)
                .map(|v| (k.clone(), v))
                .map_err(|e| corrupt(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let info = HashMap::from([(METADATA_KEY.to_string(), json.to_string())]);
    safetensors::tensor::serialize(views, Some(info)).map_err(|e| corrupt(e.to_string()))
}

fn u32s(data: &[u8]) -> Vec<u32> {
    data.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn columns(raw: &Raw) -> Option<Vec<u32>> {
    match raw.dtype {
        Dtype::U16 => Some(
            raw.data
                .chunks_exact(2)
                .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
        ),
        Dtype::U32 => Some(u32s(&raw.data)),
        _ => None,
    }
}

fn bitmap(n: usize, set: impl Iterator<Item = usize>) -> Vec<u8> {
    let mut bits = vec![0u8; n.div_ceil(8)];
    for i in set {
        bits[i / 8] |= 1 << (i % 8);
    }
    bits
}

fn bit(bits: &[u8], i: usize) -> bool {
    bits[i / 8] >> (i % 8) & 1 == 1
}

/// Replaces a CSR layer's columns and row pointers by a bitmap where that is smaller.
fn pack_csr(t: &mut Tensors, prefix: &str, cols: usize) -> Option<Value> {
    let (ptr_name, col_name) = (format!("{prefix}.row_ptr"), format!("{prefix}.col"));
    let row_ptr = u32s(&t.get(&ptr_name)?.data);
    let col_raw = t.get(&col_name)?;
    let col = columns(col_raw)?;
    let rows = row_ptr.len().checked_sub(1)?;
    let bits_len = (rows * cols).div_ceil(8);
    if bits_len >= col_raw.data.len() + 4 * row_ptr.len() {
        return None;
    }
    let mut set = Vec::with_capacity(col.len());
    for r in 0..rows {
        let row = col.get(row_ptr[r] as usize..row_ptr[r + 1] as usize)?;
        if row.windows(2).any(|w| w[0] >= w[1]) || row.iter().any(|&c| c as usize >= cols) {
            return None; // not in the order a bitmap gives back
        }
        set.extend(row.iter().map(|&c| r * cols + c as usize));
    }
    let dtype = if col_raw.dtype == Dtype::U16 { "u16" } else { "u32" };
    t.remove(&ptr_name);
    t.remove(&col_name);
    t.insert(
        format!("{prefix}.bitmap"),
        Raw {
            dtype: Dtype::U8,
            shape: vec![bits_len],
            data: bitmap(rows * cols, set.into_iter()),
        },
    );
    Some(json!({"kind": "csr-bitmap", "rows": rows, "cols": cols, "col_dtype": dtype}))
}

fn unpack_csr(t: &mut Tensors, prefix: &str, rec: &Value) -> Result<(), ExportError> {
    let get = |k: &str| rec.get(k).and_then(Value::as_u64).map(|v| v as usize);
    let (rows, cols) = get("rows").zip(get("cols")).ok_or_else(|| corrupt("packing record"))?;
    let bits = t
        .remove(&format!("{prefix}.bitmap"))
        .ok_or_else(|| corrupt(format!("tensor `{prefix}.bitmap` is missing")))?;
    let n = rows.checked_mul(cols).ok_or_else(|| corrupt("packing record"))?;
    if bits.dtype != Dtype::U8 || bits.data.len() != n.div_ceil(8) {
        return Err(corrupt(format!("`{prefix}.bitmap` does not fit {rows}x{cols}")));
    }
    let mut row_ptr = Vec::with_capacity(rows + 1);
    let mut col = Vec::new();
    row_ptr.push(0u32);
    for r in 0..rows {
        col.extend((0..cols).filter(|&c| bit(&bits.data, r * cols + c)).map(|c| c as u32));
        row_ptr.push(col.len() as u32);
    }
    let wide = rec.get("col_dtype").and_then(Value::as_str) == Some("u32") || cols > 1 << 16;
    let (dtype, data) = index_bytes(&col, wide);
    t.insert(
        format!("{prefix}.col"),
        Raw {
            dtype,
            shape: vec![col.len()],
            data,
        },
    );
    t.insert(
        format!("{prefix}.row_ptr"),
        Raw {
            dtype: Dtype::U32,
            shape: vec![rows + 1],
            data: row_ptr.iter().flat_map(|p| p.to_le_bytes()).collect(),
        },
    );
    Ok(())
}

/// SELL-16 lanes: the condensed layout's `[group][k][16]` interleaving.
const LANES: usize = 16;

fn index_bytes(col: &[u32], wide: bool) -> (Dtype, Vec<u8>) {
    if wide {
        (Dtype::U32, col.iter().flat_map(|c| c.to_le_bytes()).collect())
    } else {
        (Dtype::U16, col.iter().flat_map(|&c| (c as u16).to_le_bytes()).collect())
    }
}

/// Replaces a condensed layer's column indices (`[group][k][16]`, padding
/// lanes 0) by the bitmap of its kept rows' `[kept, cols]` pattern where that is smaller.
fn pack_sell(t: &mut Tensors, prefix: &str, cols: usize, k: usize) -> Option<Value> {
    let idx_name = format!("{prefix}.idx");
    let kept = u32s(&t.get(&format!("{prefix}.kept"))?.data).len();
    let raw = t.get(&idx_name)?;
    let idx = columns(raw)?;
    let bits_len = (kept * cols).div_ceil(8);
    if bits_len >= raw.data.len() || idx.len() != kept.div_ceil(LANES) * k * LANES {
        return None;
    }
    let mut set = Vec::with_capacity(kept * k);
    for (p, &c) in idx.iter().enumerate() {
        let (l, j, g) = (p % LANES, p / LANES % k.max(1), p / (LANES * k.max(1)));
        let row = g * LANES + l;
        if row >= kept {
            if c != 0 {
                return None; // padding the bitmap would not give back
            }
            continue;
        }
        let ascending = j == 0 || idx[p - LANES] < c;
        if !ascending || c as usize >= cols {
            return None;
        }
        set.push(row * cols + c as usize);
    }
    let dtype = if raw.dtype == Dtype::U16 { "u16" } else { "u32" };
    t.remove(&idx_name);
    t.insert(
        format!("{prefix}.bitmap"),
        Raw {
            dtype: Dtype::U8,
            shape: vec![bits_len],
            data: bitmap(kept * cols, set.into_iter()),
        },
    );
    Some(json!({"kind": "sell-bitmap", "kept": kept, "cols": cols, "k": k, "idx_dtype": dtype}))
}

fn unpack_sell(t: &mut Tensors, prefix: &str, rec: &Value) -> Result<(), ExportError> {
    let get = |key: &str| rec.get(key).and_then(Value::as_u64).map(|v| v as usize);
    let (Some(kept), Some(cols), Some(k)) = (get("kept"), get("cols"), get("k")) else {
        return Err(corrupt("packing record"));
    };
    let n = kept.checked_mul(cols).ok_or_else(|| corrupt("packing record"))?;
    let bits = t
        .remove(&format!("{prefix}.bitmap"))
        .ok_or_else(|| corrupt(format!("tensor `{prefix}.bitmap` is missing")))?;
    if bits.dtype != Dtype::U8 || bits.data.len() != n.div_ceil(8) {
        return Err(corrupt(format!("`{prefix}.bitmap` does not fit {kept}x{cols}")));
    }
    if k > cols {
        return Err(corrupt("packing record"));
    }
    // at most (kept + 15)·cols, which the bitmap's size bounds
    let n_values = kept.div_ceil(LANES) * k * LANES;
    let mut idx = vec![0u32; n_values];
    for row in 0..kept {
        let (g, l) = (row / LANES, row % LANES);
        let mut j = 0;
        for c in (0..cols).filter(|&c| bit(&bits.data, row * cols + c)) {
            if j == k {
                return Err(corrupt(format!(
                    "`{prefix}.bitmap`: row {row} has more than {k} entries"
                )));
            }
            idx[(g * k + j) * LANES + l] = c as u32;
            j += 1;
        }
        if j != k {
            return Err(corrupt(format!(
                "`{prefix}.bitmap`: row {row} has {j} entries, not {k}"
            )));
        }
    }
    let wide = rec.get("idx_dtype").and_then(Value::as_str) == Some("u32") || cols > 1 << 16;
    let (dtype, data) = index_bytes(&idx, wide);
    t.insert(
        format!("{prefix}.idx"),
        Raw {
            dtype,
            shape: vec![n_values],
            data,
        },
    );
    Ok(())
}

/// Stores a mostly zero f32 tensor as a bitmap of its nonzero entries and their values.
fn pack_zeros(t: &mut Tensors, name: &str) -> Option<Value> {
    let raw = t.get(name).filter(|r| r.dtype == Dtype::F32)?;
    let words = u32s(&raw.data);
    // ±0 are both pruned weights (masking gives −0 for negative ones); the sparse formats drop them too
    let nonzero: Vec<usize> = (0..words.len()).filter(|&i| words[i] << 1 != 0).collect();
    let packed = words.len().div_ceil(8) + 4 * nonzero.len();
    if packed >= raw.data.len() {
        return None;
    }
    let shape = raw.shape.clone();
    let values: Vec<u8> = nonzero.iter().flat_map(|&i| words[i].to_le_bytes()).collect();
    let bits = bitmap(words.len(), nonzero.iter().copied());
    t.remove(name);
    t.insert(
        format!("{name}.nz_bitmap"),
        Raw {
            dtype: Dtype::U8,
            shape: vec![bits.len()],
            data: bits,
        },
    );
    t.insert(
        format!("{name}.nz_values"),
        Raw {
            dtype: Dtype::F32,
            shape: vec![values.len() / 4],
            data: values,
        },
    );
    Some(json!({"kind": "zeros", "shape": shape}))
}

fn unpack_zeros(t: &mut Tensors, name: &str, rec: &Value) -> Result<(), ExportError> {
    let shape: Vec<usize> = rec
        .get("shape")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .ok_or_else(|| corrupt("packing record"))?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| corrupt("packing record"))?;
    let bits = t.remove(&format!("{name}.nz_bitmap"));
    let values = t.remove(&format!("{name}.nz_values"));
    let (Some(bits), Some(values)) = (bits, values) else {
        return Err(corrupt(format!("the packed tensor `{name}` is missing")));
    };
    if bits.dtype != Dtype::U8 || bits.data.len() != n.div_ceil(8) {
        return Err(corrupt(format!("the packed tensor `{name}` does not fit its bitmap")));
    }
    let positions: Vec<usize> = (0..n).filter(|&i| bit(&bits.data, i)).collect();
    if values.dtype != Dtype::F32 || positions.len() * 4 != values.data.len() {
        return Err(corrupt(format!("the packed tensor `{name}` does not fit its bitmap")));
    }
    let mut data = vec![0u8; 4 * n];
    for (k, &i) in positions.iter().enumerate() {
        data[4 * i..4 * i + 4].copy_from_slice(&values.data[4 * k..4 * k + 4]);
    }
    t.insert(
        name.to_string(),
        Raw {
            dtype: Dtype::F32,
            shape,
            data,
        },
    );
    Ok(())
}

/// Packs the file `bytes` (written from `TensorMap`); `zeros` also packs mostly zero dense weights.
pub fn pack(bytes: &[u8], zeros: bool) -> Result<Vec<u8>, ExportError> {
    let (mut t, mut json) = read(bytes)?;
    let mut packing = serde_json::Map::new();
    let layers = json["model"]["layers"].as_object().cloned().unwrap_or_default();
    for (name, layer) in &layers {
        let sparse = &layer["sparse"];
        if sparse["storage"] == "csr"
            && let Some(cols) = sparse["cols"].as_u64()
            && let Some(rec) = pack_csr(&mut t, name, cols as usize)
        {
            packing.insert(name.clone(), rec);
        }
        if sparse["storage"] == "condensed"
            && let (Some(cols), Some(k)) = (sparse["cols"].as_u64(), sparse["k"].as_u64())
            && let Some(rec) = pack_sell(&mut t, name, cols as usize, k as usize)
        {
            packing.insert(name.clone(), rec);
        }
        let weight = format!("{name}.weight");
        if zeros && let Some(rec) = pack_zeros(&mut t, &weight) {
            packing.insert(weight, rec);
        }
    }
    if packing.is_empty() {
        return Ok(bytes.to_vec());
    }
    json["packing"] = Value::Object(packing);
    write(&t, &json)
}

/// The file `bytes` with every packed tensor expanded (a copy only if something was packed).
pub fn unpack(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, ExportError> {
    let (mut t, mut json) = read(bytes)?;
    let Some(packing) = json.get("packing").and_then(Value::as_object).cloned() else {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    };
    for (name, rec) in &packing {
        match rec.get("kind").and_then(Value::as_str) {
            Some("csr-bitmap") => unpack_csr(&mut t, name, rec)?,
            Some("sell-bitmap") => unpack_sell(&mut t, name, rec)?,
            Some("zeros") => unpack_zeros(&mut t, name, rec)?,
            other => return Err(corrupt(format!("unknown packing {other:?} of `{name}`"))),
        }
    }
    if let Some(m) = json.as_object_mut() {
        m.remove("packing");
    }
    Ok(std::borrow::Cow::Owned(write(&t, &json)?))
}
