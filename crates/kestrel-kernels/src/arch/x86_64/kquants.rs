//! AVX2 dot products of k-quant weights with Q8_K activations (layouts in
//! `generic::kquants`).
//!
//! Each super-block's quants are expanded to unsigned bytes 32 at a time and
//! multiplied with the activation bytes by `maddubs` (u8 x i8, adjacent pairs
//! summed to i16, no saturation possible at these magnitudes); `madd` with the
//! sub-block scale broadcast as i16 widens to i32. A 32-byte group always
//! covers two 16-element halves, and `maddubs` keeps elements 0..16 in the low
//! 128-bit lane and 16..32 in the high lane, so a 16-element scale granularity
//! (Q2_K/Q3_K/Q6_K) costs nothing extra: the scale vector just carries a
//! different value per lane.
//!
//! Offsets that make a quant signed (Q6_K's -32, Q3_K's -4) are applied as
//! "u8 product minus offset x activation" so `maddubs` can stay unsigned; the
//! min terms of Q2_K/Q4_K/Q5_K use the Q8_K bsums and never touch the quants.
//! The integer part of every super-block is exact; only the final scaling and
//! summation is float, so results differ from the scalar twins only by
//! rounding order.
//!
//! Safety (all functions): the CPU must support AVX2 and FMA. Lengths are
//! checked (panics on short slices or `n` not a multiple of 256).

// `%` instead of `is_multiple_of`: the workspace MSRV is 1.85.
#![allow(clippy::manual_is_multiple_of)]

use std::arch::x86_64::*;

use super::{hsum_f32x8, hsum_i32x8};
use crate::generic::kquants::{
    off, Q2_K_BLOCK_BYTES, Q3_K_BLOCK_BYTES, Q5_K_BLOCK_BYTES, Q8_K_BLOCK_BYTES, QK_K,
};

/// Whole super-blocks in `n`, with `w` and `a` holding one row of them (panics otherwise).
pub(super) fn check(n: usize, w: &[u8], wb: usize, a: &[u8]) -> usize {
    assert!(
        n % QK_K == 0,
        "k-quant vec_dot: n = {n} not a multiple of {QK_K}"
    );
    let nb = n / QK_K;
    assert!(
        w.len() >= nb * wb && a.len() >= nb * Q8_K_BLOCK_BYTES,
        "k-quant vec_dot: row too short"
    );
    nb
}

pub(super) use crate::generic::f16_at;

#[inline(always)]
pub(super) unsafe fn load32(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

#[inline(always)]
pub(super) unsafe fn q8_d(y: *const u8) -> f32 {
    (y.add(off::Q8_D) as *const f32).read_unaligned()
}

/// From 16 i8 scales, the i16 vector with scale `s` in the low lane and
/// `s + 1` in the high lane (one byte shuffle + sign extension).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn scale_pair_from(scales: __m128i, s: usize) -> __m256i {
    let lo = (s as i64) * 0x0101_0101_0101_0101;
    let hi = (s as i64 + 1) * 0x0101_0101_0101_0101;
    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, _mm_set_epi64x(hi, lo)))
}

/// Q3_K's 16 biased 6-bit scales, unpacked as whole words (scales 0..4,
/// 4..8, 8..12, 12..16 take the low/high nibbles of words 0/1 plus bit pairs
/// 0, 2, 4, 6 of word 2) and un-biased, as 16 i8.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn q3_scales_vec(s: &[u8]) -> __m128i {
    let w = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (a0, a1, a2) = (w(0), w(1), w(2));
    const LO: u32 = 0x0f0f_0f0f;
    const HI: u32 = 0x0303_0303;
    let w0 = (a0 & LO) | ((a2 & HI) << 4);
    let w1 = (a1 & LO) | (((a2 >> 2) & HI) << 4);
    let w2 = ((a0 >> 4) & LO) | (((a2 >> 4) & HI) << 4);
    let w3 = ((a1 >> 4) & LO) | (((a2 >> 6) & HI) << 4);
    let v = _mm_set_epi32(w3 as i32, w2 as i32, w1 as i32, w0 as i32);
    _mm_sub_epi8(v, _mm_set1_epi8(32))
}

/// sum over 32 elements of (u8 q) * (i8 y), per 16-element half scaled by
/// `scales` (i16 per lane), as 8 i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn dot_scaled(q: __m256i, y: __m256i, scales: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(q, y), scales)
}

/// Unpacks Q4_K/Q5_K's 12 packed bytes into one vector: 8 scales in bytes
/// 0..8, 8 mins in bytes 8..16. Works on whole 32-bit words: the low 6 bits of
/// words 0/1 are pairs 0..4, pairs 4..8 take word 2's nibbles plus the spare
/// top bits of words 0/1 (shifted down into bits 4-5).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn scales_mins_k4(s: &[u8]) -> __m128i {
    let w = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (a, b, c) = (w(0), w(1), w(2));
    let sc_lo = a & 0x3f3f_3f3f;
    let mn_lo = b & 0x3f3f_3f3f;
    let sc_hi = (c & 0x0f0f_0f0f) | ((a >> 2) & 0x3030_3030);
    let mn_hi = ((c >> 4) & 0x0f0f_0f0f) | ((b >> 2) & 0x3030_3030);
    _mm_set_epi32(mn_hi as i32, mn_lo as i32, sc_hi as i32, sc_lo as i32)
}

/// Byte `idx` of `v` (unsigned, < 128) broadcast to 16 i16 lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn bcast_u8_i16(v: __m128i, idx: usize) -> __m256i {
    _mm256_cvtepu8_epi16(_mm_shuffle_epi8(v, _mm_set1_epi8(idx as i8)))
}

/// sum_j mins[j] * (bsums[2j] + bsums[2j+1]) for the 8 32-element sub-blocks
/// (`sm` from [`scales_mins_k4`], mins in bytes 8..16).
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn min_term_32(sm: __m128i, y: *const u8) -> i32 {
    let b0 = _mm_loadu_si128(y.add(off::Q8_BSUMS) as *const __m128i);
    let b1 = _mm_loadu_si128(y.add(off::Q8_BSUMS + 16) as *const __m128i);
    let pairs = _mm_hadd_epi16(b0, b1); // |pair| <= 2 * 16 * 128, fits i16
    let m = _mm_cvtepu8_epi16(_mm_srli_si128::<8>(sm));
    let p = _mm_madd_epi16(m, pairs);
    let p = _mm_add_epi32(p, _mm_unpackhi_epi64(p, p));
    let p = _mm_add_epi32(p, _mm_shuffle_epi32::<0b01>(p));
    _mm_cvtsi128_si32(p)
}

/// Q2_K weights · Q8_K activations: `n` elements, `w` = n/256 Q2_K blocks,
/// `a` = n/256 Q8_K blocks.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn vec_dot_q2_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = check(n, w, Q2_K_BLOCK_BYTES, a);
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let m3 = _mm256_set1_epi8(3);
    let m4 = _mm_set1_epi8(0x0f);
    let mut acc = _mm256_setzero_ps();
    let mut acc_min = 0.0f32;
    for i in 0..nb {
        let x = wp.add(i * Q2_K_BLOCK_BYTES);
        let y = ap.add(i * Q8_K_BLOCK_BYTES);
        let yd = q8_d(y);
        let blk = std::slice::from_raw_parts(x, Q2_K_BLOCK_BYTES);
        let d = yd * f16_at(blk, off::Q2_D);
        let dmin = yd * f16_at(blk, off::Q2_DMIN);

        // Min term: 16 4-bit mins against the 16 bsums.
        let sc_bytes = _mm_loadu_si128(x.add(off::Q2_SCALES) as *const __m128i);
        let mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(sc_bytes), m4));
        let bsums = _mm256_loadu_si256(y.add(off::Q8_BSUMS) as *const __m256i);
        let msum = hsum_i32x8(_mm256_madd_epi16(mins, bsums));
        acc_min += dmin * msum as f32;

        let scales = _mm_and_si128(sc_bytes, m4);
        let mut sumi = _mm256_setzero_si256();
        for h in 0..2 {
            let qs = load32(x.add(off::Q2_QS + 32 * h));
            for k in 0..4 {
                let q = _mm256_and_si256(_mm256_srl_epi16(qs, _mm_cvtsi32_si128(2 * k as i32)), m3);
                let yv = load32(y.add(off::Q8_QS + 128 * h + 32 * k));
                let sv = scale_pair_from(scales, 8 * h + 2 * k);
                sumi = _mm256_add_epi32(sumi, dot_scaled(q, yv, sv));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_f32x8(acc) - acc_min
}

/// Q3_K weights · Q8_K activations: `n` elements, `w` = n/256 Q3_K blocks,
/// `a` = n/256 Q8_K blocks.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn vec_dot_q3_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = check(n, w, Q3_K_BLOCK_BYTES, a);
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let m3 = _mm256_set1_epi8(3);
    let m1 = _mm256_set1_epi8(1);
    let mut acc = _mm256_setzero_ps();
    for i in 0..nb {
        let x = wp.add(i * Q3_K_BLOCK_BYTES);
        let y = ap.add(i * Q8_K_BLOCK_BYTES);
        let blk = std::slice::from_raw_parts(x, Q3_K_BLOCK_BYTES);
        let d = q8_d(y) * f16_at(blk, off::Q3_D);
        let scales = q3_scales_vec(&blk[off::Q3_SCALES..off::Q3_SCALES + 12]);

        // A *cleared* hmask bit means "subtract 4": invert once, then each
        // group's bit m becomes a 0/4 byte that is subtracted via maddubs.
        let hneg = _mm256_xor_si256(load32(x.add(off::Q3_HMASK)), _mm256_set1_epi8(-1));
        let mut sumi = _mm256_setzero_si256();
        for h in 0..2 {
            let qs = load32(x.add(off::Q3_QS + 32 * h));
            for k in 0..4 {
                let m = 4 * h + k;
                let lo =
                    _mm256_and_si256(_mm256_srl_epi16(qs, _mm_cvtsi32_si128(2 * k as i32)), m3);
                let hb = _mm256_and_si256(_mm256_srl_epi16(hneg, _mm_cvtsi32_si128(m as i32)), m1);
                let h4 = _mm256_slli_epi16::<2>(hb);
                let yv = load32(y.add(off::Q8_QS + 32 * m));
                let p =
                    _mm256_sub_epi16(_mm256_maddubs_epi16(lo, yv), _mm256_maddubs_epi16(h4, yv));
                let sv = scale_pair_from(scales, 2 * m);
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, sv));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_f32x8(acc)
}

/// Q5_K weights · Q8_K activations: `n` elements, `w` = n/256 Q5_K blocks,
/// `a` = n/256 Q8_K blocks.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn vec_dot_q5_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = check(n, w, Q5_K_BLOCK_BYTES, a);
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let m4 = _mm256_set1_epi8(0x0f);
    let m1 = _mm256_set1_epi8(1);
    let mut acc = _mm256_setzero_ps();
    let mut acc_min = 0.0f32;
    for i in 0..nb {
        let x = wp.add(i * Q5_K_BLOCK_BYTES);
        let y = ap.add(i * Q8_K_BLOCK_BYTES);
        let blk = std::slice::from_raw_parts(x, Q5_K_BLOCK_BYTES);
        let yd = q8_d(y);
        let d = yd * f16_at(blk, off::Q5_D);
        let dmin = yd * f16_at(blk, off::Q5_DMIN);
        let sm = scales_mins_k4(&blk[off::Q5_SCALES..off::Q5_SCALES + 12]);
        acc_min += dmin * min_term_32(sm, y) as f32;

        let qh = load32(x.add(off::Q5_QH));
        let mut sumi = _mm256_setzero_si256();
        for c in 0..4 {
            let qs = load32(x.add(off::Q5_QS + 32 * c));
            // Bit 2c / 2c+1 of qh[l] is the 5th bit of low / high nibble l.
            let h_lo = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c as i32)), m1);
            let h_hi = _mm256_and_si256(
                _mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c as i32 + 1)),
                m1,
            );
            let lo = _mm256_or_si256(_mm256_and_si256(qs, m4), _mm256_slli_epi16::<4>(h_lo));
            let hi = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<4>(qs), m4),
                _mm256_slli_epi16::<4>(h_hi),
            );
            let y_lo = load32(y.add(off::Q8_QS + 64 * c));
            let y_hi = load32(y.add(off::Q8_QS + 64 * c + 32));
            let s_lo = bcast_u8_i16(sm, 2 * c);
            let s_hi = bcast_u8_i16(sm, 2 * c + 1);
            sumi = _mm256_add_epi32(sumi, dot_scaled(lo, y_lo, s_lo));
            sumi = _mm256_add_epi32(sumi, dot_scaled(hi, y_hi, s_hi));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_f32x8(acc) - acc_min
}

#[cfg(test)]
mod tests {
    #[test]
    fn kquants_inline_f16_matches_half_for_all_bit_patterns() {
        for h in 0..=u16::MAX {
            let b = h.to_le_bytes();
            let want = half::f16::from_bits(h).to_f32();
            let got = super::f16_at(&b, 0);
            if want.is_nan() {
                assert!(got.is_nan(), "{h:#06x}");
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{h:#06x}");
            }
        }
    }
}
