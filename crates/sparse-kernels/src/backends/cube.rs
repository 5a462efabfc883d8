//! CubeCL (wgpu, cuda, any CubeCL runtime): gather-form sparse kernels, one
//! thread per output element, no float atomics (not every wgpu device has
//! them) and only `f32`/`u32` data (WGSL has no 64-bit types).
//!
//! * `sparse_linear`: for SELL storage (condensed, N:M) thread `(b, r)` walks
//!   row `r`'s `k` entries in the interleaved `[group][j][16]` layout, so the
//!   16 threads of a row group read 16 consecutive values and indices per step
//!   (coalesced, the transposed-ELL layout SRigL found fastest on GPU); for
//!   CSR and BSR storage it walks the row's compressed entries.
//! * `sparse_linear_t` (`dX = dY·W`): thread `(b, c)` walks column `c` of a
//!   compressed-column index (gather form of the transposed product).
//! * `sparse_sddmm`: thread `p` computes `Σ_b dY[b, r]·X[b, c]` for stored
//!   value `p` at `(r, c)` (0 at padding).
//! * `sparse_conv2d`: thread `(n, o, y, x)` walks output channel `o`'s entries
//!   (input channel, kernel position) with padding, stride and dilation as
//!   bounds checks: a direct convolution without im2col.
//!
//! The plan's index arrays are uploaded as `u32` tensors once per device and
//! cached in the plan ([`CubeCache`]). Inputs that are not `f32` take the
//! primitive bodies of [`crate::ops`].

use std::collections::HashMap;

use burn::backend::TensorMetadata;
use burn::backend::cubecl::dtype_to_storage_type;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Shape, TensorData};
use burn_cubecl::cubecl;
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::cubecl::{CubeDim, calculate_cube_count_elemwise};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{CubeBackend, CubeDevice};

use crate::activation::Activation;
use crate::backends::shape::conv_shape;
use crate::ops::{SparseOps, fallback_conv2d, fallback_linear, fallback_linear_t, fallback_sddmm};
use crate::plan::{PlanData, Sell, SparsePlan, Storage};

/// The plan's index arrays uploaded to one CubeCL device, by name.
#[derive(Debug, Default)]
pub struct CubeCache {
    device: Option<CubeDevice>,
    arrays: HashMap<&'static str, CubeTensor>,
}

/// The index array `name` of `plan` on `device`, built by `build` and uploaded on first use.
fn array(plan: &PlanData, device: &CubeDevice, name: &'static str, build: impl FnOnce() -> Vec<u32>) -> CubeTensor {
    let mut cache = plan.cube_cache.lock().unwrap_or_else(|p| p.into_inner());
    if cache.device.as_ref() != Some(device) {
        *cache = CubeCache {
            device: Some(device.clone()),
            arrays: HashMap::new(),
        };
    }
    cache
        .arrays
        .entry(name)
        .or_insert_with(|| {
            let mut v = build();
            if v.is_empty() {
                v.push(0); // no zero-sized buffers
            }
            let n = v.len();
            upload::<CubeBackend>(TensorData::new(v, [n]), device)
        })
        .clone()
}

/// `data` as an int tensor of `B` on `device`.
fn upload<B: burn::backend::Backend>(data: TensorData, device: &B::Device) -> burn::backend::tensor::IntTensor<B> {
    B::int_from_data(data, device)
}

fn csr_arrays(plan: &PlanData, device: &CubeDevice) -> [CubeTensor; 3] {
    [
        array(plan, device, "row_ptr", || plan.csr().row_ptr.clone()),
        array(plan, device, "col", || plan.csr().col.to_u32()),
        array(plan, device, "vpos", || {
            let csr = plan.csr();
            (0..csr.nnz()).map(|e| csr.value_of(e) as u32).collect()
        }),
    ]
}

/// Kept-row slot of every row (`kept.len()` for an ablated row) and the SELL column indices.
fn sell_arrays(plan: &PlanData, s: &Sell, device: &CubeDevice) -> [CubeTensor; 2] {
    [
        array(plan, device, "slot", || {
            let mut slot = vec![s.kept.len() as u32; plan.rows];
            for (i, &r) in s.kept.iter().enumerate() {
                slot[r as usize] = i as u32;
            }
            slot
        }),
        array(plan, device, "sell_col", || {
            (0..plan.n_values).map(|p| s.col(p) as u32).collect()
        }),
    ]
}

/// Rows `0..rows`, CSR entries: `out[b, r] = act(bias[r] + Σ values[vpos[e]]·x[b, col[e]])`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn csr_linear_kernel<F: Float>(
    x: &Tensor<F>,
    values: &Tensor<F>,
    bias: &Tensor<F>,
    row_ptr: &Tensor<u32>,
    col: &Tensor<u32>,
    vpos: &Tensor<u32>,
    out: &mut Tensor<F>,
    rows: u32,
    cols: u32,
    relu: u32,
    #[define(F)] _dtype: ElemType,
) {
    let pos = ABSOLUTE_POS;
    if pos >= out.len() {
        terminate!();
    }
    let b = pos / rows as usize;
    let r = pos % rows as usize;
    let start = row_ptr[r] as usize;
    let end = row_ptr[r + 1] as usize;
    let base = b * cols as usize;
    let mut acc = bias[r];
    for e in start..end {
        acc += values[vpos[e] as usize] * x[base + col[e] as usize];
    }
    if relu == 1 {
        acc = F::max(acc, F::new(0.0));
    }
    out[pos] = acc;
}

/// SELL-16 entries: kept slot `s = slot[r]` holds entry `j` at `((s/16)·k + j)·16 + s%16`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn sell_linear_kernel<F: Float>(
    x: &Tensor<F>,
    values: &Tensor<F>,
    bias: &Tensor<F>,
    slot: &Tensor<u32>,
    col: &Tensor<u32>,
    out: &mut Tensor<F>,
    rows: u32,
    cols: u32,
    k: u32,
    kept: u32,
    relu: u32,
    #[define(F)] _dtype: ElemType,
) {
    let pos = ABSOLUTE_POS;
    if pos >= out.len() {
        terminate!();
    }
    let b = pos / rows as usize;
    let r = pos % rows as usize;
    let s = slot[r];
    let mut acc = bias[r];
    if s < kept {
        let kk = k as usize;
        let start = (s as usize / 16) * kk * 16 + s as usize % 16;
        let base = b * cols as usize;
        for j in 0..kk {
            let p = start + j * 16;
            acc += values[p] * x[base + col[p] as usize];
        }
    }
    if relu == 1 {
        acc = F::max(acc, F::new(0.0));
    }
    out[pos] = acc;
}

/// `dx[b, c] = Σ_{e in column c} values[value[e]]·dy[b, row[e]]`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn transposed_kernel<F: Float>(
    dy: &Tensor<F>,
    values: &Tensor<F>,
    col_ptr: &Tensor<u32>,
    row: &Tensor<u32>,
    value: &Tensor<u32>,
    dx: &mut Tensor<F>,
    rows: u32,
    cols: u32,
    #[define(F)] _dtype: ElemType,
) {
    let pos = ABSOLUTE_POS;
    if pos >= dx.len() {
        terminate!();
    }
    let b = pos / cols as usize;
    let c = pos % cols as usize;
    let base = b * rows as usize;
    let mut acc = F::new(0.0);
    for e in col_ptr[c] as usize..col_ptr[c + 1] as usize {
        acc += values[value[e] as usize] * dy[base + row[e] as usize];
    }
    dx[pos] = acc;
}

/// `dv[p] = Σ_b dy[b, r]·x[b, c]` for value `p` at dense position `r·cols + c` (0 at padding).
#[cube(launch)]
fn sddmm_kernel<F: Float>(
    dy: &Tensor<F>,
    x: &Tensor<F>,
    dense_pos: &Tensor<u32>,
    dv: &mut Tensor<F>,
    rows: u32,
    cols: u32,
    batch: u32,
    #[define(F)] _dtype: ElemType,
) {
    let p = ABSOLUTE_POS;
    if p >= dv.len() {
        terminate!();
    }
    let d = dense_pos[p];
    let mut acc = F::new(0.0);
    if d < rows * cols {
        let r = (d / cols) as usize;
        let c = (d % cols) as usize;
        for b in 0..batch as usize {
            acc += dy[b * rows as usize + r] * x[b * cols as usize + c];
        }
    }
    dv[p] = acc;
}

/// Geometry of one convolution call.
#[derive(CubeLaunch, CubeType)]
struct ConvArgs {
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    ho: u32,
    wo: u32,
    sy: u32,
    sx: u32,
    pt: u32,
    pl: u32,
    dy: u32,
    dx: u32,
    kw: u32,
    relu: u32,
}

/// `out[n, o, y, x] = act(bias[o] + Σ_e values[vpos[e]]·x[n, chan[e], y·sy + ky·dy − pt, x·sx + kx·dx − pl])`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn conv_kernel<F: Float>(
    x: &Tensor<F>,
    values: &Tensor<F>,
    bias: &Tensor<F>,
    row_ptr: &Tensor<u32>,
    chan: &Tensor<u32>,
    kpos: &Tensor<u32>,
    vpos: &Tensor<u32>,
    out: &mut Tensor<F>,
    a: &ConvArgs,
    #[define(F)] _dtype: ElemType,
) {
    let pos = ABSOLUTE_POS;
    if pos >= out.len() {
        terminate!();
    }
    let h = a.h as usize;
    let w = a.w as usize;
    let ho = a.ho as usize;
    let wo = a.wo as usize;
    let pt = a.pt as usize;
    let pl = a.pl as usize;
    let ox = pos % wo;
    let oy = (pos / wo) % ho;
    let o = (pos / (wo * ho)) % a.c_out as usize;
    let n = pos / (wo * ho * a.c_out as usize);
    let kw = a.kw as usize;
    let image = n * a.c_in as usize;
    let mut acc = bias[o];
    for e in row_ptr[o] as usize..row_ptr[o + 1] as usize {
        let kp = kpos[e] as usize;
        // padded coordinates; inside the image when in [pt, pt + h) × [pl, pl + w)
        let yp = oy * a.sy as usize + (kp / kw) * a.dy as usize;
        let xp = ox * a.sx as usize + (kp % kw) * a.dx as usize;
        if yp >= pt && yp < pt + h && xp >= pl && xp < pl + w {
            let c = chan[e] as usize;
            acc += values[vpos[e] as usize] * x[((image + c) * h + (yp - pt)) * w + (xp - pl)];
        }
    }
    if a.relu == 1 {
        acc = F::max(acc, F::new(0.0));
    }
    out[pos] = acc;
}

/// A contiguous output of `shape` on `like`'s device.
fn output(like: &CubeTensor, shape: Shape) -> CubeTensor {
    empty_device_dtype(like.client.clone(), like.device.clone(), shape, like.dtype)
}

/// One thread per element of `out`; `None` when there is nothing to compute.
fn launch_dims(out: &CubeTensor) -> Option<(CubeCount, CubeDim)> {
    let n = out.shape().num_elements();
    (n > 0).then(|| {
        let dim = CubeDim::new(&out.client, n);
        (calculate_cube_count_elemwise(&out.client, n, dim), dim)
    })
}

fn is_f32(ts: &[&CubeTensor]) -> bool {
    ts.iter().all(|t| t.dtype == DType::F32)
}

fn check(what: &str, got: usize, want: usize, plan: &SparsePlan) {
    assert!(
        got == want,
        "sparse op: {what} is {got}, the sparse weight {plan:?} needs {want}"
    );
}

impl SparseOps for CubeBackend {
    fn sparse_linear(
        x: CubeTensor,
        values: CubeTensor,
        bias: CubeTensor,
        plan: SparsePlan,
        act: Activation,
    ) -> CubeTensor {
        if !is_f32(&[&x, &values, &bias]) {
            return fallback_linear::<CubeBackend>(x, values, bias, &plan, act);
        }
        let (x, values, bias) = (into_contiguous(x), into_contiguous(values), into_contiguous(bias));
        let shape = x.shape();
        check("the input width", shape[1], plan.cols, &plan);
        check("the number of values", values.shape()[0], plan.n_values, &plan);
        check("the bias length", bias.shape()[0], plan.rows, &plan);
        let out = output(&x, Shape::new([shape[0], plan.rows]));
        let Some((count, dim)) = launch_dims(&out) else {
            return out;
        };
        let (rows, cols, relu) = (plan.rows as u32, plan.cols as u32, u32::from(act == Activation::Relu));
        let dtype = dtype_to_storage_type(x.dtype);
        let client = out.client.clone();
        if let Storage::Sell(s) = &plan.storage {
            let [slot, col] = sell_arrays(&plan, s, &x.device);
            sell_linear_kernel::launch(
                &client,
                count,
                dim,
                x.into_tensor_arg(),
                values.into_tensor_arg(),
                bias.into_tensor_arg(),
                slot.into_tensor_arg(),
                col.into_tensor_arg(),
                out.clone().into_tensor_arg(),
                rows,
                cols,
                s.k as u32,
                s.kept.len() as u32,
                relu,
                dtype,
            );
        } else {
            let [row_ptr, col, vpos] = csr_arrays(&plan, &x.device);
            csr_linear_kernel::launch(
                &client,
                count,
                dim,
                x.into_tensor_arg(),
                values.into_tensor_arg(),
                bias.into_tensor_arg(),
                row_ptr.into_tensor_arg(),
                col.into_tensor_arg(),
                vpos.into_tensor_arg(),
                out.clone().into_tensor_arg(),
                rows,
                cols,
                relu,
                dtype,
            );
        }
        out
    }

    fn sparse_linear_t(dy: CubeTensor, values: CubeTensor, plan: SparsePlan) -> CubeTensor {
        if !is_f32(&[&dy, &values]) {
            return fallback_linear_t::<CubeBackend>(dy, values, &plan);
        }
        let (dy, values) = (into_contiguous(dy), into_contiguous(values));
        let batch = dy.shape()[0];
        check("the output-gradient width", dy.shape()[1], plan.rows, &plan);
        let dx = output(&dy, Shape::new([batch, plan.cols]));
        let Some((count, dim)) = launch_dims(&dx) else {
            return dx;
        };
        let device = dy.device.clone();
        let col_ptr = array(&plan, &device, "csc_col_ptr", || plan.csc().col_ptr.clone());
        let row = array(&plan, &device, "csc_row", || plan.csc().row.clone());
        let value = array(&plan, &device, "csc_value", || plan.csc().value.clone());
        transposed_kernel::launch(
            &dx.client.clone(),
            count,
            dim,
            dy.clone().into_tensor_arg(),
            values.into_tensor_arg(),
            col_ptr.into_tensor_arg(),
            row.into_tensor_arg(),
            value.into_tensor_arg(),
            dx.clone().into_tensor_arg(),
            plan.rows as u32,
            plan.cols as u32,
            dtype_to_storage_type(dy.dtype),
        );
        dx
    }

    fn sparse_sddmm(dy: CubeTensor, x: CubeTensor, plan: SparsePlan) -> CubeTensor {
        if !is_f32(&[&dy, &x]) {
            return fallback_sddmm::<CubeBackend>(dy, x, &plan);
        }
        let (dy, x) = (into_contiguous(dy), into_contiguous(x));
        let batch = dy.shape()[0];
        check("the input width", x.shape()[1], plan.cols, &plan);
        check("the output-gradient width", dy.shape()[1], plan.rows, &plan);
        let dv = output(&x, Shape::new([plan.n_values]));
        let Some((count, dim)) = launch_dims(&dv) else {
            return dv;
        };
        let pos = array(&plan, &x.device, "dense_pos", || {
            plan.dense_positions().iter().map(|&p| p as u32).collect()
        });
        sddmm_kernel::launch(
            &dv.client.clone(),
            count,
            dim,
            dy.into_tensor_arg(),
            x.clone().into_tensor_arg(),
            pos.into_tensor_arg(),
            dv.clone().into_tensor_arg(),
            plan.rows as u32,
            plan.cols as u32,
            batch as u32,
            dtype_to_storage_type(x.dtype),
        );
        dv
    }

    fn sparse_conv2d(
        x: CubeTensor,
        values: CubeTensor,
        bias: CubeTensor,
        plan: SparsePlan,
        options: ConvOptions<2>,
        act: Activation,
    ) -> CubeTensor {
        if !is_f32(&[&x, &values, &bias]) {
            return fallback_conv2d::<CubeBackend>(x, values, bias, &plan, options, act);
        }
        let (x, values, bias) = (into_contiguous(x), into_contiguous(values), into_contiguous(bias));
        let s = conv_shape(&x.shape(), &plan, &options);
        check("the number of values", values.shape()[0], plan.n_values, &plan);
        check("the bias length", bias.shape()[0], plan.rows, &plan);
        let out = output(&x, Shape::new([s.n, s.o, s.out_hw[0], s.out_hw[1]]));
        let Some((count, dim)) = launch_dims(&out) else {
            return out;
        };
        let device = x.device.clone();
        let [row_ptr, _, vpos] = csr_arrays(&plan, &device);
        let chan = array(&plan, &device, "conv_chan", || {
            plan.conv_index().map(|c| c.chan.clone()).unwrap_or_default()
        });
        let kpos = array(&plan, &device, "conv_kpos", || {
            plan.conv_index()
                .map(|c| c.kpos.iter().map(|&k| k as u32).collect())
                .unwrap_or_default()
        });
        let u = |v: usize| v as u32;
        let args = ConvArgsLaunch::new(
            u(s.c),
            u(s.hw[0]),
            u(s.hw[1]),
            u(s.o),
            u(s.out_hw[0]),
            u(s.out_hw[1]),
            u(s.stride[0]),
            u(s.stride[1]),
            u(s.padding[0].0),
            u(s.padding[1].0),
            u(s.dilation[0]),
            u(s.dilation[1]),
            u(s.kernel[1]),
            u32::from(act == Activation::Relu),
        );
        conv_kernel::launch(
            &out.client.clone(),
            count,
            dim,
            x.clone().into_tensor_arg(),
            values.into_tensor_arg(),
            bias.into_tensor_arg(),
            row_ptr.into_tensor_arg(),
            chan.into_tensor_arg(),
            kpos.into_tensor_arg(),
            vpos.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            args,
            dtype_to_storage_type(x.dtype),
        );
        out
    }
}

/// Burn's own batch norm (the primitive bodies).
impl crate::norm::NormOps for CubeBackend {}
