//! Direct sparse convolution (Park et al., ICLR 2017, "Faster CNNs with direct
//! sparse convolutions"; the pixel-strip micro-kernel of Elsen et al., CVPR
//! 2020, "Fast Sparse ConvNets"), in CHW layout with no im2col.
//!
//! The input image is copied once into a zero-padded buffer split into
//! `stride_y × stride_x` phase planes of `Hq × Wq`, so that for every nonzero
//! `(channel c, kernel row ky, kernel column kx)` the input it multiplies is a
//! contiguous run starting at one offset:
//! `out[o][oy·Wq + ox] += w · buf[off(c, ky, kx) + oy·Wq + ox]`.
//! A 1×1 stride-1 unpadded convolution (a `[Cout sparse] × [Cin, HW]` matrix
//! product) reads the input in place: `off = c·HW`.
//!
//! Output positions are walked as one flat range `q = oy·Wq + ox` (the
//! `Wq − Wo` positions past each row's end are computed and dropped), in
//! chunks of `8·V` pixels (`V` ≤ 12 vector registers of accumulators, chosen
//! per call from the image size so small 7×7 and 14×14 layers are not padded
//! to a fixed strip): per output channel the accumulators start at the bias,
//! each nonzero adds a broadcast weight times `8·V` contiguous inputs, and the
//! activation is applied when the chunk is stored. When reading in place, the
//! last chunk is moved back to end exactly at the last pixel (it overlaps the
//! chunk before it and stores only its new pixels), so no read passes the
//! input's end. Groups are folded into the channel index.
//!
//! The per-nonzero input offsets and the chunk layout depend only on the
//! input's shape; they are computed once per plan and shape and cached.

// `S` picks the instruction set a `with_simd` body is compiled for; the
// fixed-width index loops are what LLVM vectorises.
#![allow(clippy::extra_unused_type_parameters, clippy::needless_range_loop)]

use std::borrow::Cow;
use std::sync::Arc;

use macerator::Simd;

use super::{SharedOut, TASKS_PER_THREAD, balanced_ranges, even_ranges, for_ranges};
use crate::activation::Activation;
use crate::plan::PlanData;

/// Most accumulator vectors (8 floats each) per chunk.
const MAX_V: usize = 12;

/// Shapes and options of one convolution call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// One chunk of output positions: `[q0, q0 + 8·v)`, and where its real pixels go.
#[derive(Debug)]
struct Chunk {
    q0: usize,
    v: usize,
    /// `(offset in chunk, output pixel, length)` runs to store.
    runs: Vec<(usize, usize, usize)>,
}

/// What one input shape needs, cached per plan.
#[derive(Debug)]
pub struct ConvPrep {
    /// The shape it was made for (ignoring the batch size).
    key: ConvShape,
    /// Input read in place (1×1, stride 1, no padding, at least 8 pixels).
    direct: bool,
    hq: usize,
    wq: usize,
    plane: usize,
    buf_len: usize,
    /// Input offset of every CSR entry.
    offs: Vec<u32>,
    /// The largest offset.
    max_off: usize,
    chunks: Vec<Chunk>,
}

impl ConvPrep {
    /// Input offset of every CSR entry.
    pub(crate) fn offsets(&self) -> &[u32] {
        &self.offs
    }

    /// Whether the input is read in place (no padded buffer).
    pub(crate) fn is_direct(&self) -> bool {
        self.direct
    }

    /// Rows of a phase plane.
    pub(crate) fn hq(&self) -> usize {
        self.hq
    }

    /// Columns of a phase plane (the stride of the flat output positions).
    pub(crate) fn wq(&self) -> usize {
        self.wq
    }

    /// Floats per channel in the padded buffer (all phase planes).
    pub(crate) fn plane(&self) -> usize {
        self.plane
    }

    /// The padded buffer's length, slack included.
    pub(crate) fn buffer_len(&self) -> usize {
        self.buf_len
    }
}

impl ConvShape {
    fn key(&self) -> ConvShape {
        ConvShape { n: 0, ..*self }
    }

    /// Whether the input can be read in place (1×1, stride 1, no padding).
    fn in_place(&self) -> bool {
        self.kernel == [1, 1]
            && self.stride == [1, 1]
            && self.padding == [(0, 0), (0, 0)]
            && self.hw[0] * self.hw[1] >= 8
    }

    fn prepare(&self, plan: &PlanData) -> ConvPrep {
        let [sy, sx] = self.stride;
        let direct = self.in_place();
        let (hq, wq) = if direct {
            (self.hw[0], self.hw[1])
        } else {
            let hp = self.hw[0] + self.padding[0].0 + self.padding[0].1;
            let wp = self.hw[1] + self.padding[1].0 + self.padding[1].1;
            (hp.div_ceil(sy), wp.div_ceil(sx))
        };
        let plane = if direct { hq * wq } else { sy * sx * hq * wq };
        let q_end = self.out_hw[0].saturating_sub(1) * wq + self.out_hw[1];
        let chunks = if direct {
            direct_chunks(q_end)
        } else {
            padded_chunks(q_end, wq, self.out_hw[1])
        };
        let reach = chunks.iter().map(|c| c.q0 + 8 * c.v).max().unwrap_or(0);
        let kofs: Vec<usize> = (0..self.kernel[0] * self.kernel[1])
            .map(|p| {
                let (ky, kx) = (p / self.kernel[1], p % self.kernel[1]);
                let (y, x) = (ky * self.dilation[0], kx * self.dilation[1]);
                ((y % sy) * sx + x % sx) * hq * wq + (y / sy) * wq + x / sx
            })
            .collect();
        let offs = plan.conv_index().map_or_else(Vec::new, |ci| {
            ci.chan
                .iter()
                .zip(&ci.kpos)
                .map(|(&c, &p)| (c as usize * plane + kofs[p as usize]) as u32)
                .collect()
        });
        ConvPrep {
            key: self.key(),
            max_off: offs.iter().copied().max().unwrap_or(0) as usize,
            direct,
            hq,
            wq,
            plane,
            buf_len: self.c * plane + reach + wq,
            offs,
            chunks,
        }
    }
}

/// Chunks over an unpadded `q_end`-pixel image read in place: equal chunks of
/// up to 12 vectors, then one chunk moved back to end at `q_end` (`q_end >= 8`).
fn direct_chunks(q_end: usize) -> Vec<Chunk> {
    let v = (q_end / 8).clamp(1, MAX_V);
    let w = 8 * v;
    let full = q_end / w;
    let mut chunks: Vec<Chunk> = (0..full)
        .map(|i| Chunk {
            q0: i * w,
            v,
            runs: vec![(0, i * w, w)],
        })
        .collect();
    let rest = q_end - full * w;
    if rest > 0 {
        let vt = rest.div_ceil(8);
        let q0 = q_end - 8 * vt;
        let new = full * w;
        chunks.push(Chunk {
            q0,
            v: vt,
            runs: vec![(new - q0, new, rest)],
        });
    }
    chunks
}

/// Chunks over a padded buffer (reads may pass `q_end`: the buffer has slack):
/// as few chunks as 12-vector chunks need, each as narrow as that allows.
fn padded_chunks(q_end: usize, wq: usize, wo: usize) -> Vec<Chunk> {
    let count = q_end.div_ceil(8 * MAX_V).max(1);
    let v = q_end.div_ceil(count).div_ceil(8).max(1);
    (0..q_end.div_ceil(8 * v))
        .map(|i| {
            let (q0, q1) = (i * 8 * v, ((i + 1) * 8 * v).min(q_end));
            let mut runs = Vec::new();
            let mut q = q0;
            while q < q1 {
                let (oy, ox) = (q / wq, q % wq);
                if ox >= wo {
                    q = (oy + 1) * wq;
                    continue;
                }
                let len = (wo - ox).min(q1 - q);
                runs.push((q - q0, oy * wo + ox, len));
                q += len;
            }
            Chunk { q0, v, runs }
        })
        .collect()
}

/// The cached preparation of `plan` for shape `s`.
pub(crate) fn prepared(plan: &PlanData, s: &ConvShape) -> Arc<ConvPrep> {
    let mut cache = plan.conv_prep.lock().unwrap_or_else(|p| p.into_inner());
    match cache.as_ref() {
        Some(p) if p.key == s.key() => p.clone(),
        _ => {
            let p = Arc::new(s.prepare(plan));
            *cache = Some(p.clone());
            p
        }
    }
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
    let csr = plan.csr();
    let out_area = s.out_hw[0] * s.out_hw[1];
    let image = s.c * s.hw[0] * s.hw[1];
    assert!(
        x.len() >= s.n * image && out.len() >= s.n * s.o * out_area && bias.len() >= s.o && plan.rows == s.o,
        "conv::forward: buffers do not fit the shape {s:?}"
    );
    let prep = prepared(plan, &s);
    let vals: Cow<[f32]> = match &csr.perm {
        None => Cow::Borrowed(&values[..csr.nnz()]),
        Some(_) => Cow::Owned((0..csr.nnz()).map(|e| values[csr.value_of(e)]).collect()),
    };
    let relu = act == Activation::Relu;
    let pool_threads = rayon::current_num_threads().max(1);
    let work = csr.nnz() * 8 * prep.chunks.iter().map(|c| c.v).sum::<usize>();
    // A batch of at least two images per thread: whole images per task (one
    // fork and join per call, each task with its own padded buffer); else the
    // images one after the other, each split over the threads.
    let by_image = pool_threads > 1 && s.n >= 2 * pool_threads && work.saturating_mul(s.n) >= 1 << 16;
    let threads = if by_image || work < 1 << 16 { 1 } else { pool_threads };
    // Many chunks: split them (each task streams all channels over its chunks,
    // the chunk's input strip stays in cache); few: split the channels by nnz.
    let parts = TASKS_PER_THREAD * threads;
    let (chunk_ranges, chan_ranges) = if prep.chunks.len() >= parts {
        (even_ranges(prep.chunks.len(), parts), std::iter::once(0..s.o).collect())
    } else {
        (
            std::iter::once(0..prep.chunks.len()).collect(),
            balanced_ranges(&csr.row_ptr, if threads == 1 { 1 } else { parts }),
        )
    };
    let tasks: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> = chunk_ranges
        .iter()
        .flat_map(|q| chan_ranges.iter().map(move |o| (q.clone(), o.clone())))
        .collect();
    let out_all = SharedOut(out.as_mut_ptr());
    // image `n` from its (padded or in-place) input, its tasks in parallel or not
    let run = |buf: &[f32], n: usize, parallel: bool| {
        let job = Job {
            row_ptr: &csr.row_ptr,
            offs: &prep.offs,
            vals: &vals,
            bias,
            buf,
            max_off: prep.max_off,
            out: out_all.offset(n * s.o * out_area),
            out_area,
            relu,
        };
        let task = |t: usize| {
            let (chunks, chans) = tasks[t].clone();
            for c in &prep.chunks[chunks] {
                run_chunk(&job, c, chans.clone());
            }
        };
        if parallel {
            let task_ranges: Vec<_> = (0..tasks.len()).map(|t| t..t + 1).collect();
            for_ranges(&task_ranges, |t| task(t.start));
        } else {
            (0..tasks.len()).for_each(task);
        }
    };
    let images = |range: std::ops::Range<usize>, parallel: bool| {
        if prep.direct {
            range.for_each(|n| run(&x[n * image..(n + 1) * image], n, parallel));
            return;
        }
        with_scratch(prep.buf_len, |buf| {
            for n in range {
                fill_buffer(&x[n * image..(n + 1) * image], &s, &prep, buf, parallel);
                run(buf, n, parallel);
            }
        });
    };
    if by_image {
        for_ranges(&even_ranges(s.n, TASKS_PER_THREAD * pool_threads), |r| images(r, false));
    } else {
        images(0..s.n, true);
    }
}

/// `f` on `len` floats of this thread's scratch buffer (reused across calls,
/// so no page faults per call; it holds what the last call left), or of a
/// fresh one while that is in use.
fn with_scratch(len: usize, f: impl FnOnce(&mut [f32])) {
    SCRATCH.with(|cell| {
        let mut fresh = Vec::new();
        let mut guard = cell.try_borrow_mut();
        let buf = match guard.as_mut() {
            Ok(b) => &mut **b,
            Err(_) => &mut fresh,
        };
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        f(&mut buf[..len]);
    });
}

/// Copies one image into the padded phase planes (zeros around it and in the slack).
/// Large buffers are filled by channel in parallel when `parallel`.
pub(crate) fn fill_buffer(x: &[f32], s: &ConvShape, p: &ConvPrep, buf: &mut [f32], parallel: bool) {
    let [h, w] = s.hw;
    let [sy, sx] = s.stride;
    let (pt, pl) = (s.padding[0].0, s.padding[1].0);
    let (hq, wq) = (p.hq, p.wq);
    buf[s.c * p.plane..].iter_mut().for_each(|v| *v = 0.0);
    let fill = |c: usize, planes: &mut [f32]| {
        let xc = &x[c * h * w..(c + 1) * h * w];
        for py in 0..sy {
            for px in 0..sx {
                let ph = &mut planes[(py * sx + px) * hq * wq..(py * sx + px + 1) * hq * wq];
                for iy in 0..hq {
                    let row = &mut ph[iy * wq..(iy + 1) * wq];
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
    };
    let planes = &mut buf[..s.c * p.plane];
    if parallel && planes.len() >= 1 << 16 {
        let out = SharedOut(planes.as_mut_ptr());
        let ranges = even_ranges(s.c, TASKS_PER_THREAD * rayon::current_num_threads().max(1));
        for_ranges(&ranges, |cs| {
            for c in cs {
                // SAFETY: channel `c`'s plane lies within `planes` and belongs to this task alone.
                fill(c, unsafe { out.slice(c * p.plane, p.plane) });
            }
        });
    } else {
        planes.chunks_mut(p.plane).enumerate().for_each(|(c, pl)| fill(c, pl));
    }
}

/// Everything a chunk task reads, and where it writes.
struct Job<'a> {
    row_ptr: &'a [u32],
    offs: &'a [u32],
    vals: &'a [f32],
    bias: &'a [f32],
    buf: &'a [f32],
    /// The largest entry of `offs`.
    max_off: usize,
    out: SharedOut,
    out_area: usize,
    relu: bool,
}

/// Output channels `chans` on one chunk, with the accumulator width the chunk needs.
fn run_chunk(job: &Job<'_>, c: &Chunk, chans: std::ops::Range<usize>) {
    match c.v {
        1 => rows::<1>(job, c, chans),
        2 => rows::<2>(job, c, chans),
        3 => rows::<3>(job, c, chans),
        4 => rows::<4>(job, c, chans),
        5 => rows::<5>(job, c, chans),
        6 => rows::<6>(job, c, chans),
        7 => rows::<7>(job, c, chans),
        8 => rows::<8>(job, c, chans),
        9 => rows::<9>(job, c, chans),
        10 => rows::<10>(job, c, chans),
        11 => rows::<11>(job, c, chans),
        _ => rows::<12>(job, c, chans),
    }
}

/// Every channel of `chans` on one chunk of `8·V` pixels, in one dispatched call.
#[macerator::with_simd]
fn rows<'a, S: Simd, const V: usize>(job: &Job<'a>, c: &Chunk, chans: std::ops::Range<usize>) {
    assert!(
        job.max_off + c.q0 + 8 * V <= job.buf.len(),
        "conv chunk would read past the input"
    );
    for o in chans {
        let (a, b) = (job.row_ptr[o] as usize, job.row_ptr[o + 1] as usize);
        let acc = strip::<V>(&job.offs[a..b], &job.vals[a..b], job.buf, c.q0, job.bias[o]);
        for &(from, to, len) in &c.runs {
            // SAFETY: (o, pixels to..to+len) belong to this task only and lie inside the output.
            let dst = unsafe { job.out.slice(o * job.out_area + to, len) };
            let src = &acc[from..from + len];
            if job.relu {
                dst.iter_mut().zip(src).for_each(|(d, v)| *d = v.max(0.0));
            } else {
                dst.copy_from_slice(src);
            }
        }
    }
}

/// `bias + Σ_e vals[e]·buf[offs[e] + q0 ..][..8·V]` (the accumulators stay in registers).
/// The caller checks that every read is inside `buf`.
#[inline(always)]
fn strip<const V: usize>(offs: &[u32], vals: &[f32], buf: &[f32], q0: usize, bias: f32) -> Vec8s<V> {
    let mut a = Vec8s::<V>::splat(bias);
    for (&off, &w) in offs.iter().zip(vals) {
        let start = off as usize + q0;
        for i in 0..V {
            // SAFETY: off <= max_off and max_off + q0 + 8·V <= buf.len() (checked by the caller).
            let src: &[f32; 8] = unsafe { &*(buf.as_ptr().add(start + 8 * i) as *const [f32; 8]) };
            for t in 0..8 {
                a.0[i][t] = w.mul_add(src[t], a.0[i][t]);
            }
        }
    }
    a
}

/// `V` vectors of 8 accumulators, readable as one slice of `8·V`.
struct Vec8s<const V: usize>([[f32; 8]; V]);

impl<const V: usize> Vec8s<V> {
    fn splat(v: f32) -> Self {
        Self([[v; 8]; V])
    }
}

impl<const V: usize> std::ops::Index<std::ops::Range<usize>> for Vec8s<V> {
    type Output = [f32];
    fn index(&self, r: std::ops::Range<usize>) -> &[f32] {
        &self.0.as_flattened()[r]
    }
}
