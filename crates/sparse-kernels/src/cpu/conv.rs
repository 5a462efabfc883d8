//! Direct sparse convolution (Park et al., ICLR 2017, "Faster CNNs with direct
//! sparse convolutions"; the pixel-strip micro-kernel of Elsen et al., CVPR
//! 2020, "Fast Sparse ConvNets"), in CHW layout with no im2col.
//!
//! The input image is copied once into a zero-padded buffer split into
//! `stride_y × stride_x` phase planes of `Hq × Wq`, so that for every nonzero
//! `(channel c, kernel row ky, kernel column kx)` the input it multiplies is a
//! contiguous run starting at one offset:
//! `out[o][oy·Wq + ox] += w · buf[off(c, ky, kx) + oy·Wq + ox]`.
//! Output positions are walked as one flat range `q = oy·Wq + ox` (the
//! `Wq − Wo` positions past each row's end are computed and dropped), in strips
//! of 64: per output channel, 64 accumulators in registers start at the bias,
//! each nonzero adds a broadcast weight times 64 contiguous inputs, and the
//! activation is applied when the strip is stored. Groups are folded into the
//! channel index; 1×1 convolutions are the same kernel with one offset per
//! channel (a pixel-strip SpMM).

// `S` picks the instruction set a `with_simd` body is compiled for; the
// fixed-width index loops are what LLVM vectorises.
#![allow(clippy::extra_unused_type_parameters, clippy::needless_range_loop)]

use macerator::Simd;
use rayon::prelude::*;

use super::SharedOut;
use crate::activation::Activation;
use crate::plan::PlanData;

/// Output pixels per register strip.
const STRIP: usize = 64;

/// Shapes and options of one convolution call.
#[derive(Clone, Copy, Debug)]
pub struct ConvShape {
    /// Images.
    pub n: usize,
    /// Input channels.
    pub c: usize,
    /// Input height and width.
    pub hw: [usize; 2],
    /// Output channels.
    pub o: usize,
    /// Output height and width.
    pub out_hw: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Padding `(begin, end)` per dimension.
    pub padding: [(usize, usize); 2],
    /// Dilation.
    pub dilation: [usize; 2],
    /// Kernel height and width.
    pub kernel: [usize; 2],
}

struct Geometry {
    hq: usize,
    wq: usize,
    plane: usize,
    strips: usize,
    buf_len: usize,
}

impl ConvShape {
    fn geometry(&self) -> Geometry {
        let [sy, sx] = self.stride;
        let hp = self.hw[0] + self.padding[0].0 + self.padding[0].1;
        let wp = self.hw[1] + self.padding[1].0 + self.padding[1].1;
        let (hq, wq) = (hp.div_ceil(sy), wp.div_ceil(sx));
        let plane = sy * sx * hq * wq;
        let q = (self.out_hw[0].saturating_sub(1)) * wq + self.out_hw[1];
        let strips = q.div_ceil(STRIP);
        Geometry {
            hq,
            wq,
            plane,
            strips,
            buf_len: self.c * plane + strips * STRIP + wq,
        }
    }

    /// Offset of kernel position `p` inside a channel's planes.
    fn kernel_offset(&self, g: &Geometry, p: usize) -> usize {
        let [sy, sx] = self.stride;
        let (ky, kx) = (p / self.kernel[1], p % self.kernel[1]);
        let (y, x) = (ky * self.dilation[0], kx * self.dilation[1]);
        ((y % sy) * sx + x % sx) * g.hq * g.wq + (y / sy) * g.wq + x / sx
    }
}

/// Whether the input can be read in place (1×1, stride 1, no padding): no copy.
fn in_place(s: &ConvShape) -> bool {
    s.kernel == [1, 1] && s.stride == [1, 1] && s.padding == [(0, 0), (0, 0)]
}

thread_local! {
    /// The padded input buffer, reused across calls (no page faults per call).
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `out: [n, o, ho, wo]` from `x: [n, c, h, w]` (both contiguous NCHW).
pub fn forward(
    plan: &PlanData,
    values: &[f32],
    x: &[f32],
    s: ConvShape,
    bias: &[f32],
    act: Activation,
    out: &mut [f32],
) {
    let direct = in_place(&s);
    let mut g = s.geometry();
    if direct {
        (g.hq, g.wq, g.plane) = (s.hw[0], s.hw[1], s.hw[0] * s.hw[1]);
    }
    let csr = plan.csr();
    let Some(ci) = plan.conv_index() else {
        return;
    };
    let kofs: Vec<usize> = (0..s.kernel[0] * s.kernel[1]).map(|p| s.kernel_offset(&g, p)).collect();
    let offs: Vec<u32> = ci
        .chan
        .iter()
        .zip(&ci.kpos)
        .map(|(&c, &p)| (c as usize * g.plane + kofs[p as usize]) as u32)
        .collect();
    let vals: Vec<f32> = (0..csr.nnz()).map(|e| values[csr.value_of(e)]).collect();
    let segments = strip_segments(&s, &g);
    let q_end = (s.out_hw[0].saturating_sub(1)) * g.wq + s.out_hw[1];
    let out_area = s.out_hw[0] * s.out_hw[1];
    let threads = rayon::current_num_threads().max(1);
    let per_strip = (4 * threads).div_ceil(g.strips).max(1);
    let ochunk = s.o.div_ceil(per_strip).max(1);
    let tasks = s.o.div_ceil(ochunk) * g.strips;
    let relu = act == Activation::Relu;
    let image = s.c * s.hw[0] * s.hw[1];
    let mut run = |buf: &[f32], n: usize| {
        let on = SharedOut(out[n * s.o * out_area..(n + 1) * s.o * out_area].as_mut_ptr());
        (0..tasks).into_par_iter().for_each(|t| {
            let (oc, strip) = (t / g.strips, t % g.strips);
            let q0 = strip * STRIP;
            let width = if direct { STRIP.min(q_end - q0) } else { STRIP };
            let job = StripJob {
                row_ptr: &csr.row_ptr,
                offs: &offs,
                vals: &vals,
                bias,
                buf,
                q0,
                width,
                segments: &segments[strip],
                out: on,
                out_area,
                relu,
            };
            strip_rows(&job, oc * ochunk..((oc + 1) * ochunk).min(s.o));
        });
    };
    if direct {
        for n in 0..s.n {
            run(&x[n * image..(n + 1) * image], n);
        }
        return;
    }
    SCRATCH.with(|cell| {
        let mut fresh = Vec::new();
        let mut guard = cell.try_borrow_mut();
        let buf = match guard.as_mut() {
            Ok(b) => &mut **b,
            Err(_) => &mut fresh,
        };
        if buf.len() < g.buf_len {
            buf.resize(g.buf_len, 0.0);
        }
        let buf = &mut buf[..g.buf_len];
        for n in 0..s.n {
            fill_buffer(&x[n * image..(n + 1) * image], &s, &g, buf);
            run(buf, n);
        }
    });
}

/// Copies `act(src)` into `dst`.
#[inline(always)]
fn store(dst: &mut [f32], src: &[f32], relu: bool) {
    if relu {
        dst.iter_mut().zip(src).for_each(|(d, v)| *d = v.max(0.0));
    } else {
        dst.copy_from_slice(src);
    }
}

/// For every strip, the runs `(offset in strip, output pixel, length)` of real output pixels.
fn strip_segments(s: &ConvShape, g: &Geometry) -> Vec<Vec<(usize, usize, usize)>> {
    let [ho, wo] = s.out_hw;
    (0..g.strips)
        .map(|strip| {
            let (q0, q1) = (
                strip * STRIP,
                ((strip + 1) * STRIP).min(ho.saturating_sub(1) * g.wq + wo),
            );
            let mut runs = Vec::new();
            let mut q = q0;
            while q < q1 {
                let (oy, ox) = (q / g.wq, q % g.wq);
                if ox >= wo {
                    q = (oy + 1) * g.wq;
                    continue;
                }
                let len = (wo - ox).min(q1 - q);
                runs.push((q - q0, oy * wo + ox, len));
                q += len;
            }
            runs
        })
        .collect()
}

/// Copies one image into the padded phase planes.
fn fill_buffer(x: &[f32], s: &ConvShape, g: &Geometry, buf: &mut [f32]) {
    let [h, w] = s.hw;
    let [sy, sx] = s.stride;
    let (pt, pl) = (s.padding[0].0, s.padding[1].0);
    buf[s.c * g.plane..].iter_mut().for_each(|v| *v = 0.0);
    buf[..s.c * g.plane]
        .par_chunks_mut(g.plane)
        .enumerate()
        .for_each(|(c, planes)| {
            let xc = &x[c * h * w..(c + 1) * h * w];
            for py in 0..sy {
                for px in 0..sx {
                    let p = &mut planes[(py * sx + px) * g.hq * g.wq..(py * sx + px + 1) * g.hq * g.wq];
                    for iy in 0..g.hq {
                        let row = &mut p[iy * g.wq..(iy + 1) * g.wq];
                        let y = (iy * sy + py) as isize - pt as isize;
                        if y < 0 || y >= h as isize {
                            row.iter_mut().for_each(|v| *v = 0.0);
                            continue;
                        }
                        let xr = &xc[y as usize * w..(y as usize + 1) * w];
                        for (ix, v) in row.iter_mut().enumerate() {
                            let xx = (ix * sx + px) as isize - pl as isize;
                            *v = if xx >= 0 && xx < w as isize {
                                xr[xx as usize]
                            } else {
                                0.0
                            };
                        }
                    }
                }
            }
        });
}

/// One strip of output pixels for a range of output channels.
struct StripJob<'a> {
    row_ptr: &'a [u32],
    offs: &'a [u32],
    vals: &'a [f32],
    bias: &'a [f32],
    buf: &'a [f32],
    q0: usize,
    width: usize,
    segments: &'a [(usize, usize, usize)],
    out: SharedOut,
    out_area: usize,
    relu: bool,
}

/// Every channel of `rows` on one strip, in one dispatched call (the per-call
/// cost would otherwise dominate rows with few nonzeros).
#[macerator::with_simd]
fn strip_rows<'a, S: Simd>(job: &StripJob<'a>, rows: std::ops::Range<usize>) {
    for o in rows {
        let (a, b) = (job.row_ptr[o] as usize, job.row_ptr[o + 1] as usize);
        let mut acc = [job.bias[o]; STRIP];
        if job.width == STRIP {
            strip_body(&job.offs[a..b], &job.vals[a..b], job.buf, job.q0, &mut acc);
        } else {
            tail_body(&job.offs[a..b], &job.vals[a..b], job.buf, job.q0, job.width, &mut acc);
        }
        for &(from, to, len) in job.segments {
            // SAFETY: (o, pixels to..to+len) belong to this task only and lie inside the output.
            let dst = unsafe { job.out.slice(o * job.out_area + to, len) };
            store(dst, &acc[from..from + len], job.relu);
        }
    }
}

/// A partial strip of `width < STRIP` pixels (the end of an unpadded 1×1 input).
#[inline(always)]
fn tail_body(offs: &[u32], vals: &[f32], buf: &[f32], q0: usize, width: usize, acc: &mut [f32; STRIP]) {
    for (&off, &w) in offs.iter().zip(vals) {
        let start = off as usize + q0;
        for (a, x) in acc[..width].iter_mut().zip(&buf[start..start + width]) {
            *a = w.mul_add(*x, *a);
        }
    }
}

#[inline(always)]
fn strip_body(offs: &[u32], vals: &[f32], buf: &[f32], q0: usize, acc: &mut [f32; STRIP]) {
    let mut a = *acc;
    for (&off, &w) in offs.iter().zip(vals) {
        let start = off as usize + q0;
        let src: &[f32; STRIP] = buf[start..start + STRIP].try_into().expect("strip");
        for t in 0..STRIP {
            a[t] = w.mul_add(src[t], a[t]);
        }
    }
    *acc = a;
}
