//! AVX2 + FMA micro-kernels (x86-64) for the batch-1 sparse products, where
//! the portable code cannot express what makes them fast: assembling a vector
//! of `x` from eight scalar loads whose `u16` indices are read four at a time
//! (one 64-bit load, then shifts), and in-register lookups (`vpermilps`) for
//! N:M groups. `macerator` (the portable SIMD layer the other kernels use) has
//! no gather or permute operations, so these use `std::arch` directly, behind a
//! run-time CPU check ([`available`]); every caller keeps a portable path.
//!
//! Measured on the 2-core AMD EPYC (Zen 3, AVX2) VM with a throwaway probe,
//! SELL-16 3072→768 at 90% (one core, other builds running): hardware gather
//! (`vpgatherdd`) 0.9–1.1 nnz/ns, scalar loads with `u16` index loads
//! 2.0–2.4 nnz/ns, scalar loads with 64-bit index loads 2.6–3.7 nnz/ns.

use std::arch::x86_64::*;

/// `[a·b[0], a·b[1], a·b[2], a·b[3]]` over `a.len()` entries: four dot
/// products sharing `a`, so each load of `a` feeds four multiply-adds, two
/// accumulators per product (eight independent chains). The convolution's
/// weight gradient: one output channel's `dY` against four stored weights'
/// input strips.
///
/// # Safety
/// The CPU must have AVX2 and FMA ([`available`]); every `b[k]` holds at
/// least `a.len()` entries.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot4(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
    let n = a.len();
    assert!(b.iter().all(|s| s.len() >= n), "dot4: a strip is shorter than `a`");
    let pa = a.as_ptr();
    let pb = b.map(|s| s.as_ptr());
    let mut acc = [[_mm256_setzero_ps(); 2]; 4];
    let mut i = 0;
    // SAFETY (all loads): i + 16 ≤ n, then i + 8 ≤ n, within `a` and every `b[k]`.
    while i + 16 <= n {
        let (x0, x1) = unsafe { (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pa.add(i + 8))) };
        for k in 0..4 {
            let (y0, y1) = unsafe { (_mm256_loadu_ps(pb[k].add(i)), _mm256_loadu_ps(pb[k].add(i + 8))) };
            acc[k][0] = _mm256_fmadd_ps(x0, y0, acc[k][0]);
            acc[k][1] = _mm256_fmadd_ps(x1, y1, acc[k][1]);
        }
        i += 16;
    }
    while i + 8 <= n {
        let x = unsafe { _mm256_loadu_ps(pa.add(i)) };
        for k in 0..4 {
            let y = unsafe { _mm256_loadu_ps(pb[k].add(i)) };
            acc[k][0] = _mm256_fmadd_ps(x, y, acc[k][0]);
        }
        i += 8;
    }
    let mut out = [0.0f32; 4];
    for k in 0..4 {
        let mut lanes = [0.0f32; 8];
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(acc[k][0], acc[k][1])) };
        let tail: f32 = a[i..n].iter().zip(&b[k][i..n]).map(|(x, y)| x * y).sum();
        out[k] =
            ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7])) + tail;
    }
    out
}

/// Whether the AVX2 + FMA kernels run: this CPU has them (checked at run
/// time) and [`super::limit_kernels`] allows them.
#[inline]
pub fn available() -> bool {
    super::kernel_limit() >= super::KernelLevel::Avx2
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
}

/// `x[ix[0]], …, x[ix[7]]`, the eight `u16` indices read as two 64-bit words.
///
/// # Safety
/// `ix` must point to 8 readable `u16` and every index must be in bounds of `x`.
#[inline(always)]
unsafe fn gather8(x: *const f32, ix: *const u16) -> __m256 {
    unsafe {
        let a = (ix as *const u64).read_unaligned();
        let b = (ix.add(4) as *const u64).read_unaligned();
        let at = |q: u64, s: u32| *x.add(((q >> s) & 0xffff) as usize);
        _mm256_setr_ps(
            at(a, 0),
            at(a, 16),
            at(a, 32),
            at(a, 48),
            at(b, 0),
            at(b, 16),
            at(b, 32),
            at(b, 48),
        )
    }
}

/// Horizontal sum of 8 lanes.
#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    unsafe {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
}

/// One SELL-16 group with `u16` columns: `acc[l] = Σ_j vals[j·16 + l]·x[idx[j·16 + l]]`.
///
/// # Safety
/// [`available`] must be true; `vals` and `idx` hold `k·16` entries; every index < `x.len()`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn sell_group_u16(vals: &[f32], idx: &[u16], x: &[f32], k: usize) -> [f32; 16] {
    debug_assert!(vals.len() >= k * 16 && idx.len() >= k * 16);
    let (v, ix, xp) = (vals.as_ptr(), idx.as_ptr(), x.as_ptr());
    let mut a = [_mm256_setzero_ps(); 4];
    let mut j = 0;
    unsafe {
        while j + 2 <= k {
            let p = j * 16;
            let x0 = gather8(xp, ix.add(p));
            let x1 = gather8(xp, ix.add(p + 8));
            let x2 = gather8(xp, ix.add(p + 16));
            let x3 = gather8(xp, ix.add(p + 24));
            a[0] = _mm256_fmadd_ps(_mm256_loadu_ps(v.add(p)), x0, a[0]);
            a[1] = _mm256_fmadd_ps(_mm256_loadu_ps(v.add(p + 8)), x1, a[1]);
            a[2] = _mm256_fmadd_ps(_mm256_loadu_ps(v.add(p + 16)), x2, a[2]);
            a[3] = _mm256_fmadd_ps(_mm256_loadu_ps(v.add(p + 24)), x3, a[3]);
            j += 2;
        }
        if j < k {
            let p = j * 16;
            a[0] = _mm256_fmadd_ps(_mm256_loadu_ps(v.add(p)), gather8(xp, ix.add(p)), a[0]);
            a[1] = _mm256_fmadd_ps(_mm256_loadu_ps(v.add(p + 8)), gather8(xp, ix.add(p + 8)), a[1]);
        }
        let mut out = [0.0f32; 16];
        _mm256_storeu_ps(out.as_mut_ptr(), _mm256_add_ps(a[0], a[2]));
        _mm256_storeu_ps(out.as_mut_ptr().add(8), _mm256_add_ps(a[1], a[3]));
        out
    }
}

/// One SELL-16 group of an N:4 matrix: entry `j` of lane `l` is
/// `x[4·(j / n) + off(j, l)]`, the in-group offsets packed two bits per lane
/// into one word per entry (`packed[j]`, lanes 0–7 in bits 0–15, lanes 8–15 in
/// bits 16–31; see [`pack_n4`]). The four `x` of a column group are broadcast
/// to both halves of a register once; each entry's offsets are the word
/// broadcast and shifted per lane, and `vpermilps` (which reads only the low
/// two bits of each lane) picks the inputs: no index arithmetic, no scalar
/// loads, 4.25 bytes per nonzero.
///
/// # Safety
/// [`available`] must be true; `vals` holds `k·16` entries and `packed` `k`
/// words, `k` a multiple of `n`, and `4·k/n <= x.len()`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn sell_group_n4(vals: &[f32], packed: &[u32], x: &[f32], k: usize, n: usize) -> [f32; 16] {
    debug_assert!(vals.len() >= k * 16 && packed.len() >= k && 4 * (k / n) <= x.len());
    let (v, pk, xp) = (vals.as_ptr(), packed.as_ptr(), x.as_ptr());
    let lo = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    let hi = _mm256_setr_epi32(16, 18, 20, 22, 24, 26, 28, 30);
    let mut a = [_mm256_setzero_ps(); 4];
    unsafe {
        for q in 0..k / n {
            let xq = _mm256_broadcast_ps(&*(xp.add(4 * q) as *const __m128));
            for t in 0..n {
                let j = q * n + t;
                let (p, h) = (j * 16, 2 * (t & 1));
                let word = _mm256_set1_epi32(*pk.add(j) as i32);
                let x0 = _mm256_permutevar_ps(xq, _mm256_srlv_epi32(word, lo));
                let x1 = _mm256_permutevar_ps(xq, _mm256_srlv_epi32(word, hi));
                a[h] = _mm256_fmadd_ps(_mm256_loadu_ps(v.add(p)), x0, a[h]);
                a[h + 1] = _mm256_fmadd_ps(_mm256_loadu_ps(v.add(p + 8)), x1, a[h + 1]);
            }
        }
        let mut out = [0.0f32; 16];
        _mm256_storeu_ps(out.as_mut_ptr(), _mm256_add_ps(a[0], a[2]));
        _mm256_storeu_ps(out.as_mut_ptr().add(8), _mm256_add_ps(a[1], a[3]));
        out
    }
}

/// Packs SELL-16 N:4 offsets (one byte per entry, each < 4) into one word per
/// entry of a group: lane `l`'s two bits at `2·l` (lanes 0–7) or `16 + 2·(l − 8)`.
pub fn pack_n4(idx: &[u8]) -> Vec<u32> {
    idx.chunks_exact(16)
        .map(|lanes| {
            lanes
                .iter()
                .enumerate()
                .fold(0u32, |w, (l, &o)| w | (u32::from(o) & 3) << (2 * l))
        })
        .collect()
}

/// One CSR row with `u16` columns: `Σ_e vals[e]·x[col[e]]`.
///
/// # Safety
/// [`available`] must be true; `col.len() == vals.len()`; every column < `x.len()`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn csr_row_u16(col: &[u16], vals: &[f32], x: &[f32]) -> f32 {
    debug_assert!(col.len() == vals.len());
    let n = col.len();
    let (c, v, xp) = (col.as_ptr(), vals.as_ptr(), x.as_ptr());
    let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut e = 0;
    unsafe {
        while e + 16 <= n {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(v.add(e)), gather8(xp, c.add(e)), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(v.add(e + 8)), gather8(xp, c.add(e + 8)), a1);
            e += 16;
        }
        if e + 8 <= n {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(v.add(e)), gather8(xp, c.add(e)), a0);
            e += 8;
        }
        let mut s = hsum(_mm256_add_ps(a0, a1));
        while e < n {
            s = (*v.add(e)).mul_add(*xp.add(*c.add(e) as usize), s);
            e += 1;
        }
        s
    }
}

/// `Σ a[i]·b[i]` (`a` and `b` of equal length) with four 8-lane FMA
/// accumulators, so four independent chains of multiply-adds overlap
/// (the SDDMM's dot product over the batch).
///
/// # Safety
/// The CPU must have AVX2 and FMA ([`available`]).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY (all loads): i + 32 ≤ n, then i + 8 ≤ n, within both slices.
    while i + 32 <= n {
        for (k, s) in acc.iter_mut().enumerate() {
            let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(i + 8 * k)), _mm256_loadu_ps(pb.add(i + 8 * k))) };
            *s = _mm256_fmadd_ps(x, y, *s);
        }
        i += 32;
    }
    while i + 8 <= n {
        let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
        acc[0] = _mm256_fmadd_ps(x, y, acc[0]);
        i += 8;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0.0f32; 8];
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
    let tail: f32 = a[i..n].iter().zip(&b[i..n]).map(|(x, y)| x * y).sum();
    ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7])) + tail
}
