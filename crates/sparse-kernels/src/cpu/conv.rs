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
    let g = s.geometry();
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
    let qmap = output_map(&s, &g);
    let out_area = s.out_hw[0] * s.out_hw[1];
    let threads = rayon::current_num_threads().max(1);
    let per_strip = (4 * threads).div_ceil(g.strips).max(1);
    let ochunk = s.o.div_ceil(per_strip).max(1);
    let tasks = s.o.div_ceil(ochunk) * g.strips;
    let mut buf = vec![0.0f32; g.buf_len];
    for n in 0..s.n {
        fill_buffer(
            &x[n * s.c * s.hw[0] * s.hw[1]..(n + 1) * s.c * s.hw[0] * s.hw[1]],
            &s,
            &g,
            &mut buf,
        );
        let on = SharedOut(out[n * s.o * out_area..(n + 1) * s.o * out_area].as_mut_ptr());
        (0..tasks).into_par_iter().for_each(|t| {
            let (oc, strip) = (t / g.strips, t % g.strips);
            let q0 = strip * STRIP;
            for o in oc * ochunk..((oc + 1) * ochunk).min(s.o) {
                let (a, b) = (csr.row_ptr[o] as usize, csr.row_ptr[o + 1] as usize);
                let mut acc = [bias[o]; STRIP];
                strip_kernel(&offs[a..b], &vals[a..b], &buf, q0, &mut acc);
                let map = &qmap[q0..q0 + STRIP];
                for (m, v) in map.iter().zip(acc) {
                    if *m != u32::MAX {
                        // SAFETY: (o, m) is written by this task only; m < out_area.
                        unsafe { on.write(o * out_area + *m as usize, act.apply(v)) };
                    }
                }
            }
        });
    }
}

/// For every flat position of the strips, its output pixel (or `u32::MAX`).
fn output_map(s: &ConvShape, g: &Geometry) -> Vec<u32> {
    let mut map = vec![u32::MAX; g.strips * STRIP];
    for oy in 0..s.out_hw[0] {
        for ox in 0..s.out_hw[1] {
            map[oy * g.wq + ox] = (oy * s.out_hw[1] + ox) as u32;
        }
    }
    map
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

#[macerator::with_simd]
fn strip_kernel<S: Simd>(offs: &[u32], vals: &[f32], buf: &[f32], q0: usize, acc: &mut [f32; STRIP]) {
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
