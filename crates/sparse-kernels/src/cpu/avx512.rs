//! AVX-512 micro-kernels (x86-64) for the batch-1 SELL-16 products: one
//! 16-lane register holds a whole SELL group's entry, so each entry is one
//! hardware gather (`vgatherdps`) of `x` for constant fan-in, or one
//! in-register lookup (`vpermilps` over the four `x` of an N:4 column group
//! broadcast to every 128-bit lane) for N:4, and one FMA.
//!
//! Where the AVX2 kernels ([`super::avx2`]) assemble `x` from scalar loads
//! (the AVX2 gather was slower on the Zen 3 VM), Intel's AVX-512 gather is
//! not: measured with `kernels -- linear-3072` on the 2-vCPU Emerald Rapids
//! VM (see `docs/sparse-execution.md`). Run-time CPU check: [`available`].

use std::arch::x86_64::*;

/// Whether the AVX-512 kernels run: this CPU has AVX-512F (checked at run
/// time) and [`super::limit_kernels`] allows them.
#[inline]
pub fn available() -> bool {
    super::kernel_limit() == super::KernelLevel::Fastest && is_x86_feature_detected!("avx512f")
}

/// Whether the gather kernel ([`sell_group_u16`]) runs: [`available`] on an
/// Intel CPU. It was measured faster only there; on AMD's Zen cores the
/// hardware gather was slower than scalar loads (Zen 3 with AVX2, Zen 5 in
/// `shared/notes/sparse-kernels.md`), so they keep the AVX2 kernel.
pub fn gather_pays() -> bool {
    static INTEL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    available()
        && *INTEL.get_or_init(|| {
            let id = __cpuid(0);
            [id.ebx, id.edx, id.ecx]
                .iter()
                .flat_map(|r| r.to_le_bytes())
                .eq(*b"GenuineIntel")
        })
}

/// The 16 lanes of `v` as an array.
#[inline(always)]
unsafe fn lanes(v: __m512) -> [f32; 16] {
    let mut out = [0.0f32; 16];
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), v) };
    out
}

/// One SELL-16 group with `u16` columns: `acc[l] = Σ_j vals[j·16 + l]·x[idx[j·16 + l]]`,
/// one gather per entry, four independent accumulators.
///
/// # Safety
/// [`available`] must be true ([`gather_pays`] says when it is worth it);
/// `vals` and `idx` hold `k·16` entries; every index < `x.len()`.
#[target_feature(enable = "avx512f")]
pub unsafe fn sell_group_u16(vals: &[f32], idx: &[u16], x: &[f32], k: usize) -> [f32; 16] {
    debug_assert!(vals.len() >= k * 16 && idx.len() >= k * 16);
    let (v, ix, xp) = (vals.as_ptr(), idx.as_ptr(), x.as_ptr());
    let mut a = [_mm512_setzero_ps(); 4];
    // SAFETY (all loads): entry j's 16 values and indices lie in the first k·16,
    // and the gathered indices are < x.len() (the caller's contract).
    let entry = |j: usize, acc: __m512| unsafe {
        let p = j * 16;
        let i = _mm512_cvtepu16_epi32(_mm256_loadu_si256(ix.add(p) as *const __m256i));
        let xg = _mm512_i32gather_ps::<4>(i, xp);
        _mm512_fmadd_ps(_mm512_loadu_ps(v.add(p)), xg, acc)
    };
    let mut j = 0;
    while j + 4 <= k {
        for (t, acc) in a.iter_mut().enumerate() {
            *acc = entry(j + t, *acc);
        }
        j += 4;
    }
    while j < k {
        a[0] = entry(j, a[0]);
        j += 1;
    }
    unsafe { lanes(_mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3]))) }
}

/// One SELL-16 group of an N:4 matrix, as [`super::avx2::sell_group_n4`] (the
/// same packed offsets: lane `l`'s two bits at `2·l` of the entry's word), in
/// one 16-lane register: the four `x` of a column group broadcast to every
/// 128-bit lane, the word broadcast and shifted per lane, and `vpermilps`
/// (the low two bits of each lane) picks each lane's input.
///
/// # Safety
/// [`available`] must be true; `vals` holds `k·16` entries and `packed` `k`
/// words, `k` a multiple of `n`, and `4·k/n <= x.len()`.
#[target_feature(enable = "avx512f")]
pub unsafe fn sell_group_n4(vals: &[f32], packed: &[u32], x: &[f32], k: usize, n: usize) -> [f32; 16] {
    debug_assert!(vals.len() >= k * 16 && packed.len() >= k && 4 * (k / n) <= x.len());
    let (v, pk, xp) = (vals.as_ptr(), packed.as_ptr(), x.as_ptr());
    let shifts = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let mut a = [_mm512_setzero_ps(); 2];
    // SAFETY (all loads): group q's four inputs are < 4·k/n <= x.len(); entry j < k.
    unsafe {
        for q in 0..k / n {
            let xq = _mm512_broadcast_f32x4(_mm_loadu_ps(xp.add(4 * q)));
            for t in 0..n {
                let j = q * n + t;
                let sel = _mm512_srlv_epi32(_mm512_set1_epi32(*pk.add(j) as i32), shifts);
                let xs = _mm512_permutevar_ps(xq, sel);
                a[t & 1] = _mm512_fmadd_ps(_mm512_loadu_ps(v.add(j * 16)), xs, a[t & 1]);
            }
        }
        lanes(_mm512_add_ps(a[0], a[1]))
    }
}

/// `[a·b[0], a·b[1], a·b[2], a·b[3]]` over `a.len()` entries, as
/// [`super::avx2::dot4`] in 16-lane registers, the tail in one masked load
/// (the convolution's weight gradient over short output strips: 7×7 and 4×4
/// layers leave most of an 8-lane tail to scalar code in the AVX2 twin).
///
/// # Safety
/// [`available`] must be true; every `b[k]` holds at least `a.len()` entries.
#[target_feature(enable = "avx512f")]
pub unsafe fn dot4(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
    let n = a.len();
    assert!(b.iter().all(|s| s.len() >= n), "dot4: a strip is shorter than `a`");
    let pa = a.as_ptr();
    let pb = b.map(|s| s.as_ptr());
    let mut acc = [[_mm512_setzero_ps(); 2]; 4];
    let mut i = 0;
    // SAFETY (all loads): i + 32 ≤ n, then i + 16 ≤ n, then the mask covers only i..n.
    unsafe {
        while i + 32 <= n {
            let (x0, x1) = (_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pa.add(i + 16)));
            for k in 0..4 {
                acc[k][0] = _mm512_fmadd_ps(x0, _mm512_loadu_ps(pb[k].add(i)), acc[k][0]);
                acc[k][1] = _mm512_fmadd_ps(x1, _mm512_loadu_ps(pb[k].add(i + 16)), acc[k][1]);
            }
            i += 32;
        }
        if i + 16 <= n {
            let x = _mm512_loadu_ps(pa.add(i));
            for k in 0..4 {
                acc[k][0] = _mm512_fmadd_ps(x, _mm512_loadu_ps(pb[k].add(i)), acc[k][0]);
            }
            i += 16;
        }
        if i < n {
            let m: __mmask16 = ((1u32 << (n - i)) - 1) as u16; // n − i < 16
            let x = _mm512_maskz_loadu_ps(m, pa.add(i));
            for k in 0..4 {
                acc[k][1] = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(m, pb[k].add(i)), acc[k][1]);
            }
        }
        acc.map(|[p, q]| _mm512_reduce_add_ps(_mm512_add_ps(p, q)))
    }
}

#[cfg(test)]
mod tests {
    /// The gather kernel equals a scalar sum on any AVX-512 CPU (the SELL
    /// kernels call it only on Intel ones, so the host-kernel test alone would
    /// not reach it elsewhere).
    #[test]
    fn the_gather_kernel_equals_a_scalar_sum() {
        if !is_x86_feature_detected!("avx512f") {
            return;
        }
        let (k, cols) = (37, 3000);
        let x: Vec<f32> = (0..cols).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let idx: Vec<u16> = (0..k * 16).map(|e| ((e * 2654435761usize) % cols) as u16).collect();
        let vals: Vec<f32> = (0..k * 16).map(|e| ((e * 104729) % 997) as f32 / 498.0 - 1.0).collect();
        // SAFETY: AVX-512F checked; k·16 entries; every index < cols.
        let got = unsafe { super::sell_group_u16(&vals, &idx, &x, k) };
        for (l, g) in got.iter().enumerate() {
            let want: f64 = (0..k)
                .map(|j| vals[j * 16 + l] as f64 * x[idx[j * 16 + l] as usize] as f64)
                .sum();
            assert!(
                (*g as f64 - want).abs() <= 1e-4 * want.abs().max(1.0),
                "lane {l}: {g} vs {want}"
            );
        }
    }

    /// Four dot products over every length class: the 32-wide loop, the
    /// 16-wide step and each masked tail, reading no entry past `a.len()`.
    #[test]
    fn dot4_equals_scalar_dot_products_at_every_length() {
        if !is_x86_feature_detected!("avx512f") {
            return;
        }
        let v = |seed: usize, n: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (((i + 1) * (seed + 3) * 7919) % 2001) as f32 / 1000.0 - 1.0)
                .collect()
        };
        for n in 0..80 {
            let a = v(0, n);
            // the strips are longer than `a`: entries past n must not count
            let b: Vec<Vec<f32>> = (1..5).map(|s| v(s, n + 9)).collect();
            // SAFETY: AVX-512F checked; every strip holds at least n entries.
            let got = unsafe { super::dot4(&a, [&b[0], &b[1], &b[2], &b[3]]) };
            for k in 0..4 {
                let want: f64 = a.iter().zip(&b[k]).map(|(x, y)| *x as f64 * *y as f64).sum();
                assert!(
                    (got[k] as f64 - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "n {n}, k {k}: {} vs {want}",
                    got[k]
                );
            }
        }
    }
}
