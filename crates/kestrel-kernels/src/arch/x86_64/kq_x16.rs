//! AVX-512 Q4_K and Q6_K panels on 512-bit vectors: two repacked 8-row groups side by side, so
//! one vector holds 16 rows' outputs. Lanes 0..8 are group `g`, lanes 8..16 group `g + 1`; the
//! layout is the 8-row one (`generic::repack`), each 512-bit operand joined from the two
//! groups' 256-bit pieces, and the activations are broadcast as on 256 bits.
//!
//! Why: with VNNI the 256-bit tiles spend most of their time in `vpdpbusd`; a 512-bit one does
//! 16 rows' work for the same issue slot, and the per-super-block work (scales, mins, the float
//! steps, the activation broadcasts) is shared by twice the rows.
//!
//! Every lane runs the same integer sums and float steps in the same order as the 256-bit tiles
//! of `kq_x8`, so the results are the same bits (tested against the scalar twins). A final odd
//! group and the row-major rows past the last group go to `kq_x8::avx512`.
//!
//! Safety: as `kq_x8`'s panels, on a CPU with AVX-512 F/BW/VL + VNNI.

#![allow(clippy::missing_safety_doc)] // the module docs state the contract
#![allow(clippy::too_many_arguments)]
#![allow(clippy::needless_range_loop)] // indexed loops over const-sized tiles read clearest

use std::arch::x86_64::*;

use super::kquants::q8_d;
use crate::generic::kquants::{off, Q8_K_BLOCK_BYTES, QK_K};
use crate::generic::repack::{x8off, x8off6, Q4_K_X8_BYTES, Q6_K_X8_BYTES, X8_ROWS};

/// Activation columns that stay in L2 while every row pair passes over them.
const COL_BLOCK: usize = 64;
/// Columns per tile (32 registers: 4 columns' accumulators and partial sums fit).
const TILE_COLS: usize = 4;

/// 32 bytes at `p` (group g) and at `p + gap` (group g + 1) as one vector.
#[inline(always)]
pub(super) unsafe fn join32(p: *const u8, gap: usize) -> __m512i {
    let lo = _mm256_loadu_si256(p as *const __m256i);
    let hi = _mm256_loadu_si256(p.add(gap) as *const __m256i);
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// 16 bytes at `p` and at `p + gap` as one 256-bit vector.
#[inline(always)]
unsafe fn join16(p: *const u8, gap: usize) -> __m256i {
    let lo = _mm_loadu_si128(p as *const __m128i);
    let hi = _mm_loadu_si128(p.add(gap) as *const __m128i);
    _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi)
}

/// 8 bytes at `p` and at `p + gap` as one 128-bit vector.
#[inline(always)]
unsafe fn join8(p: *const u8, gap: usize) -> __m128i {
    let lo = _mm_loadl_epi64(p as *const __m128i);
    let hi = _mm_loadl_epi64(p.add(gap) as *const __m128i);
    _mm_unpacklo_epi64(lo, hi)
}

/// The 16 rows' f16 values at `p` and `p + gap` (8 each) in f32.
#[inline(always)]
pub(super) unsafe fn halves16(p: *const u8, gap: usize) -> __m512 {
    _mm512_cvtph_ps(join16(p, gap))
}

/// Four activation bytes at `p`, in every dword.
#[inline(always)]
pub(super) unsafe fn bcast4(p: *const u8) -> __m512i {
    _mm512_set1_epi32((p as *const i32).read_unaligned())
}

/// Rows `r0..r1` of a repacked Q4_K matrix times every column (`kq_x8`'s contract).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn panel_q4_k_x8(
    n: usize,
    w: &[u8],
    rows: usize,
    r0: usize,
    r1: usize,
    a: &[u8],
    arb: usize,
    cols: usize,
    y: *mut f32,
    ys: usize,
    slice_cols: usize,
) {
    panel::<false>(n, w, rows, r0, r1, a, arb, cols, y, ys, slice_cols)
}

/// Rows `r0..r1` of a repacked Q6_K matrix times every column (`kq_x8`'s contract).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn panel_q6_k_x8(
    n: usize,
    w: &[u8],
    rows: usize,
    r0: usize,
    r1: usize,
    a: &[u8],
    arb: usize,
    cols: usize,
    y: *mut f32,
    ys: usize,
    slice_cols: usize,
) {
    panel::<true>(n, w, rows, r0, r1, a, arb, cols, y, ys, slice_cols)
}

/// Both panels (`Q6`: Q6_K, else Q4_K, whose first `slice_cols` columns take the prompt
/// order): the group pairs here, the rest in `kq_x8`'s 256-bit panel.
#[inline(always)]
unsafe fn panel<const Q6: bool>(
    n: usize,
    w: &[u8],
    rows: usize,
    r0: usize,
    r1: usize,
    a: &[u8],
    arb: usize,
    cols: usize,
    y: *mut f32,
    ys: usize,
    slice_cols: usize,
) {
    let (ty, xb) = if Q6 {
        (crate::GgmlType::Q6_K, Q6_K_X8_BYTES)
    } else {
        (crate::GgmlType::Q4_K, Q4_K_X8_BYTES)
    };
    let pairs = pairs_in(rows, r0, r1);
    if pairs > 0 {
        let nb = n / QK_K;
        debug_assert!(w.len() >= crate::generic::repack::x8_size(ty, rows, n));
        let gb = nb * xb;
        let (wg, yg) = (w.as_ptr().add(r0 / X8_ROWS * gb), y.add(r0));
        let sc = if Q6 { 0 } else { slice_cols.min(cols) };
        walk::<Q6, true>(nb, wg, gb, pairs, a.as_ptr(), arb, sc, yg, ys);
        let (a2, y2) = (a.as_ptr().add(sc * arb), yg.add(sc * ys));
        walk::<Q6, false>(nb, wg, gb, pairs, a2, arb, cols - sc, y2, ys);
    }
    let rest = r0 + 2 * X8_ROWS * pairs;
    if rest < r1 {
        let tail = if Q6 {
            super::kq_x8::avx512::panel_q6_k_x8
        } else {
            super::kq_x8::avx512::panel_q4_k_x8
        };
        tail(n, w, rows, rest, r1, a, arb, cols, y, ys, slice_cols);
    }
}

/// Whole pairs of interleaved groups in rows `r0..r1` (`r0` a multiple of 8).
pub(super) fn pairs_in(rows: usize, r0: usize, r1: usize) -> usize {
    debug_assert!(r0 % X8_ROWS == 0 && r0 <= r1 && r1 <= rows);
    let (g0, g1) = (r0 / X8_ROWS, (r1 / X8_ROWS).min(rows / X8_ROWS));
    g1.saturating_sub(g0) / 2
}

/// `pairs` group pairs (`2 gb` bytes apart) times `cols` columns; `Q6`: Q6_K, else Q4_K in
/// `SLICE` order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn walk<const Q6: bool, const SLICE: bool>(
    nb: usize,
    w: *const u8,
    gb: usize,
    pairs: usize,
    a: *const u8,
    arb: usize,
    cols: usize,
    y: *mut f32,
    ys: usize,
) {
    for cb in (0..cols).step_by(COL_BLOCK) {
        let ce = (cb + COL_BLOCK).min(cols);
        for p in 0..pairs {
            let (wp, yp) = (w.add(2 * p * gb), y.add(2 * p * X8_ROWS));
            let mut c = cb;
            while c + TILE_COLS <= ce {
                let (ac, yc) = (a.add(c * arb), yp.add(c * ys));
                tile_of::<Q6, SLICE, TILE_COLS>(nb, wp, gb, ac, arb, yc, ys);
                c += TILE_COLS;
            }
            while c < ce {
                let (ac, yc) = (a.add(c * arb), yp.add(c * ys));
                tile_of::<Q6, SLICE, 1>(nb, wp, gb, ac, arb, yc, ys);
                c += 1;
            }
        }
    }
}

/// One tile of the format (`Q6`: Q6_K, else Q4_K in `SLICE` order).
#[inline(always)]
unsafe fn tile_of<const Q6: bool, const SLICE: bool, const C: usize>(
    nb: usize,
    w: *const u8,
    gb: usize,
    a: *const u8,
    arb: usize,
    y: *mut f32,
    ys: usize,
) {
    if Q6 {
        tile6::<C>(nb, w, gb, a, arb, y, ys)
    } else {
        tile::<SLICE, C>(nb, w, gb, a, arb, y, ys)
    }
}

/// Q4_K: the 16 rows of groups `w`, `w + gb` times columns `a .. a + C arb`, into
/// `y[c * ys + r]`; the steps of `kq_x8`'s `tile`, lane for lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile<const SLICE: bool, const C: usize>(
    nb: usize,
    w: *const u8,
    gb: usize,
    a: *const u8,
    arb: usize,
    y: *mut f32,
    ys: usize,
) {
    let m4 = _mm512_set1_epi8(0x0f);
    // Dword j of `hadd(bsums, bsums)` holds slice j's two sub-block sums, for these j.
    let pair_idx = [0, 1, 4, 5];
    let mut acc = [_mm512_setzero_ps(); C];
    let mut acc_min = [_mm512_setzero_ps(); C];
    for i in 0..nb {
        let x = w.add(i * Q4_K_X8_BYTES);
        let mut yb = [a; C];
        for c in 0..C {
            yb[c] = a.add(c * arb + i * Q8_K_BLOCK_BYTES);
        }
        let dmw = halves16(x.add(x8off::DMIN), gb);
        for c in 0..C {
            let bs = _mm256_loadu_si256(yb[c].add(off::Q8_BSUMS) as *const __m256i);
            let bp = _mm512_castsi256_si512(_mm256_hadd_epi16(bs, bs));
            let ml = _mm512_mul_ps(dmw, _mm512_set1_ps(q8_d(yb[c])));
            let mut msum = _mm512_setzero_si512();
            for j in 0..4 {
                let mn = _mm512_cvtepu8_epi16(join16(x.add(x8off::MINS + 16 * j), gb));
                let b = _mm512_permutexvar_epi32(_mm512_set1_epi32(pair_idx[j]), bp);
                let m = _mm512_madd_epi16(mn, b);
                if SLICE {
                    acc_min[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(m), ml, acc_min[c]);
                } else {
                    msum = _mm512_add_epi32(msum, m);
                }
            }
            if !SLICE {
                acc_min[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(msum), ml, acc_min[c]);
            }
        }
        let dw = halves16(x.add(x8off::D), gb);
        let mut isum = [_mm512_setzero_si512(); C];
        for j in 0..4 {
            let mut lo = [_mm512_setzero_si512(); C];
            let mut hi = [_mm512_setzero_si512(); C];
            for k in 0..8 {
                let q = join32(x.add(x8off::QS + 256 * j + 32 * k), gb);
                let ql = _mm512_and_si512(q, m4);
                let qh = _mm512_and_si512(_mm512_srli_epi16::<4>(q), m4);
                for c in 0..C {
                    let yq = yb[c].add(off::Q8_QS + 64 * j + 4 * k);
                    lo[c] = _mm512_dpbusd_epi32(lo[c], ql, bcast4(yq));
                    hi[c] = _mm512_dpbusd_epi32(hi[c], qh, bcast4(yq.add(32)));
                }
            }
            let sp = x.add(x8off::SCALES + 16 * j);
            let s_lo = _mm512_cvtepu8_epi32(join8(sp, gb));
            let s_hi = _mm512_cvtepu8_epi32(join8(sp.add(8), gb));
            for c in 0..C {
                let s = _mm512_add_epi32(
                    _mm512_mullo_epi32(lo[c], s_lo),
                    _mm512_mullo_epi32(hi[c], s_hi),
                );
                if SLICE {
                    let dl = _mm512_mul_ps(dw, _mm512_set1_ps(q8_d(yb[c])));
                    acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), dl, acc[c]);
                } else {
                    isum[c] = _mm512_add_epi32(isum[c], s);
                }
            }
        }
        if !SLICE {
            for c in 0..C {
                let dl = _mm512_mul_ps(dw, _mm512_set1_ps(q8_d(yb[c])));
                acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[c]), dl, acc[c]);
            }
        }
    }
    for c in 0..C {
        _mm512_storeu_ps(y.add(c * ys), _mm512_sub_ps(acc[c], acc_min[c]));
    }
}

/// Q6_K: the 16 rows of groups `w`, `w + gb` times columns `a .. a + C arb`; the steps of
/// `kq_x8`'s `tile6` (VNNI branch), lane for lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile6<const C: usize>(
    nb: usize,
    w: *const u8,
    gb: usize,
    a: *const u8,
    arb: usize,
    y: *mut f32,
    ys: usize,
) {
    use x8off6::*;
    let m4 = _mm512_set1_epi8(0x0f);
    let m30 = _mm512_set1_epi8(0x30);
    let mut acc = [_mm512_setzero_ps(); C];
    for i in 0..nb {
        let x = w.add(i * Q6_K_X8_BYTES);
        let mut yb = [a; C];
        for c in 0..C {
            yb[c] = a.add(c * arb + i * Q8_K_BLOCK_BYTES);
        }
        let mut isum = [_mm512_setzero_si512(); C];
        let mut offs = [_mm512_setzero_si512(); C];
        for t in 0..8 {
            // Lane r: row r's scales of sub-blocks 2t and 2t + 1 as an i16 pair.
            let scp = _mm512_cvtepi8_epi16(join16(x.add(SCALES + 16 * t), gb));
            for c in 0..C {
                let b = bcast4(yb[c].add(off::Q8_BSUMS + 4 * t));
                offs[c] = _mm512_add_epi32(offs[c], _mm512_madd_epi16(scp, b));
            }
            for h in 0..2 {
                let s = 2 * t + h;
                let p = x.add(QS + SUB * s);
                let (ql0, ql1, qh) = (join32(p, gb), join32(p.add(32), gb), join32(p.add(64), gb));
                let v = [
                    _mm512_or_si512(
                        _mm512_and_si512(ql0, m4),
                        _mm512_and_si512(_mm512_slli_epi16::<4>(qh), m30),
                    ),
                    _mm512_or_si512(
                        _mm512_and_si512(_mm512_srli_epi16::<4>(ql0), m4),
                        _mm512_and_si512(_mm512_slli_epi16::<2>(qh), m30),
                    ),
                    _mm512_or_si512(_mm512_and_si512(ql1, m4), _mm512_and_si512(qh, m30)),
                    _mm512_or_si512(
                        _mm512_and_si512(_mm512_srli_epi16::<4>(ql1), m4),
                        _mm512_and_si512(_mm512_srli_epi16::<2>(qh), m30),
                    ),
                ];
                let sc = if h == 0 {
                    _mm512_srai_epi32::<16>(_mm512_slli_epi32::<16>(scp))
                } else {
                    _mm512_srai_epi32::<16>(scp)
                };
                for c in 0..C {
                    let yq = yb[c].add(off::Q8_QS + 16 * s);
                    let mut d = _mm512_setzero_si512();
                    for k in 0..4 {
                        d = _mm512_dpbusd_epi32(d, v[k], bcast4(yq.add(4 * k)));
                    }
                    isum[c] = _mm512_add_epi32(isum[c], _mm512_mullo_epi32(d, sc));
                }
            }
        }
        let dw = halves16(x.add(D), gb);
        for c in 0..C {
            let s = _mm512_sub_epi32(isum[c], _mm512_slli_epi32::<5>(offs[c]));
            let t = _mm512_mul_ps(dw, _mm512_cvtepi32_ps(s));
            acc[c] = _mm512_fmadd_ps(t, _mm512_set1_ps(q8_d(yb[c])), acc[c]);
        }
    }
    for c in 0..C {
        _mm512_storeu_ps(y.add(c * ys), acc[c]);
    }
}
