//! A 2-row x 4-column AVX2 tile for Q4_K weights in prompt batches, with the per-output float
//! arithmetic of `kquants::vec_dot_q4_k_gemm` (llama.cpp's repacked Q4_K GEMM): per 64-element
//! slice, an exact integer sum, then one FMA into a scale accumulator and one into a min
//! accumulator. Here the eight outputs of a tile sit in the eight lanes of one vector, so each
//! of those FMAs is one lane of a vector FMA: the same single rounding, bit for bit.
//!
//! Safety: AVX2 and FMA must be present; `n` is a multiple of 256; `w` holds 2 rows of Q4_K
//! blocks `wrb` bytes apart and `a` 4 rows of Q8_K blocks `arb` bytes apart.

#![allow(clippy::missing_safety_doc)] // the module docs state the contract

use std::arch::x86_64::*;

use super::kquants::{f16_at, q4_k_slice, q8_d, scales_mins_k4};
use crate::dispatch::{TILE_C, TILE_R};
use crate::generic::kquants::{off, Q4_K_BLOCK_BYTES, Q8_K_BLOCK_BYTES, QK_K};

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
