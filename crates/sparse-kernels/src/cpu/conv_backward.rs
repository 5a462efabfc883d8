//! The backward pass of the direct sparse convolution ([`super::conv`]):
//! the input gradient through the transposed sparse convolution and the
//! gradient of every stored weight, without a dense weight or im2col matrix.
//!
//! The forward pass computes, per image, over the flat output positions
//! `q = oy·Wq + ox` of the padded phase-plane buffer,
//! `out[o][q] = Σ_e w_e · buf[off_e + q]` (entries `e` of row `o`). With
//! `dY` laid out on the same positions (`dyq[o][q]`, zero at the `Wq − Wo`
//! positions past each row's end) both gradients are contiguous loops:
//!
//! * `dW_e = Σ_n Σ_q dyq[o][q] · buf[off_e + q]` (a dot product per entry);
//! * `dbuf[off_e + q] += w_e · dyq[o][q]` (an axpy per entry), then the
//!   padded buffer's gradient is folded back into `dX` (padding dropped).
//!
//! The two gradients are separate passes (an op each). Images are split over
//! threads; each thread keeps its own `dW` and they are added at the end.
//! Where the forward reads `X` in place (1×1, stride 1, unpadded, at least
//! 8 pixels) so do these passes, and the scatter writes `dX` in place.

// `S` picks the instruction set a `with_simd` body is compiled for; the
// plain loops are what LLVM vectorises.
#![allow(clippy::extra_unused_type_parameters, clippy::needless_range_loop)]

use macerator::Simd;

use super::backward::dot;
use super::conv::{ConvPrep, ConvShape, fill_buffer, prepared};
use super::{SharedOut, for_each_index};
use crate::activation::Activation;
use crate::indices::Indices;
use crate::plan::{CsrView, OpKind, PlanData, SparsePlan, Storage};

/// A gradient kernel: `(plan, values, x, dy, shape)` to `dX` or `dW`.
pub type GradKernel = fn(&PlanData, &[f32], &[f32], &[f32], ConvShape) -> Vec<f32>;

/// `dX: [n, c, h, w]` of `out = conv(x, W)` for the output gradient
/// `dy: [n, o, ho, wo]` (`x` gives the shape; both contiguous NCHW).
///
/// A stride-1 convolution's input gradient is itself a convolution: of `dY`
/// (padded by `d·(k − 1) − pad` on each side) with the weight transposed
/// (`c` ↔ `o`) and flipped (`ky → k − 1 − ky`). It runs on the direct
/// forward kernel (accumulators in registers) over a transposed plan built
/// once per plan. Other convolutions (strided, grouped, or padded beyond the
/// dilated kernel's reach) scatter `dY` into the padded input buffer.
pub fn input_grad(plan: &PlanData, values: &[f32], x: &[f32], dy: &[f32], s: ConvShape) -> Vec<f32> {
    let Some(ts) = transposed_shape(plan, &s) else {
        return backward(plan, values, x, dy, s, true).0;
    };
    let tplan = plan.conv_t.get_or_init(|| transposed_plan(plan));
    let mut dx = vec![0.0f32; s.n * s.c * s.hw[0] * s.hw[1]];
    let zeros = vec![0.0f32; s.c];
    super::conv::forward(tplan, values, dy, ts, &zeros, Activation::None, &mut dx);
    dx
}

/// The shape of the transposed convolution computing `dX` of a stride-1,
/// one-group convolution of shape `s` (`None` for other convolutions, or
/// a padding beyond the dilated kernel's reach).
fn transposed_shape(plan: &PlanData, s: &ConvShape) -> Option<ConvShape> {
    let OpKind::Conv { groups: 1, .. } = plan.op else {
        return None;
    };
    if s.stride != [1, 1] || s.out_hw.contains(&0) {
        return None;
    }
    let pad = |i: usize| {
        let reach = s.dilation[i] * (s.kernel[i] - 1);
        Some((reach.checked_sub(s.padding[i].0)?, reach.checked_sub(s.padding[i].1)?))
    };
    Some(ConvShape {
        n: s.n,
        c: s.o,
        hw: s.out_hw,
        o: s.c,
        out_hw: s.hw,
        stride: [1, 1],
        padding: [pad(0)?, pad(1)?],
        dilation: s.dilation,
        kernel: s.kernel,
    })
}

/// The CSR plan of the transposed, flipped weight: row `c`, fan-in
/// `(K − 1 − kpos)·c_out + o` for each entry `(o, kpos·c_in + c)`; each entry
/// points at its value in the original values tensor.
fn transposed_plan(plan: &PlanData) -> SparsePlan {
    let OpKind::Conv { cin_g, kernel, .. } = plan.op else {
        unreachable!("transposed_shape accepts conv plans only");
    };
    let csr = plan.csr();
    let (cout, kpos) = (plan.rows, kernel[0] * kernel[1]);
    let mut entries: Vec<(u32, u32, u32)> = Vec::with_capacity(csr.nnz());
    for o in 0..cout {
        for e in csr.row_ptr[o] as usize..csr.row_ptr[o + 1] as usize {
            let j = csr.col.get(e);
            let (p, c) = (j / cin_g, j % cin_g);
            let col = (kpos - 1 - p) * cout + o;
            entries.push((c as u32, col as u32, csr.value_of(e) as u32));
        }
    }
    entries.sort_unstable();
    let mut row_ptr = vec![0u32; cin_g + 1];
    for &(c, _, _) in &entries {
        row_ptr[c as usize + 1] += 1;
    }
    for c in 0..cin_g {
        row_ptr[c + 1] += row_ptr[c];
    }
    let cols = kpos * cout;
    let view = CsrView {
        row_ptr,
        col: Indices::narrowest(entries.iter().map(|e| e.1).collect(), cols),
        perm: Some(entries.iter().map(|e| e.2).collect()),
    };
    let op = OpKind::Conv {
        cin_g: cout,
        kernel,
        groups: 1,
    };
    SparsePlan::new(cin_g, cols, plan.n_values, op, Storage::Csr, Some(view), Vec::new())
}

/// `dW` of `out = conv(x, W)` at every stored value (value order) for the
/// output gradient `dy: [n, o, ho, wo]` (`x: [n, c, h, w]`; contiguous NCHW).
pub fn values_grad(plan: &PlanData, values: &[f32], x: &[f32], dy: &[f32], s: ConvShape) -> Vec<f32> {
    backward(plan, values, x, dy, s, false).1
}

/// `(dX, dW)`: `dX` when `want_dx` (else empty), `dW` otherwise (else zeros).
fn backward(
    plan: &PlanData,
    values: &[f32],
    x: &[f32],
    dy: &[f32],
    s: ConvShape,
    want_dx: bool,
) -> (Vec<f32>, Vec<f32>) {
    let csr = plan.csr();
    let nnz = csr.nnz();
    let image = s.c * s.hw[0] * s.hw[1];
    let out_area = s.out_hw[0] * s.out_hw[1];
    assert!(
        x.len() >= s.n * image && dy.len() >= s.n * s.o * out_area && plan.rows == s.o,
        "conv backward: buffers do not fit the shape {s:?}"
    );
    if s.n == 0 || image == 0 || out_area == 0 {
        let dx = vec![0.0f32; if want_dx { s.n * image } else { 0 }];
        return (dx, vec![0.0f32; plan.n_values]);
    }
    let prep = prepared(plan, &s);
    // the values in entry order, read by the scatter of `dX` only
    let vals: Vec<f32> = match want_dx {
        true => (0..nnz).map(|e| values[csr.value_of(e)]).collect(),
        false => Vec::new(),
    };
    let threads = rayon::current_num_threads().max(1).min(s.n.max(1));
    let per = s.n.div_ceil(threads).max(1);
    let images: Vec<std::ops::Range<usize>> = (0..s.n).step_by(per).map(|a| a..(a + per).min(s.n)).collect();
    let job = Job {
        row_ptr: &csr.row_ptr,
        offs: prep.offsets(),
        vals: &vals,
        prep: &prep,
        s,
        q_end: if out_area == 0 {
            0
        } else {
            (s.out_hw[0] - 1) * prep.wq() + s.out_hw[1]
        },
        want_dx,
        // one task: the fill may use the other threads; several: they are busy
        fill_in_parallel: images.len() == 1,
    };
    let mut dx = vec![0.0f32; if want_dx { s.n * image } else { 0 }];
    let grads: Vec<std::sync::Mutex<Vec<f32>>> = images.iter().map(|_| Default::default()).collect();
    let dx_all = SharedOut(dx.as_mut_ptr());
    for_each_index(images.len(), |t| {
        let range = images[t].clone();
        let dx_part = if want_dx {
            // SAFETY: the images of task t own their slice of `dx`; no other task touches it.
            unsafe { dx_all.slice(range.start * image, range.len() * image) }
        } else {
            &mut []
        };
        let g = job.images(range, x, dy, dx_part);
        // (a poisoned lock cannot be seen: a panicking task panics the whole loop)
        *grads[t].lock().unwrap_or_else(|p| p.into_inner()) = g;
    });
    let grads: Vec<Vec<f32>> = grads
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect();
    let mut dv = vec![0.0f32; plan.n_values];
    for g in &grads {
        for (e, v) in g.iter().enumerate() {
            dv[csr.value_of(e)] += v;
        }
    }
    (dx, dv)
}

/// What every image's backward reads.
struct Job<'a> {
    row_ptr: &'a [u32],
    offs: &'a [u32],
    /// Values in entry order.
    vals: &'a [f32],
    prep: &'a ConvPrep,
    s: ConvShape,
    /// Flat output positions per channel (`(ho − 1)·Wq + wo`).
    q_end: usize,
    want_dx: bool,
    /// Whether an image's padded buffer is filled by channel in parallel.
    fill_in_parallel: bool,
}

impl Job<'_> {
    /// The entries' gradients summed over the images `range`, writing their
    /// `dX` into `dx` (`range.len()` images, when wanted).
    fn images(&self, range: std::ops::Range<usize>, x: &[f32], dy: &[f32], dx: &mut [f32]) -> Vec<f32> {
        let s = &self.s;
        let image = s.c * s.hw[0] * s.hw[1];
        let out_area = s.out_hw[0] * s.out_hw[1];
        let direct = self.prep.is_direct();
        let planes = s.c * self.prep.plane();
        let mut dw = vec![0.0f32; self.offs.len()];
        let mut buf = vec![
            0.0f32;
            if direct || self.want_dx {
                0
            } else {
                self.prep.buffer_len()
            }
        ];
        let mut dbuf = vec![0.0f32; if direct || !self.want_dx { 0 } else { planes }];
        let mut dyq = vec![0.0f32; s.o * self.q_end];
        for (i, n) in range.enumerate() {
            let xn = &x[n * image..(n + 1) * image];
            self.spread(&dy[n * s.o * out_area..(n + 1) * s.o * out_area], &mut dyq);
            let input: &[f32] = match (self.want_dx, direct) {
                (true, _) => &[],
                (false, true) => xn,
                (false, false) => {
                    fill_buffer(xn, s, self.prep, &mut buf, self.fill_in_parallel);
                    &buf
                }
            };
            let grad: &mut [f32] = match (self.want_dx, direct) {
                (false, _) => &mut [],
                (true, true) => &mut dx[i * image..(i + 1) * image],
                (true, false) => {
                    dbuf.iter_mut().for_each(|v| *v = 0.0);
                    &mut dbuf
                }
            };
            entries(self, input, &dyq, grad, &mut dw);
            if self.want_dx && !direct {
                self.fold(&dbuf, &mut dx[i * image..(i + 1) * image]);
            }
        }
        dw
    }

    /// One image's `dy` `[o, ho, wo]` onto the flat positions `[o, q_end]`
    /// (the positions past each row's end stay zero).
    fn spread(&self, dy: &[f32], dyq: &mut [f32]) {
        let [ho, wo] = self.s.out_hw;
        let wq = self.prep.wq();
        for o in 0..self.s.o {
            for oy in 0..ho {
                let src = &dy[(o * ho + oy) * wo..(o * ho + oy + 1) * wo];
                let at = o * self.q_end + oy * wq;
                dyq[at..at + wo].copy_from_slice(src);
            }
        }
    }

    /// The padded buffer's gradient folded back into one image's `dX`
    /// (the inverse of `fill_buffer`'s placement; padding dropped).
    fn fold(&self, dbuf: &[f32], dx: &mut [f32]) {
        let s = &self.s;
        let [h, w] = s.hw;
        let [sy, sx] = s.stride;
        let (pt, pl) = (s.padding[0].0, s.padding[1].0);
        let (hq, wq, plane) = (self.prep.hq(), self.prep.wq(), self.prep.plane());
        for c in 0..s.c {
            for y in 0..h {
                let yy = y + pt;
                let row = c * plane + (yy % sy) * sx * hq * wq + (yy / sy) * wq;
                for xx in 0..w {
                    let xp = xx + pl;
                    dx[(c * h + y) * w + xx] = dbuf[row + (xp % sx) * hq * wq + xp / sx];
                }
            }
        }
    }
}

/// Every entry of one image: `grad[off_e..] += w_e·dyq[o]` (computing
/// `dX`), else `dw[e] += dyq[o]·input[off_e..]` ([`weight_grads`]).
#[macerator::with_simd]
fn entries<'a, S: Simd>(job: &Job<'a>, input: &[f32], dyq: &[f32], grad: &mut [f32], dw: &mut [f32]) {
    let q = job.q_end;
    for o in 0..job.s.o {
        let dyo = &dyq[o * q..(o + 1) * q];
        if dyo.iter().all(|v| *v == 0.0) {
            continue;
        }
        let entries = job.row_ptr[o] as usize..job.row_ptr[o + 1] as usize;
        if !job.want_dx {
            weight_grads(dyo, input, &job.offs[entries.clone()], &mut dw[entries]);
            continue;
        }
        for e in entries {
            let (off, w) = (job.offs[e] as usize, job.vals[e]);
            for (g, d) in grad[off..off + q].iter_mut().zip(dyo) {
                *g = w.mul_add(*d, *g);
            }
        }
    }
}

/// `dw[k] += dyo · input[offs[k]..][..dyo.len()]` for every entry `k` of one
/// output channel: four at a time on AVX-512 or AVX2 (each load of `dyo`
/// feeds four entries), one at a time otherwise.
fn weight_grads(dyo: &[f32], input: &[f32], offs: &[u32], dw: &mut [f32]) {
    let q = dyo.len();
    let strip = |k: usize| &input[offs[k] as usize..offs[k] as usize + q];
    let mut k = 0;
    #[cfg(target_arch = "x86_64")]
    if super::avx2::available() {
        let wide = super::avx512::available();
        while k + 4 <= offs.len() {
            let strips = [strip(k), strip(k + 1), strip(k + 2), strip(k + 3)];
            // SAFETY: the CPU has AVX-512F, or AVX2 and FMA (checked above); each strip holds `q` entries.
            let d = unsafe {
                if wide {
                    super::avx512::dot4(dyo, strips)
                } else {
                    super::avx2::dot4(dyo, strips)
                }
            };
            for (j, v) in d.into_iter().enumerate() {
                dw[k + j] += v;
            }
            k += 4;
        }
    }
    for k in k..offs.len() {
        dw[k] += dot(dyo, strip(k));
    }
}
