//! Shared test helpers: the device from `SPARSEBURN_DEVICE`, random data,
//! masks under each pattern, and independent host references (f64 sums).
#![allow(dead_code)]

use burn::tensor::{Device, Tensor, TensorData};
use sparse_core::{BackendKind, Mask, Pattern, Rng, SparseLayer};

/// The device of the backend in `SPARSEBURN_DEVICE` (flex by default).
pub fn device() -> Device {
    BackendKind::from_env()
        .expect("SPARSEBURN_DEVICE names a backend")
        .device()
        .expect("backend compiled in")
}

/// Fewer property cases on wgpu (each op is a dispatch to lavapipe).
pub fn cases(n: u32) -> u32 {
    if std::env::var("SPARSEBURN_DEVICE").is_ok_and(|d| d == "wgpu") {
        n.div_ceil(3)
    } else {
        n
    }
}

/// `f` on a pool of two threads, so that the host kernels' split by thread
/// count is the same on every machine.
pub fn on_two_threads<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("a two-thread pool")
        .install(f)
}

/// Uniform values in [-1, 1).
pub fn rand(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.next_f32() * 2.0 - 1.0).collect()
}

/// A mask of `layer` under `pattern` keeping about `density` (`None` if it rounds to zero).
pub fn mask(layer: &SparseLayer, pattern: &Pattern, density: f64, rng: &mut Rng) -> Option<Mask> {
    let desired = (density * layer.numel() as f64).round() as usize;
    let count = pattern.feasible_count(layer, desired.max(1)).ok()?;
    Some(pattern.select(layer, &rng.scores(layer.numel()), count))
}

/// Host values of a tensor.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    sparse_core::host::to_vec(t).expect("read tensor")
}

/// A tensor of `dims` on `device`.
pub fn tensor<const D: usize>(v: Vec<f32>, dims: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v, dims), device)
}

/// `‖a − b‖₂ / ‖b‖₂` (0 when both are zero).
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let num: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    if den == 0.0 { num.sqrt() } else { (num / den).sqrt() }
}

/// `act(x·(W⊙M) + b)` with `W: [d_in, d_out]` in Burn layout, in f64.
pub fn linear_ref(x: &[f32], batch: usize, w: &[f32], mask: &Mask, bias: &[f32], relu: bool) -> Vec<f32> {
    let d_out = bias.len();
    let d_in = w.len() / d_out;
    let mut y = vec![0.0f32; batch * d_out];
    for b in 0..batch {
        for o in 0..d_out {
            let mut s = bias[o] as f64;
            for i in 0..d_in {
                if mask.get(i * d_out + o) {
                    s += x[b * d_in + i] as f64 * w[i * d_out + o] as f64;
                }
            }
            y[b * d_out + o] = if relu { s.max(0.0) as f32 } else { s as f32 };
        }
    }
    y
}

/// Convolution geometry for the reference.
#[derive(Clone, Copy, Debug)]
pub struct ConvCase {
    pub n: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub groups: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub hw: [usize; 2],
}

impl ConvCase {
    pub fn out_hw(&self) -> [usize; 2] {
        let o = |i: usize| {
            (self.hw[i] + 2 * self.padding[i] - self.dilation[i] * (self.kernel[i] - 1) - 1) / self.stride[i] + 1
        };
        [o(0), o(1)]
    }
}

/// Direct NCHW convolution with `W: [c_out, c_in/groups, kh, kw]` masked, in f64.
pub fn conv_ref(x: &[f32], c: &ConvCase, w: &[f32], mask: &Mask, bias: &[f32], relu: bool) -> Vec<f32> {
    let [ho, wo] = c.out_hw();
    let (cin_g, cout_g) = (c.c_in / c.groups, c.c_out / c.groups);
    let [kh, kw] = c.kernel;
    let mut y = vec![0.0f32; c.n * c.c_out * ho * wo];
    for n in 0..c.n {
        for o in 0..c.c_out {
            let g = o / cout_g;
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut s = bias[o] as f64;
                    for ci in 0..cin_g {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * c.stride[0] + ky * c.dilation[0]) as isize - c.padding[0] as isize;
                                let ix = (ox * c.stride[1] + kx * c.dilation[1]) as isize - c.padding[1] as isize;
                                if iy < 0 || ix < 0 || iy >= c.hw[0] as isize || ix >= c.hw[1] as isize {
                                    continue;
                                }
                                let f = ((o * cin_g + ci) * kh + ky) * kw + kx;
                                if !mask.get(f) {
                                    continue;
                                }
                                let xi =
                                    ((n * c.c_in + g * cin_g + ci) * c.hw[0] + iy as usize) * c.hw[1] + ix as usize;
                                s += x[xi] as f64 * w[f] as f64;
                            }
                        }
                    }
                    y[((n * c.c_out + o) * ho + oy) * wo + ox] = if relu { s.max(0.0) as f32 } else { s as f32 };
                }
            }
        }
    }
    y
}
