//! AVX2 kernels for the legacy block formats (see `generic::legacy` for the layouts).
//!
//! Per block the 32 weight values are expanded to 32 bytes, multiplied with the 32 activation
//! bytes by `maddubs` (u8 x i8 -> pairs summed to i16) and `madd` (-> i32), converted to f32 and
//! accumulated with the block's scale product by FMA. The integer part is exact, so results
//! differ from the scalar twins only by float summation order.
//!
//! Safety (all functions): the CPU must support AVX2 and FMA; `n` is a multiple of 32 and
//! `w`/`a` hold at least `n / 32` blocks of their formats.

#![allow(clippy::missing_safety_doc)] // the module docs state the contract

use std::arch::x86_64::*;

use super::{hsum_f32x8, hsum_i32x8};
use crate::generic::legacy::{
    Q4_0_BYTES, Q4_1_BYTES, Q5_0_BYTES, Q5_1_BYTES, Q8_0_BYTES, Q8_1_BYTES, QK,
};

/// Four f16 packed in a u64 (first in the low bits) -> four f32, by F16C. The value is built
/// in a general register and moved in whole (`vmovq`): loading an f16 straight into a vector
/// register was compiled to a `vpinsrw` merge into whatever register was free, which tied each
/// block's scale to an unrelated running sum and serialized the loop.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn cvt4(bits: u64) -> __m128 {
    _mm_cvtph_ps(_mm_cvtsi64_si128(bits as i64))
}

/// The f16 at `p` (unaligned) as raw bits.
#[inline(always)]
pub(super) unsafe fn f16_bits(p: *const u8) -> u64 {
    (p as *const u16).read_unaligned() as u64
}

/// The product of the f16 at `x` and the f16 at `y`, each converted exactly to f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn h_mul(x: *const u8, y: *const u8) -> f32 {
    let v = cvt4(f16_bits(x) | f16_bits(y) << 16);
    _mm_cvtss_f32(_mm_mul_ss(v, _mm_movehdup_ps(v)))
}

/// Products of two f16 pairs: `(x[0] * y[0], x[1] * y[1])` for the f16 at `x`, `x + 2` and
/// `y`, `y + 2` (a block's scale and min against the activations' scale and sum).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn h2_mul(x: *const u8, y: *const u8) -> (f32, f32) {
    let xs = f16_bits(x) | f16_bits(x.add(2)) << 16;
    let ys = f16_bits(y) | f16_bits(y.add(2)) << 16;
    let v = cvt4(xs | ys << 32);
    let p = _mm_mul_ps(v, _mm_movehl_ps(v, v));
    (_mm_cvtss_f32(p), _mm_cvtss_f32(_mm_movehdup_ps(p)))
}

/// f32 -> f16 bits, round to nearest even (as `half::f16::from_f32`), by F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn to_f16_bytes(v: f32) -> [u8; 2] {
    let r = _mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(v));
    (_mm_extract_epi16::<0>(r) as u16).to_le_bytes()
}

/// 16 bytes of nibbles -> 32 bytes: low nibbles (elements 0..16) then high (16..32).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn nibbles_32(p: *const u8) -> __m256i {
    let t = _mm_loadu_si128(p as *const __m128i);
    let b = _mm256_set_m128i(_mm_srli_epi16::<4>(t), t);
    _mm256_and_si256(b, _mm256_set1_epi8(0x0F))
}

/// The 32 bits at `p` -> 32 bytes, 0xFF where the bit is set.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn bits_32(p: *const u8) -> __m256i {
    let x = (p as *const u32).read_unaligned();
    let shuf = _mm256_set_epi64x(
        0x0303030303030303,
        0x0202020202020202,
        0x0101010101010101,
        0x0000000000000000,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x as i32), shuf);
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
}

/// Sum of u8 x i8 products in 8 i32 lanes, as f32.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn dot_u8_i8(x: __m256i, y: __m256i) -> __m256 {
    let p16 = _mm256_maddubs_epi16(x, y);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)))
}

/// Sum of i8 x i8 products (x != -128) in 8 i32 lanes, as f32.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn dot_i8_i8(x: __m256i, y: __m256i) -> __m256 {
    let ax = _mm256_sign_epi8(x, x);
    let sy = _mm256_sign_epi8(y, x);
    dot_u8_i8(ax, sy)
}

#[inline(always)]
pub(super) unsafe fn load32(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

/// Q4_0 weights · Q8_0 activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q4_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / QK;
    debug_assert!(w.len() >= nb * Q4_0_BYTES && a.len() >= nb * Q8_0_BYTES);
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut acc = _mm256_setzero_ps();
    let off8 = _mm256_set1_epi8(8);
    let mut i = 0;
    while i < nb {
        let x = wp.add(i * Q4_0_BYTES);
        let y = ap.add(i * Q8_0_BYTES);
        let d = _mm256_set1_ps(h_mul(x, y));
        let qx = _mm256_sub_epi8(nibbles_32(x.add(2)), off8);
        let q = dot_i8_i8(qx, load32(y.add(2)));
        acc = _mm256_fmadd_ps(d, q, acc);
        i += 1;
    }
    hsum_f32x8(acc)
}

/// Q4_1 weights · Q8_1 activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q4_1(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / QK;
    debug_assert!(w.len() >= nb * Q4_1_BYTES && a.len() >= nb * Q8_1_BYTES);
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0.0f32;
    for i in 0..nb {
        let xb = wp.add(i * Q4_1_BYTES);
        let yb = ap.add(i * Q8_1_BYTES);
        // (d_x d_y, m_x s_y): the scales and the min/sum pairs sit side by side.
        let (dd, ms) = h2_mul(xb, yb);
        summs += ms;
        let d = _mm256_set1_ps(dd);
        let qx = nibbles_32(wp.add(i * Q4_1_BYTES + 4));
        let q = dot_u8_i8(qx, load32(ap.add(i * Q8_1_BYTES + 4)));
        acc = _mm256_fmadd_ps(d, q, acc);
    }
    hsum_f32x8(acc) + summs
}

/// Q5_0 weights · Q8_0 activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q5_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    debug_assert!(w.len() >= n / QK * Q5_0_BYTES && a.len() >= n / QK * Q8_0_BYTES);
    dot_q5_0_rows::<1>(n, w.as_ptr(), 0, a.as_ptr())[0]
}

/// Four Q5_0 rows `wrb` bytes apart · one Q8_0 column: each output `vec_dot_q5_0`'s bits, in
/// four independent chains (decode of short rows, where one row's chain is the bottleneck).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot4_q5_0(n: usize, w: &[u8], wrb: usize, a: &[u8]) -> [f32; 4] {
    let nb = n / QK;
    debug_assert!(w.len() >= 3 * wrb + nb * Q5_0_BYTES && a.len() >= nb * Q8_0_BYTES);
    dot_q5_0_rows::<4>(n, w.as_ptr(), wrb, a.as_ptr())
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q5_0_rows<const R: usize>(
    n: usize,
    wp: *const u8,
    wrb: usize,
    ap: *const u8,
) -> [f32; R] {
    let nb = n / QK;
    let mut acc = [_mm256_setzero_ps(); R];
    let hi = _mm256_set1_epi8(0xF0u8 as i8);
    for i in 0..nb {
        let yb = ap.add(i * Q8_0_BYTES);
        let y = load32(yb.add(2));
        for r in 0..R {
            let x = wp.add(r * wrb + i * Q5_0_BYTES);
            let d = _mm256_set1_ps(h_mul(x, yb));
            // q - 16 as i8: the nibble, with the top four bits set where the 5th bit is clear.
            let h = _mm256_andnot_si256(bits_32(x.add(2)), hi);
            let qx = _mm256_or_si256(nibbles_32(x.add(6)), h);
            acc[r] = _mm256_fmadd_ps(d, dot_i8_i8(qx, y), acc[r]);
        }
    }
    let mut out = [0.0; R];
    for r in 0..R {
        out[r] = hsum_f32x8(acc[r]);
    }
    out
}

/// Q5_1 weights · Q8_1 activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q5_1(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / QK;
    debug_assert!(w.len() >= nb * Q5_1_BYTES && a.len() >= nb * Q8_1_BYTES);
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0.0f32;
    let b5 = _mm256_set1_epi8(0x10);
    for i in 0..nb {
        let xb = wp.add(i * Q5_1_BYTES);
        let yb = ap.add(i * Q8_1_BYTES);
        // (d_x d_y, m_x s_y): the scales and the min/sum pairs sit side by side.
        let (dd, ms) = h2_mul(xb, yb);
        summs += ms;
        let d = _mm256_set1_ps(dd);
        let x = wp.add(i * Q5_1_BYTES);
        let h = _mm256_and_si256(bits_32(x.add(4)), b5);
        let qx = _mm256_or_si256(nibbles_32(x.add(8)), h);
        let q = dot_u8_i8(qx, load32(ap.add(i * Q8_1_BYTES + 4)));
        acc = _mm256_fmadd_ps(d, q, acc);
    }
    hsum_f32x8(acc) + summs
}

/// Q8_0 weights · Q8_0 activations. (Exact for any weight byte; an activation byte of -128,
/// which `quantize_row_q8_0` never produces, would be mis-signed as in ggml's AVX2 code.)
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / QK;
    debug_assert!(w.len() >= nb * Q8_0_BYTES && a.len() >= nb * Q8_0_BYTES);
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut acc = _mm256_setzero_ps();
    for i in 0..nb {
        let xb = wp.add(i * Q8_0_BYTES);
        let yb = ap.add(i * Q8_0_BYTES);
        let d = _mm256_set1_ps(h_mul(xb, yb));
        let q = dot_i8_i8(
            load32(wp.add(i * Q8_0_BYTES + 2)),
            load32(ap.add(i * Q8_0_BYTES + 2)),
        );
        acc = _mm256_fmadd_ps(d, q, acc);
    }
    hsum_f32x8(acc)
}

/// One block of 32 floats -> (d, four i32x8 vectors of q, in element order), rounding half away
/// from zero exactly as the scalar `f32::round`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn q8_block(x: *const f32) -> (f32, [__m256i; 4]) {
    let sign = _mm256_set1_ps(-0.0);
    let v = [
        _mm256_loadu_ps(x),
        _mm256_loadu_ps(x.add(8)),
        _mm256_loadu_ps(x.add(16)),
        _mm256_loadu_ps(x.add(24)),
    ];
    let m = _mm256_max_ps(
        _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
        _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])),
    );
    let m4 = _mm_max_ps(_mm256_extractf128_ps::<1>(m), _mm256_castps256_ps128(m));
    let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    let m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    let amax = _mm_cvtss_f32(m4);
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let idv = _mm256_set1_ps(id);
    let mut q = [_mm256_setzero_si256(); 4];
    for k in 0..4 {
        let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(v[k], idv),
        );
        q[k] = _mm256_cvtps_epi32(r);
    }
    (d, q)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn store_q8(dst: *mut u8, q: &[__m256i; 4]) {
    let a = _mm256_packs_epi32(q[0], q[1]);
    let b = _mm256_packs_epi32(q[2], q[3]);
    let p = _mm256_packs_epi16(a, b);
    let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(dst as *mut __m256i, p);
}

/// AVX2 Q8_0 activation quantizer; same bytes as `generic::legacy::quantize_act_q8_0`.
/// `dst`: at least `src.len() / 32 * 34` bytes.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_row_q8_0(src: &[f32], dst: &mut [u8]) {
    let nb = src.len() / QK;
    assert!(src.len() % QK == 0 && dst.len() >= nb * Q8_0_BYTES);
    for i in 0..nb {
        let (d, q) = q8_block(src.as_ptr().add(i * QK));
        let b = &mut dst[i * Q8_0_BYTES..(i + 1) * Q8_0_BYTES];
        b[..2].copy_from_slice(&to_f16_bytes(d));
        store_q8(b.as_mut_ptr().add(2), &q);
    }
}

/// AVX2 Q8_1 activation quantizer; same bytes as `generic::legacy::quantize_act_q8_1`.
/// `dst`: at least `src.len() / 32 * 36` bytes.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_row_q8_1(src: &[f32], dst: &mut [u8]) {
    let nb = src.len() / QK;
    assert!(src.len() % QK == 0 && dst.len() >= nb * Q8_1_BYTES);
    for i in 0..nb {
        let (d, q) = q8_block(src.as_ptr().add(i * QK));
        let sum = hsum_i32x8(_mm256_add_epi32(
            _mm256_add_epi32(q[0], q[1]),
            _mm256_add_epi32(q[2], q[3]),
        ));
        let b = &mut dst[i * Q8_1_BYTES..(i + 1) * Q8_1_BYTES];
        b[..2].copy_from_slice(&to_f16_bytes(d));
        b[2..4].copy_from_slice(&to_f16_bytes(sum as f32 * d));
        store_q8(b.as_mut_ptr().add(4), &q);
    }
}
