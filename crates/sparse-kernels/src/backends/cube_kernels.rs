//! CubeCL (wgpu, cuda), feature `cube-kernels`: gather-form kernels, one
//! thread per output element, no float atomics (not every wgpu device has
//! them). **Not yet compiled or tested** (the session that wrote them could not
//! build the wgpu stack); CI runs Cube devices through the primitive fallback.
//!
//! The plan's compressed rows are uploaded once per device as `i32` tensors
//! (row pointers, columns, value positions, and for convolutions the input
//! channel and kernel position of each entry) and cached in the plan. The
//! backward helpers (`sparse_linear_t`, `sparse_sddmm`) use the primitive
//! bodies (dense matmuls) on this backend.

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
use crate::ops::{SparseOps, fallback_conv2d, fallback_linear};
use crate::plan::SparsePlan;

/// The plan's index arrays on one CubeCL device.
#[derive(Debug, Clone)]
pub struct CubeIndex {
    device: CubeDevice,
    row_ptr: CubeTensor,
    col: CubeTensor,
    vpos: CubeTensor,
    chan: Option<CubeTensor>,
    kpos: Option<CubeTensor>,
}

fn upload(v: Vec<i32>, device: &CubeDevice) -> CubeTensor {
    let n = v.len().max(1);
    let mut v = v;
    v.resize(n, 0);
    <CubeBackend as burn::backend::Backend>::int_from_data(TensorData::new(v, [n]), device)
}

fn index(plan: &SparsePlan, device: &CubeDevice) -> CubeIndex {
    let mut cache = plan.cube_cache.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = cache.as_ref().filter(|c| &c.device == device) {
        return c.clone();
    }
    let csr = plan.csr();
    let col: Vec<i32> = csr.col.to_u32().into_iter().map(|c| c as i32).collect();
    let vpos: Vec<i32> = (0..csr.nnz()).map(|e| csr.value_of(e) as i32).collect();
    let conv = plan.conv_index();
    let built = CubeIndex {
        device: device.clone(),
        row_ptr: upload(csr.row_ptr.iter().map(|&r| r as i32).collect(), device),
        col: upload(col, device),
        vpos: upload(vpos, device),
        chan: conv.map(|c| upload(c.chan.iter().map(|&v| v as i32).collect(), device)),
        kpos: conv.map(|c| upload(c.kpos.iter().map(|&v| v as i32).collect(), device)),
    };
    *cache = Some(built.clone());
    built
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn linear_kernel<F: Float, I: Numeric>(
    x: &Tensor<F>,
    values: &Tensor<F>,
    bias: &Tensor<F>,
    row_ptr: &Tensor<I>,
    col: &Tensor<I>,
    vpos: &Tensor<I>,
    out: &mut Tensor<F>,
    rows: u32,
    cols: u32,
    relu: u32,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let pos = ABSOLUTE_POS;
    if pos >= out.len() {
        terminate!();
    }
    let b = pos / rows as usize;
    let r = pos % rows as usize;
    let start = u32::cast_from(row_ptr[r]) as usize;
    let end = u32::cast_from(row_ptr[r + 1]) as usize;
    let base = b * cols as usize;
    let mut acc = bias[r];
    for e in start..end {
        let c = u32::cast_from(col[e]) as usize;
        let v = u32::cast_from(vpos[e]) as usize;
        acc += values[v] * x[base + c];
    }
    if relu == 1 {
        acc = F::max(acc, F::new(0.0));
    }
    out[pos] = acc;
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn conv_kernel<F: Float, I: Numeric>(
    x: &Tensor<F>,
    values: &Tensor<F>,
    bias: &Tensor<F>,
    row_ptr: &Tensor<I>,
    chan: &Tensor<I>,
    kpos: &Tensor<I>,
    vpos: &Tensor<I>,
    out: &mut Tensor<F>,
    geo: &Tensor<I>,
    relu: u32,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    // geo: [c, h, w, o, ho, wo, sy, sx, pt, pl, dy, dx, kw]
    let pos = ABSOLUTE_POS;
    if pos >= out.len() {
        terminate!();
    }
    let c_in = u32::cast_from(geo[0]) as usize;
    let h = u32::cast_from(geo[1]) as usize;
    let w = u32::cast_from(geo[2]) as usize;
    let o_n = u32::cast_from(geo[3]) as usize;
    let ho = u32::cast_from(geo[4]) as usize;
    let wo = u32::cast_from(geo[5]) as usize;
    let sy = u32::cast_from(geo[6]) as usize;
    let sx = u32::cast_from(geo[7]) as usize;
    let pt = u32::cast_from(geo[8]) as usize;
    let pl = u32::cast_from(geo[9]) as usize;
    let dy = u32::cast_from(geo[10]) as usize;
    let dx = u32::cast_from(geo[11]) as usize;
    let kw = u32::cast_from(geo[12]) as usize;
    let ox = pos % wo;
    let oy = (pos / wo) % ho;
    let o = (pos / (wo * ho)) % o_n;
    let n = pos / (wo * ho * o_n);
    let start = u32::cast_from(row_ptr[o]) as usize;
    let end = u32::cast_from(row_ptr[o + 1]) as usize;
    let mut acc = bias[o];
    for e in start..end {
        let c = u32::cast_from(chan[e]) as usize;
        let kp = u32::cast_from(kpos[e]) as usize;
        let yp = oy * sy + (kp / kw) * dy;
        let xp = ox * sx + (kp % kw) * dx;
        if yp >= pt && yp < pt + h && xp >= pl && xp < pl + w {
            let v = u32::cast_from(vpos[e]) as usize;
            acc += values[v] * x[((n * c_in + c) * h + (yp - pt)) * w + (xp - pl)];
        }
    }
    if relu == 1 {
        acc = F::max(acc, F::new(0.0));
    }
    out[pos] = acc;
}

fn launch_dims(t: &CubeTensor, n: usize) -> (CubeCount, CubeDim) {
    let dim = CubeDim::new(&t.client, n);
    (calculate_cube_count_elemwise(&t.client, n, dim), dim)
}

impl SparseOps for CubeBackend {
    fn sparse_linear(
        x: CubeTensor,
        values: CubeTensor,
        bias: CubeTensor,
        plan: SparsePlan,
        act: Activation,
    ) -> CubeTensor {
        if x.dtype != DType::F32 {
            return fallback_linear::<CubeBackend>(x, values, bias, &plan, act);
        }
        let (x, values, bias) = (into_contiguous(x), into_contiguous(values), into_contiguous(bias));
        let shape = x.shape();
        assert!(
            shape[1] == plan.cols,
            "sparse_linear: input width {} for {plan:?}",
            shape[1]
        );
        let ix = index(&plan, &x.device);
        let out = empty_device_dtype(
            x.client.clone(),
            x.device.clone(),
            Shape::new([shape[0], plan.rows]),
            x.dtype,
        );
        let (count, dim) = launch_dims(&out, shape[0] * plan.rows);
        let dtypes = [dtype_to_storage_type(x.dtype), dtype_to_storage_type(ix.col.dtype)];
        linear_kernel::launch(
            &out.client,
            count,
            dim,
            x.into_tensor_arg(),
            values.into_tensor_arg(),
            bias.into_tensor_arg(),
            ix.row_ptr.into_tensor_arg(),
            ix.col.into_tensor_arg(),
            ix.vpos.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            plan.rows as u32,
            plan.cols as u32,
            u32::from(act == Activation::Relu),
            dtypes,
        );
        out
    }

    fn sparse_conv2d(
        x: CubeTensor,
        values: CubeTensor,
        bias: CubeTensor,
        plan: SparsePlan,
        options: ConvOptions<2>,
        act: Activation,
    ) -> CubeTensor {
        if x.dtype != DType::F32 {
            return fallback_conv2d::<CubeBackend>(x, values, bias, &plan, options, act);
        }
        let (x, values, bias) = (into_contiguous(x), into_contiguous(values), into_contiguous(bias));
        let s = conv_shape(&x.shape(), &plan, &options);
        let ix = index(&plan, &x.device);
        let geo: Vec<i32> = vec![
            s.c,
            s.hw[0],
            s.hw[1],
            s.o,
            s.out_hw[0],
            s.out_hw[1],
            s.stride[0],
            s.stride[1],
            s.padding[0].0,
            s.padding[1].0,
            s.dilation[0],
            s.dilation[1],
            s.kernel[1],
        ]
        .into_iter()
        .map(|v| v as i32)
        .collect();
        let geo = <CubeBackend as burn::backend::Backend>::int_from_data(TensorData::new(geo, [13]), &x.device);
        let out_shape = Shape::new([s.n, s.o, s.out_hw[0], s.out_hw[1]]);
        let n_out = out_shape.num_elements();
        let out = empty_device_dtype(x.client.clone(), x.device.clone(), out_shape, x.dtype);
        let (count, dim) = launch_dims(&out, n_out);
        let dtypes = [dtype_to_storage_type(x.dtype), dtype_to_storage_type(ix.row_ptr.dtype)];
        let (chan, kpos) = (
            ix.chan.expect("conv plan has channels"),
            ix.kpos.expect("conv plan has positions"),
        );
        conv_kernel::launch(
            &out.client,
            count,
            dim,
            x.into_tensor_arg(),
            values.into_tensor_arg(),
            bias.into_tensor_arg(),
            ix.row_ptr.into_tensor_arg(),
            chan.into_tensor_arg(),
            kpos.into_tensor_arg(),
            ix.vpos.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            geo.into_tensor_arg(),
            u32::from(act == Activation::Relu),
            dtypes,
        );
        out
    }
}
