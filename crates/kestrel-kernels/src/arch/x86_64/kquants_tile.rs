//! 2-row x 4-column AVX2 tiles for k-quant weights in prompt batches.
//!
//! Q4_K: the per-output float
//! arithmetic of `kquants::vec_dot_q4_k_gemm` (llama.cpp's repacked Q4_K GEMM): per 64-element
//! slice, an exact integer sum, then one FMA into a scale accumulator and one into a min
//! accumulator. Here the eight outputs of a tile sit in the eight lanes of one vector, so each
//! of those FMAs is one lane of a vector FMA: the same single rounding, bit for bit.
//!
//! Q6_K: the arithmetic of llama.cpp's tiled K-quant matmul (its path for batches of 8+
//! tokens): per super-block an exact integer sum, then `fma(d_w * s, d_y, acc)`.
//!
//! Safety: AVX2 and FMA must be present; `n` is a multiple of 256; `w` holds 2 rows of k-quant
//! blocks `wrb` bytes apart and `a` 4 rows of Q8_K blocks `arb` bytes apart.

#![allow(clippy::missing_safety_doc)] // the module docs state the contract

use std::arch::x86_64::*;

use super::hsum_i32x8;
use super::kquants::{f16_at, load32, q4_k_slice, q8_d, scale_pair_from, scales_mins_k4};
use crate::dispatch::{TILE_C, TILE_R};
use crate::generic::kquants::{off, Q4_K_BLOCK_BYTES, Q6_K_BLOCK_BYTES, Q8_K_BLOCK_BYTES, QK_K};

/// The horizontal sums of eight i32x8 vectors: lane k of the result is the sum of `v[k]`.
/// Integer, so the order of additions cannot change the result.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum8(v: [__m256i; 8]) -> __m256i {
    let h01 = _mm256_hadd_epi32(v[0], v[1]);
    let h23 = _mm256_hadd_epi32(v[2], v[3]);
    let h45 = _mm256_hadd_epi32(v[4], v[5]);
    let h67 = _mm256_hadd_epi32(v[6], v[7]);
    let a = _mm256_hadd_epi32(h01, h23);
    let b = _mm256_hadd_epi32(h45, h67);
    _mm256_add_epi32(
        _mm256_permute2x128_si256::<0x20>(a, b),
        _mm256_permute2x128_si256::<0x31>(a, b),
    )
}

/// `out[c * TILE_R + r]` = row `r` · column `c`, bit-identical to `vec_dot_q4_k_gemm`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn tile_q4_k_gemm(
    n: usize,
    w: &[u8],
    wrb: usize,
    a: &[u8],
    arb: usize,
    out: &mut [f32; TILE_R * TILE_C],
) {
    const {
        assert!(
            TILE_R == 2 && TILE_C == 4,
            "lane k = 2 c + r assumes a 2 x 4 tile"
        )
    };
    let nb = n / QK_K;
    debug_assert!(w.len() >= wrb + nb * Q4_K_BLOCK_BYTES);
    debug_assert!(a.len() >= 3 * arb + nb * Q8_K_BLOCK_BYTES);
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut acc = _mm256_setzero_ps();
    let mut acc_min = _mm256_setzero_ps();
    for i in 0..nb {
        let x = [
            wp.add(i * Q4_K_BLOCK_BYTES),
            wp.add(wrb + i * Q4_K_BLOCK_BYTES),
        ];
        let y: [*const u8; TILE_C] =
            std::array::from_fn(|c| ap.add(c * arb + i * Q8_K_BLOCK_BYTES));
        let blk = x.map(|p| std::slice::from_raw_parts(p, Q4_K_BLOCK_BYTES));
        let sm = blk.map(|b| scales_mins_k4(&b[off::Q4_SCALES..off::Q4_SCALES + 12]));
        // Per lane 2 c + r: d_w[r] * d_y[c] and dmin_w[r] * d_y[c], as the single-row kernel.
        let mut d = [0.0f32; 8];
        let mut dmin = [0.0f32; 8];
        for c in 0..TILE_C {
            let yd = q8_d(y[c]);
            for r in 0..TILE_R {
                d[2 * c + r] = f16_at(blk[r], off::Q4_D) * yd;
                dmin[2 * c + r] = f16_at(blk[r], off::Q4_DMIN) * yd;
            }
        }
        let (d, dmin) = (_mm256_loadu_ps(d.as_ptr()), _mm256_loadu_ps(dmin.as_ptr()));
        let mut mins = [[0i32; 8]; TILE_R];
        for (r, m) in mins.iter_mut().enumerate() {
            let mut b = [0u8; 16];
            _mm_storeu_si128(b.as_mut_ptr() as *mut __m128i, sm[r]);
            for j in 0..8 {
                m[j] = b[8 + j] as i32;
            }
        }
        for s in 0..4 {
            let v: [__m256i; 8] =
                std::array::from_fn(|k| q4_k_slice(x[k % 2], y[k / 2], sm[k % 2], s));
            let sums = _mm256_cvtepi32_ps(hsum8(v));
            acc = _mm256_fmadd_ps(sums, d, acc);
            // Mins of the slice's two 32-element sub-blocks against their activation sums.
            let mut mt = [0i32; 8];
            for (k, t) in mt.iter_mut().enumerate() {
                let ybs = y[k / 2].add(off::Q8_BSUMS) as *const i16;
                let bs = |j: usize| ybs.add(j).read_unaligned() as i32;
                let b0 = bs(4 * s) + bs(4 * s + 1);
                let b1 = bs(4 * s + 2) + bs(4 * s + 3);
                *t = mins[k % 2][2 * s] * b0 + mins[k % 2][2 * s + 1] * b1;
            }
            let mt = _mm256_cvtepi32_ps(_mm256_loadu_si256(mt.as_ptr() as *const __m256i));
            acc_min = _mm256_fmadd_ps(mt, dmin, acc_min);
        }
    }
    let res = _mm256_sub_ps(acc, acc_min);
    let mut o = [0.0f32; 8];
    _mm256_storeu_ps(o.as_mut_ptr(), res);
    // Lane 2 c + r is already out's index c * TILE_R + r.
    out.copy_from_slice(&o);
}

/// The 32 6-bit weights of group `k` (0..4) of half `h` (0..2) of a Q6_K block, as u8 0..63:
/// (low or high nibble of `ql`) | (bit pair `k` of `qh`) << 4, as `vec_dot_q6_k` builds them.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn q6_group(x: *const u8, h: usize, k: usize) -> __m256i {
    let m4 = _mm256_set1_epi8(0x0f);
    let m3 = _mm256_set1_epi8(3);
    let ql = load32(x.add(off::Q6_QL + 64 * h + 32 * (k % 2)));
    let qh = load32(x.add(off::Q6_QH + 32 * h));
    let lo = if k < 2 {
        _mm256_and_si256(ql, m4)
    } else {
        _mm256_and_si256(_mm256_srli_epi16::<4>(ql), m4)
    };
    let hb = match k {
        0 => qh,
        1 => _mm256_srli_epi16::<2>(qh),
        2 => _mm256_srli_epi16::<4>(qh),
        _ => _mm256_srli_epi16::<6>(qh),
    };
    _mm256_or_si256(lo, _mm256_slli_epi16::<4>(_mm256_and_si256(hb, m3)))
}

/// The exact integer dot of one Q6_K super-block `x` with one Q8_K block `y`, in the 8 lanes
/// of `vec_dot_q6_k` (the -32 offset already taken off), with `q` the block's weight groups
/// from [`q6_group`] and `sv` their scale pairs.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn q6_lanes(q: &[__m256i; 8], sv: &[__m256i; 8], sc16: __m256i, y: *const u8) -> __m256i {
    let mut sumi = _mm256_setzero_si256();
    for g in 0..8 {
        let yv = load32(y.add(off::Q8_QS + 32 * g));
        sumi = _mm256_add_epi32(
            sumi,
            _mm256_madd_epi16(_mm256_maddubs_epi16(q[g], yv), sv[g]),
        );
    }
    let bsums = _mm256_loadu_si256(y.add(off::Q8_BSUMS) as *const __m256i);
    _mm256_sub_epi32(sumi, _mm256_slli_epi32::<5>(_mm256_madd_epi16(bsums, sc16)))
}

/// Q6_K · Q8_K in the arithmetic of llama.cpp's tiled K-quant matmul, which it uses for
/// batches of `KQ_TILED_MIN_BATCH`+ tokens: per super-block the exact integer sum `s`, then
/// `acc = fma(d_w * s, d_y, acc)`. Twin of `generic::kquants::vec_dot_q6_k_tiled`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn vec_dot_q6_k_tiled(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / QK_K;
    assert!(w.len() >= nb * Q6_K_BLOCK_BYTES && a.len() >= nb * Q8_K_BLOCK_BYTES);
    let mut acc = 0.0f32;
    for i in 0..nb {
        let x = w.as_ptr().add(i * Q6_K_BLOCK_BYTES);
        let y = a.as_ptr().add(i * Q8_K_BLOCK_BYTES);
        let scales = _mm_loadu_si128(x.add(off::Q6_SCALES) as *const __m128i);
        let q: [__m256i; 8] = std::array::from_fn(|g| q6_group(x, g / 4, g % 4));
        let sv: [__m256i; 8] = std::array::from_fn(|g| scale_pair_from(scales, 2 * g));
        let s = hsum_i32x8(q6_lanes(&q, &sv, _mm256_cvtepi8_epi16(scales), y));
        let d_w = f16_at(std::slice::from_raw_parts(x, Q6_K_BLOCK_BYTES), off::Q6_D);
        acc = (d_w * s as f32).mul_add(q8_d(y), acc);
    }
    acc
}

/// `out[c * TILE_R + r]` = row `r` · column `c`, bit-identical to [`vec_dot_q6_k_tiled`]: each
/// weight group is unpacked once per tile, and the eight outputs' float steps run as the
/// eight lanes of one vector FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn tile_q6_k(
    n: usize,
    w: &[u8],
    wrb: usize,
    a: &[u8],
    arb: usize,
    out: &mut [f32; TILE_R * TILE_C],
) {
    const {
        assert!(
            TILE_R == 2 && TILE_C == 4,
            "lane k = 2 c + r assumes a 2 x 4 tile"
        )
    };
    let nb = n / QK_K;
    debug_assert!(w.len() >= wrb + nb * Q6_K_BLOCK_BYTES);
    debug_assert!(a.len() >= 3 * arb + nb * Q8_K_BLOCK_BYTES);
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut acc = _mm256_setzero_ps();
    for i in 0..nb {
        let x: [*const u8; TILE_R] =
            std::array::from_fn(|r| wp.add(r * wrb + i * Q6_K_BLOCK_BYTES));
        let y: [*const u8; TILE_C] =
            std::array::from_fn(|c| ap.add(c * arb + i * Q8_K_BLOCK_BYTES));
        let mut sums = [_mm256_setzero_si256(); 8];
        let mut dw = [0.0f32; 8];
        let mut dy = [0.0f32; 8];
        for r in 0..TILE_R {
            let scales = _mm_loadu_si128(x[r].add(off::Q6_SCALES) as *const __m128i);
            let q: [__m256i; 8] = std::array::from_fn(|g| q6_group(x[r], g / 4, g % 4));
            let sv: [__m256i; 8] = std::array::from_fn(|g| scale_pair_from(scales, 2 * g));
            let sc16 = _mm256_cvtepi8_epi16(scales);
            let d_w = f16_at(
                std::slice::from_raw_parts(x[r], Q6_K_BLOCK_BYTES),
                off::Q6_D,
            );
            for c in 0..TILE_C {
                sums[2 * c + r] = q6_lanes(&q, &sv, sc16, y[c]);
                dw[2 * c + r] = d_w;
                dy[2 * c + r] = q8_d(y[c]);
            }
        }
        // Lane k: d_w * s, then fma with d_y, exactly the scalar steps of each output.
        let s = _mm256_cvtepi32_ps(hsum8(sums));
        let res = _mm256_mul_ps(_mm256_loadu_ps(dw.as_ptr()), s);
        acc = _mm256_fmadd_ps(res, _mm256_loadu_ps(dy.as_ptr()), acc);
    }
    let mut o = [0.0f32; 8];
    _mm256_storeu_ps(o.as_mut_ptr(), acc);
    out.copy_from_slice(&o);
}
