//! AVX-512 Q4_0 and Q8_0 panels on 512-bit vectors: two repacked 8-row groups side by side
//! (lanes 0..8 group `g`, 8..16 group `g + 1`), as `kq_x16` does for the k-quants. Every lane
//! runs the steps of `legacy_x8`'s 256-bit tiles in their order, so the bits are theirs
//! (tested against the scalar twins); a final odd group and the rows past the last group go to
//! `legacy_x8::avx512`.
//!
//! Safety: as `legacy_x8`'s panels, on a CPU with AVX-512 F/BW/VL + VNNI.

#![allow(clippy::missing_safety_doc)] // the module docs state the contract
#![allow(clippy::too_many_arguments)]
#![allow(clippy::needless_range_loop)] // indexed loops over const-sized tiles read clearest

use std::arch::x86_64::*;

use super::kq_x16::{bcast4, halves16, join32, pairs_in};
use super::legacy_x8::{by_column_blocks, BlockSum};
use crate::generic::legacy::{Q8_0_BYTES, QK};
use crate::generic::repack::{x8off40, Q4_0_X8_BYTES, Q8_0_X8_BYTES, X8_ROWS};

/// Columns per Q4_0 tile and per Q8_0 tile (eight accumulators per output) in 32 registers.
const Q4_COLS: usize = 4;
const Q8_COLS: usize = 2;

/// Rows `r0..r1` of a repacked Q4_0 matrix times every column (`legacy_x8`'s contract).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn panel_q4_0_x8(
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

/// Rows `r0..r1` of a repacked Q8_0 matrix times every column (`legacy_x8`'s contract).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn panel_q8_0_x8(
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

/// Both panels (`Q8`: Q8_0, else Q4_0): the group pairs here, the rest in `legacy_x8`'s 256-bit
/// panel.
#[inline(always)]
unsafe fn panel<const Q8: bool>(
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
    let pairs = pairs_in(rows, r0, r1);
    walk::<Q8>(n, w, r0, pairs, a, arb, cols, y, ys);
    let rest = r0 + 2 * X8_ROWS * pairs;
    if rest < r1 {
        let tail = if Q8 {
            super::legacy_x8::avx512::panel_q8_0_x8
        } else {
            super::legacy_x8::avx512::panel_q4_0_x8
        };
        tail(n, w, rows, rest, r1, a, arb, cols, y, ys, slice_cols);
    }
}

/// `pairs` group pairs from row `r0` on times every column (`Q8`: Q8_0, else Q4_0).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn walk<const Q8: bool>(
    n: usize,
    w: &[u8],
    r0: usize,
    pairs: usize,
    a: &[u8],
    arb: usize,
    cols: usize,
    y: *mut f32,
    ys: usize,
) {
    if pairs == 0 || cols == 0 {
        return;
    }
    let nb = n / QK;
    let gb = nb * if Q8 { Q8_0_X8_BYTES } else { Q4_0_X8_BYTES };
    let (w, y) = (w.as_ptr().add(r0 / X8_ROWS * gb), y.add(r0));
    let ap = a.as_ptr();
    let step = if Q8 { Q8_COLS } else { Q4_COLS };
    by_column_blocks(nb, ap, arb, cols, |cb, ce, sp| {
        for p in 0..pairs {
            let (wp, yp) = (w.add(2 * p * gb), y.add(2 * p * X8_ROWS));
            let mut c = cb;
            while c < ce {
                let (s, yc, ac) = (sp.add((c - cb) * nb), yp.add(c * ys), ap.add(c * arb));
                let whole = c + step <= ce;
                match (Q8, whole) {
                    (true, true) => tile8::<Q8_COLS>(nb, wp, gb, ac, arb, s, yc, ys),
                    (true, false) => tile8::<1>(nb, wp, gb, ac, arb, s, yc, ys),
                    (false, true) => tile::<Q4_COLS>(nb, wp, gb, ac, arb, s, yc, ys),
                    (false, false) => tile::<1>(nb, wp, gb, ac, arb, s, yc, ys),
                }
                c += if whole { step } else { 1 };
            }
        }
    });
}

/// Q4_0: the 16 rows of groups `w`, `w + gb` times columns `a .. a + C arb` (block sums at
/// `s`, `nb` per column), into `y[c * ys + r]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile<const C: usize>(
    nb: usize,
    w: *const u8,
    gb: usize,
    a: *const u8,
    arb: usize,
    s: *const BlockSum,
    y: *mut f32,
    ys: usize,
) {
    let m4 = _mm512_set1_epi8(0x0f);
    let mut acc = [_mm512_setzero_ps(); C];
    for i in 0..nb {
        let x = w.add(i * Q4_0_X8_BYTES);
        let ya = a.add(i * Q8_0_BYTES + 2);
        let mut p = [_mm512_setzero_si512(); C];
        for v in 0..4 {
            let q = join32(x.add(x8off40::QS + 32 * v), gb);
            let ql = _mm512_and_si512(q, m4);
            let qh = _mm512_and_si512(_mm512_srli_epi16::<4>(q), m4);
            for c in 0..C {
                let yq = ya.add(c * arb + 4 * v);
                p[c] = _mm512_dpbusd_epi32(p[c], ql, bcast4(yq));
                p[c] = _mm512_dpbusd_epi32(p[c], qh, bcast4(yq.add(16)));
            }
        }
        let dw = halves16(x.add(x8off40::D), gb);
        for c in 0..C {
            let bs = *s.add(c * nb + i);
            // The exact block sum: less the 8 the unsigned nibbles carried.
            let si = _mm512_cvtepi32_ps(_mm512_sub_epi32(p[c], _mm512_set1_epi32(8 * bs.s)));
            let t = _mm512_mul_ps(_mm512_mul_ps(si, dw), _mm512_set1_ps(bs.d));
            acc[c] = _mm512_add_ps(acc[c], t);
        }
    }
    for c in 0..C {
        _mm512_storeu_ps(y.add(c * ys), acc[c]);
    }
}

/// Q8_0: the 16 rows of groups `w`, `w + gb` times columns `a .. a + C arb` (scales at `s`),
/// into `y[c * ys + r]`, with the row-major AVX2 dot's eight lane sums per output.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile8<const C: usize>(
    nb: usize,
    w: *const u8,
    gb: usize,
    a: *const u8,
    arb: usize,
    s: *const BlockSum,
    y: *mut f32,
    ys: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); 8]; C];
    for i in 0..nb {
        let x = w.add(i * Q8_0_X8_BYTES);
        let ya = a.add(i * Q8_0_BYTES + 2);
        let dw = halves16(x.add(x8off40::D), gb);
        let mut d = [dw; C];
        for c in 0..C {
            d[c] = _mm512_mul_ps(dw, _mm512_set1_ps((*s.add(c * nb + i)).d));
        }
        for v in 0..8 {
            let q = join32(x.add(x8off40::QS + 32 * v), gb);
            let qa = _mm512_abs_epi8(q);
            // The bytes where q < 0, whose activations change sign (`sign_epi8` on 256 bits;
            // q = 0 meets |q| = 0, so its sign does not matter).
            let neg = _mm512_movepi8_mask(q);
            for c in 0..C {
                let yb = bcast4(ya.add(c * arb + 4 * v));
                let yv = _mm512_mask_sub_epi8(yb, neg, _mm512_setzero_si512(), yb);
                let p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), qa, yv);
                acc[c][v] = _mm512_fmadd_ps(d[c], _mm512_cvtepi32_ps(p), acc[c][v]);
            }
        }
    }
    for c in 0..C {
        let l = &acc[c];
        // hsum_f32x8's tree, for 16 rows at once.
        let t = [0, 1, 2, 3].map(|k| _mm512_add_ps(l[k], l[k + 4]));
        let u0 = _mm512_add_ps(t[0], t[2]);
        let u1 = _mm512_add_ps(t[1], t[3]);
        _mm512_storeu_ps(y.add(c * ys), _mm512_add_ps(u0, u1));
    }
}
