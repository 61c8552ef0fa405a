//! The small vector steps of the Q4_K / Q6_K register tiles in `kq_panel`: horizontal sums,
//! f16 scales, scale and min broadcasts, Q6_K unpacking, tile stores, and each instruction
//! set's widening multiply-adds.

#![allow(clippy::missing_safety_doc)] // callers (kq_panel) state the contract

use std::arch::x86_64::*;

use super::kquants::load32;
use crate::generic::kquants::off;

/// Most outputs of one tile (two 8-lane float vectors).
pub(super) const MAX_OUT: usize = 16;

/// Lane k of the result is the sum of `v[k]`; integer, so exact in any order.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn hsum8(v: &[__m256i]) -> __m256i {
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

/// Two consecutive little-endian f16 at `p` as f32 (exact; F16C).
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn f16_pair(p: *const u8) -> (f32, f32) {
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128((p as *const i32).read_unaligned()));
    (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
}

/// One f16 at `p` as f32 (exact; F16C).
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn f16_one(p: *const u8) -> f32 {
    let h = (p as *const u16).read_unaligned() as i32;
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)))
}

/// Dword `j` (0..4) of `v` in all four dwords.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn bcast_dword(v: __m128i, j: usize) -> __m128i {
    match j {
        0 => _mm_shuffle_epi32::<0x00>(v),
        1 => _mm_shuffle_epi32::<0x55>(v),
        2 => _mm_shuffle_epi32::<0xaa>(v),
        _ => _mm_shuffle_epi32::<0xff>(v),
    }
}

/// A Q8_K block's 8 activation sums of 32 elements as i16 (|B| <= 32 * 128 fits).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn sub_sums(y: *const u8) -> __m128i {
    let p = y.add(off::Q8_BSUMS) as *const __m128i;
    _mm_hadd_epi16(p.read_unaligned(), p.add(1).read_unaligned())
}

/// For four Q8_K blocks: vector j holds each block's pair (B[2j], B[2j+1]) of 32-element
/// activation sums as i16, block c in dword c (a 4 x 4 transpose of the blocks' B vectors).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn pairs_by_slice(
    y0: *const u8,
    y1: *const u8,
    y2: *const u8,
    y3: *const u8,
) -> [__m128i; 4] {
    let (b0, b1, b2, b3) = (sub_sums(y0), sub_sums(y1), sub_sums(y2), sub_sums(y3));
    let t0 = _mm_unpacklo_epi32(b0, b1);
    let t1 = _mm_unpackhi_epi32(b0, b1);
    let t2 = _mm_unpacklo_epi32(b2, b3);
    let t3 = _mm_unpackhi_epi32(b2, b3);
    [
        _mm_unpacklo_epi64(t0, t2),
        _mm_unpackhi_epi64(t0, t2),
        _mm_unpacklo_epi64(t1, t3),
        _mm_unpackhi_epi64(t1, t3),
    ]
}

/// From `v` (dword l = four rows' bytes), dword `l` spread to 16 i16: row r's byte in i16
/// lanes 4 r..4 r + 4.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn row_scales(v: __m128i, l: usize) -> __m256i {
    let b = (4 * l) as i64;
    let pick = |k: i64| (b + k) * 0x0101_0101;
    let idx = _mm_set_epi64x(pick(3) << 32 | pick(2), pick(1) << 32 | pick(0));
    _mm256_cvtepu8_epi16(_mm_shuffle_epi8(v, idx))
}

/// Qword `k` (0 or 1) of `v` in both qwords.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn pick_qword(v: __m128i, k: usize) -> __m128i {
    if k == 0 {
        _mm_unpacklo_epi64(v, v)
    } else {
        _mm_unpackhi_epi64(v, v)
    }
}

/// The 8 mins of `sm` as 16 i16, each twice (m0 m0 m1 m1 ...), to pair with the 16 bsums.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn mins_dup(sm: __m128i) -> __m256i {
    let idx = _mm_set_epi8(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8);
    _mm256_cvtepu8_epi16(_mm_shuffle_epi8(sm, idx))
}

/// The 32 6-bit weights of group `g` (0..8) of a Q6_K block as u8 0..63.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn q6_group(x: *const u8, g: usize) -> __m256i {
    let (h, k) = (g / 4, g % 4);
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

/// Lanes `8 g..8 g + 8` of an R x C tile's outputs (k = r * C + c) as `f(r, c)`, zero past
/// `R * C`; built in registers (a store-and-reload would stall on store forwarding).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn lanes<const R: usize, const C: usize>(
    g: usize,
    f: impl Fn(usize, usize) -> f32,
) -> __m256 {
    let v: [f32; 8] = std::array::from_fn(|l| {
        let k = 8 * g + l;
        if k < R * C {
            f(k / C, k % C)
        } else {
            0.0
        }
    });
    _mm256_set_ps(v[7], v[6], v[5], v[4], v[3], v[2], v[1], v[0])
}

/// Writes the first `R * C` lanes of `v` (lane k = r * C + c) to `y[c * ys + r]`.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn store_tile<const R: usize, const C: usize>(
    v: &[__m256; 2],
    y: *mut f32,
    ys: usize,
) {
    let mut o = [0.0f32; MAX_OUT];
    _mm256_storeu_ps(o.as_mut_ptr(), v[0]);
    _mm256_storeu_ps(o.as_mut_ptr().add(8), v[1]);
    for r in 0..R {
        for c in 0..C {
            y.add(c * ys + r).write(o[r * C + c]);
        }
    }
}

/// `acc + madd(p, s)` with AVX2.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn mac_avx2(acc: __m256i, p: __m256i, s: __m256i) -> __m256i {
    _mm256_add_epi32(acc, _mm256_madd_epi16(p, s))
}

/// `acc + madd(p, s)` in one AVX-512 VNNI instruction (256-bit form).
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
pub(super) fn mac_vnni512(acc: __m256i, p: __m256i, s: __m256i) -> __m256i {
    _mm256_dpwssd_epi32(acc, p, s)
}

/// `acc + madd(p, s)` in one AVX-VNNI instruction.
#[inline]
#[target_feature(enable = "avx2,avxvnni")]
pub(super) fn mac_avxvnni(acc: __m256i, p: __m256i, s: __m256i) -> __m256i {
    _mm256_dpwssd_avx_epi32(acc, p, s)
}

/// Per 4-byte group, the exact i32 sum of `u8 x i8` products, with AVX2 (`maddubs`, then
/// `madd` by ones; no saturation for weights below 64).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn dot4_avx2(u: __m256i, y: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, y), _mm256_set1_epi16(1))
}

/// `acc + dot4_avx2(u, y)` (only the VNNI tables take this path; AVX2 keeps `maddubs` pairs).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn dpb_avx2(acc: __m256i, u: __m256i, y: __m256i) -> __m256i {
    _mm256_add_epi32(acc, dot4_avx2(u, y))
}

/// The same in one AVX-512 VNNI instruction.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
pub(super) fn dot4_vnni512(u: __m256i, y: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, y)
}

/// The same in one AVX-VNNI instruction.
#[inline]
#[target_feature(enable = "avx2,avxvnni")]
pub(super) fn dot4_avxvnni(u: __m256i, y: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, y)
}
