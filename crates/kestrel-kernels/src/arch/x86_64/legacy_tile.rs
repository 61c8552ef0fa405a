//! Multi-row, multi-column AVX2 kernels for the legacy block formats, used for prompt batches:
//! a tile of `TILE_R` weight rows times `TILE_C` activation columns at once. Each weight block
//! is unpacked once per tile rather than once per column, each activation block loaded once per
//! tile rather than once per row, and the `TILE_R * TILE_C` independent accumulators keep the
//! FMA units busy where a single dot waits on its one accumulator.
//!
//! Every output goes through exactly the float operations of the single-row kernel in
//! `legacy` (same block order, same scale products, same final sum), so a tile is bit-identical
//! to `TILE_R * TILE_C` calls of `vec_dot_*`: llama.cpp's answers stay matched.
//!
//! Safety (all functions): AVX2, FMA and F16C must be present; `n` is a multiple of 32; `w`
//! holds `TILE_R` rows of `n` elements spaced `wrb` bytes apart and `a` holds `TILE_C` rows of
//! activations spaced `arb` bytes apart.

#![allow(clippy::missing_safety_doc)] // the module docs state the contract

use std::arch::x86_64::*;

use super::hsum_f32x8;
use super::legacy::{bits_32, cvt4, dot_u8_i8, f16_bits, load32, nibbles_32};
use crate::dispatch::{TILE_C, TILE_R};
use crate::generic::legacy::{
    Q4_0_BYTES, Q4_1_BYTES, Q5_0_BYTES, Q5_1_BYTES, Q8_0_BYTES, Q8_1_BYTES, QK,
};

/// One weight block format.
trait Fmt {
    /// Weight block bytes.
    const WB: usize;
    /// Signed weights (dotted with Q8_0 by the sign trick) rather than unsigned weights with a
    /// min term (dotted with Q8_1 and corrected by `m * s`).
    const SIGNED: bool;
    /// The block's 32 weights as bytes (i8 if `SIGNED`, else u8), in element order.
    unsafe fn unpack(x: *const u8) -> __m256i;
}

struct Q40;
struct Q41;
struct Q50;
struct Q51;
struct Q80;

impl Fmt for Q40 {
    const WB: usize = Q4_0_BYTES;
    const SIGNED: bool = true;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack(x: *const u8) -> __m256i {
        _mm256_sub_epi8(nibbles_32(x.add(2)), _mm256_set1_epi8(8))
    }
}

impl Fmt for Q41 {
    const WB: usize = Q4_1_BYTES;
    const SIGNED: bool = false;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack(x: *const u8) -> __m256i {
        nibbles_32(x.add(4))
    }
}

impl Fmt for Q50 {
    const WB: usize = Q5_0_BYTES;
    const SIGNED: bool = true;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack(x: *const u8) -> __m256i {
        let h = _mm256_andnot_si256(bits_32(x.add(2)), _mm256_set1_epi8(0xF0u8 as i8));
        _mm256_or_si256(nibbles_32(x.add(6)), h)
    }
}

impl Fmt for Q51 {
    const WB: usize = Q5_1_BYTES;
    const SIGNED: bool = false;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack(x: *const u8) -> __m256i {
        let h = _mm256_and_si256(bits_32(x.add(4)), _mm256_set1_epi8(0x10));
        _mm256_or_si256(nibbles_32(x.add(8)), h)
    }
}

impl Fmt for Q80 {
    const WB: usize = Q8_0_BYTES;
    const SIGNED: bool = true;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack(x: *const u8) -> __m256i {
        load32(x.add(2))
    }
}

/// Two f16 at `p` and `p + stride` packed in a u64 (the first in the low bits).
#[inline(always)]
unsafe fn f16_pair(p: *const u8, stride: usize) -> u64 {
    f16_bits(p) | f16_bits(p.add(stride)) << 16
}

/// Four f16 at `p + k * stride` packed into a u64 (k = 0 in the low bits).
#[inline(always)]
unsafe fn f16_quad(p: *const u8, stride: usize) -> u64 {
    f16_pair(p, stride) | f16_pair(p.add(2 * stride), stride) << 32
}

/// Scale products of a 2 x 4 tile: lane `2 c + r` is `w[r] * y[c]` (weights in lanes 0..2 of
/// `w`, activations in lanes 0..4 of `y`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn products(w: __m128, y: __m128) -> __m256 {
    let wd = _mm256_castpd_ps(_mm256_broadcastsd_pd(_mm_castps_pd(w)));
    let idx = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    let yd = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(y), idx);
    _mm256_mul_ps(wd, yd)
}

/// Lane `k` of `v` in all eight lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn lane(v: __m256, k: i32) -> __m256 {
    _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(k))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile<F: Fmt>(
    n: usize,
    w: *const u8,
    wrb: usize,
    a: *const u8,
    arb: usize,
    out: &mut [f32; TILE_R * TILE_C],
) {
    const {
        assert!(
            TILE_R == 2 && TILE_C == 4,
            "the scale shuffles assume a 2 x 4 tile"
        )
    };
    let (ab, aq) = if F::SIGNED {
        (Q8_0_BYTES, 2)
    } else {
        (Q8_1_BYTES, 4)
    };
    let mut acc = [[_mm256_setzero_ps(); TILE_C]; TILE_R];
    // Lane 2 c + r: the running sum of m_w * s_y of pair (r, c), added block by block exactly
    // as the scalar `summs` of the single-row kernel.
    let mut summs = _mm256_setzero_ps();
    for i in 0..n / QK {
        let x = w.add(i * F::WB);
        let y = a.add(i * ab);
        let mut wq = [_mm256_setzero_si256(); TILE_R];
        let mut wa = [_mm256_setzero_si256(); TILE_R];
        for r in 0..TILE_R {
            wq[r] = F::unpack(x.add(r * wrb));
            // |w| for the sign trick (u8 x i8 needs an unsigned left operand).
            wa[r] = if F::SIGNED {
                _mm256_sign_epi8(wq[r], wq[r])
            } else {
                wq[r]
            };
        }
        let dd = products(cvt4(f16_pair(x, wrb)), cvt4(f16_quad(y, arb)));
        if !F::SIGNED {
            // m_w at byte 2 of the weight block, s_y at byte 2 of the Q8_1 block.
            let ms = products(cvt4(f16_pair(x.add(2), wrb)), cvt4(f16_quad(y.add(2), arb)));
            summs = _mm256_add_ps(summs, ms);
        }
        for c in 0..TILE_C {
            let yq = load32(y.add(c * arb + aq));
            for r in 0..TILE_R {
                let q = if F::SIGNED {
                    dot_u8_i8(wa[r], _mm256_sign_epi8(yq, wq[r]))
                } else {
                    dot_u8_i8(wa[r], yq)
                };
                let d = lane(dd, (2 * c + r) as i32);
                acc[r][c] = _mm256_fmadd_ps(d, q, acc[r][c]);
            }
        }
    }
    let mut sm = [0.0f32; 8];
    _mm256_storeu_ps(sm.as_mut_ptr(), summs);
    for r in 0..TILE_R {
        for c in 0..TILE_C {
            let s = hsum_f32x8(acc[r][c]);
            out[c * TILE_R + r] = if F::SIGNED { s } else { s + sm[2 * c + r] };
        }
    }
}

macro_rules! tile_fn {
    ($name:ident, $fmt:ty) => {
        /// A `TILE_R` x `TILE_C` tile: `out[c * TILE_R + r]` = row `r` · column `c`.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn $name(
            n: usize,
            w: &[u8],
            wrb: usize,
            a: &[u8],
            arb: usize,
            out: &mut [f32; TILE_R * TILE_C],
        ) {
            debug_assert!(w.len() >= (TILE_R - 1) * wrb + n / QK * <$fmt>::WB);
            let ab = if <$fmt>::SIGNED {
                Q8_0_BYTES
            } else {
                Q8_1_BYTES
            };
            debug_assert!(a.len() >= (TILE_C - 1) * arb + n / QK * ab);
            tile::<$fmt>(n, w.as_ptr(), wrb, a.as_ptr(), arb, out)
        }
    };
}

tile_fn!(tile_q4_0, Q40);
tile_fn!(tile_q4_1, Q41);
tile_fn!(tile_q5_0, Q50);
tile_fn!(tile_q5_1, Q51);
tile_fn!(tile_q8_0, Q80);
