//! Q4_K and Q6_K kernels over the repacked layouts (`generic::repack`: 8 rows interleaved per
//! super-block), with the 8 rows' outputs in the lanes of one vector.
//!
//! Each 32-byte load of quants holds 4 bytes of each of the 8 rows; one activation dword,
//! broadcast, meets all 8 at once (`vpdpbusd`, or `maddubs` + `madd` on AVX2). So the
//! activation loads, the d and dmin conversion, the min terms and the float steps are shared
//! by 8 rows, no output needs a horizontal sum, and a decode step reads one contiguous stream
//! per thread instead of one per row.
//!
//! The arithmetic is that of the row-major kernels (`kq_panel`, `generic::kquants`): per
//! super-block (decode order) or per 64-element slice (prompt order) the exact integer sums
//! S and M of each output, then `acc = fma(S, d_w d_y, acc)` and
//! `acc_min = fma(M, dmin_w d_y, acc_min)` in the lanes, `acc - acc_min` at the end. So a
//! repacked matrix gives the same bits as the file's layout on every table (tested).
//!
//! Safety (every `panel_q4_k_x8`): the CPU has the table's features; `w` is a repacked
//! matrix of `rows` rows of `n` elements (`repack::q4_k_x8_size`); `r0` is a multiple of 8 and
//! `r1` one too or `rows`; `a` holds `cols` Q8_K rows `arb` bytes apart; `y` has
//! `(cols - 1) * ys + rows` writable floats of which this call alone writes rows `r0..r1`.

#![allow(clippy::missing_safety_doc)] // the module docs state the contract
#![allow(clippy::too_many_arguments)]
#![allow(clippy::needless_range_loop)] // indexed loops over const-sized tiles read clearest

use std::arch::x86_64::*;

use super::kq_ops::dpb_avx2;
use super::kquants::{load32, q8_d};
use crate::generic::kquants::{off, Q4_K_BLOCK_BYTES, Q6_K_BLOCK_BYTES, Q8_K_BLOCK_BYTES, QK_K};
use crate::generic::repack::{x8off, x8off6, Q4_K_X8_BYTES, Q6_K_X8_BYTES, X8_ROWS};

/// Activation columns that stay in L2 while every row group passes over them.
const COL_BLOCK: usize = 64;

/// Four activation bytes at `p`, in every dword.
#[inline(always)]
pub(super) unsafe fn bcast4(p: *const u8) -> __m256i {
    _mm256_set1_epi32((p as *const i32).read_unaligned())
}

macro_rules! x8_panels {
    ($feat:literal, $vnni:literal, $dpb:path, $c:literal, $rowmajor:path, $rowmajor6:path) => {
        use super::*;

        /// Rows `r0..r1` of a repacked Q4_K matrix times every column: see the module docs.
        #[target_feature(enable = $feat)]
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

        /// Rows `r0..r1` of a repacked Q6_K matrix times every column (Q6_K has one order).
        #[target_feature(enable = $feat)]
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
            _slice_cols: usize,
        ) {
            panel::<true>(n, w, rows, r0, r1, a, arb, cols, y, ys, 0)
        }

        /// Both panels (`Q6`: Q6_K, else Q4_K): the whole groups in `r0..r1` in tiles, the
        /// first `slice_cols` columns in the prompt order; the rows past the last group stay
        /// row-major and go to the row-major panel.
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
            let (ty, xb, bb) = if Q6 {
                (crate::GgmlType::Q6_K, Q6_K_X8_BYTES, Q6_K_BLOCK_BYTES)
            } else {
                (crate::GgmlType::Q4_K, Q4_K_X8_BYTES, Q4_K_BLOCK_BYTES)
            };
            let nb = n / QK_K;
            let groups = rows / X8_ROWS;
            debug_assert!(r0 % X8_ROWS == 0 && r0 <= r1 && r1 <= rows);
            debug_assert!(w.len() >= crate::generic::repack::x8_size(ty, rows, n));
            let (g0, g1) = (r0 / X8_ROWS, (r1 / X8_ROWS).min(groups));
            let gb = nb * xb;
            let sc = slice_cols.min(cols);
            if g0 < g1 {
                let (wg, yg, ng) = (w.as_ptr().add(g0 * gb), y.add(g0 * X8_ROWS), g1 - g0);
                walk::<Q6, true>(nb, wg, gb, ng, a.as_ptr(), arb, sc, yg, ys);
                let (a2, y2) = (a.as_ptr().add(sc * arb), yg.add(sc * ys));
                walk::<Q6, false>(nb, wg, gb, ng, a2, arb, cols - sc, y2, ys);
            }
            let t0 = r0.max(groups * X8_ROWS);
            if t0 < r1 {
                let rb = nb * bb;
                let tail = &w[groups * gb + (t0 - groups * X8_ROWS) * rb..];
                let row_major: crate::dispatch::PanelFn = if Q6 { $rowmajor6 } else { $rowmajor };
                row_major(
                    n,
                    tail,
                    rb,
                    r1 - t0,
                    a,
                    arb,
                    cols,
                    y.add(t0),
                    ys,
                    slice_cols,
                );
            }
        }

        /// One tile of the format (`Q6`: Q6_K, else Q4_K in `SLICE` order).
        #[inline(always)]
        unsafe fn tile_of<const Q6: bool, const SLICE: bool, const C: usize>(
            nb: usize,
            w: *const u8,
            a: *const u8,
            arb: usize,
            y: *mut f32,
            ys: usize,
        ) {
            if Q6 {
                tile6::<C>(nb, w, a, arb, y, ys)
            } else {
                tile::<SLICE, C>(nb, w, a, arb, y, ys)
            }
        }

        /// `groups` row groups (`gb` bytes apart) times `cols` columns.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn walk<const Q6: bool, const SLICE: bool>(
            nb: usize,
            w: *const u8,
            gb: usize,
            groups: usize,
            a: *const u8,
            arb: usize,
            cols: usize,
            y: *mut f32,
            ys: usize,
        ) {
            if cols == 1 {
                for g in 0..groups {
                    tile_of::<Q6, SLICE, 1>(nb, w.add(g * gb), a, arb, y.add(g * X8_ROWS), ys);
                }
                return;
            }
            for cb in (0..cols).step_by(COL_BLOCK) {
                let ce = (cb + COL_BLOCK).min(cols);
                for g in 0..groups {
                    let (wg, yg) = (w.add(g * gb), y.add(g * X8_ROWS));
                    let mut c = cb;
                    while c + $c <= ce {
                        tile_of::<Q6, SLICE, $c>(nb, wg, a.add(c * arb), arb, yg.add(c * ys), ys);
                        c += $c;
                    }
                    while c < ce {
                        tile_of::<Q6, SLICE, 1>(nb, wg, a.add(c * arb), arb, yg.add(c * ys), ys);
                        c += 1;
                    }
                }
            }
        }

        /// The 8 rows of group `w` times columns `a .. a + C arb`, into `y[c * ys + r]`.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn tile<const SLICE: bool, const C: usize>(
            nb: usize,
            w: *const u8,
            a: *const u8,
            arb: usize,
            y: *mut f32,
            ys: usize,
        ) {
            let m4 = _mm256_set1_epi8(0x0f);
            // Dword j of `hadd(bsums, bsums)` holds slice j's two sub-block sums, for these j.
            let pair_idx = [0, 1, 4, 5];
            let mut acc = [_mm256_setzero_ps(); C];
            let mut acc_min = [_mm256_setzero_ps(); C];
            for i in 0..nb {
                let x = w.add(i * Q4_K_X8_BYTES);
                let mut yb = [a; C];
                for c in 0..C {
                    yb[c] = a.add(c * arb + i * Q8_K_BLOCK_BYTES);
                }
                // The min terms first: their FMA chain is separate from the scale terms'.
                let dmw = _mm256_cvtph_ps(_mm_loadu_si128(x.add(x8off::DMIN) as *const __m128i));
                for c in 0..C {
                    let bs = load32(yb[c].add(off::Q8_BSUMS));
                    let bp = _mm256_hadd_epi16(bs, bs);
                    let ml = _mm256_mul_ps(dmw, _mm256_set1_ps(q8_d(yb[c])));
                    let mut msum = _mm256_setzero_si256();
                    for j in 0..4 {
                        let mn = _mm256_cvtepu8_epi16(_mm_loadu_si128(
                            x.add(x8off::MINS + 16 * j) as *const __m128i
                        ));
                        let b = _mm256_permutevar8x32_epi32(bp, _mm256_set1_epi32(pair_idx[j]));
                        let m = _mm256_madd_epi16(mn, b);
                        if SLICE {
                            acc_min[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(m), ml, acc_min[c]);
                        } else {
                            msum = _mm256_add_epi32(msum, m);
                        }
                    }
                    if !SLICE {
                        acc_min[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum), ml, acc_min[c]);
                    }
                }
                let dw = _mm256_cvtph_ps(_mm_loadu_si128(x.add(x8off::D) as *const __m128i));
                let mut isum = [_mm256_setzero_si256(); C];
                for j in 0..4 {
                    let mut lo = [_mm256_setzero_si256(); C];
                    let mut hi = [_mm256_setzero_si256(); C];
                    if $vnni {
                        for k in 0..8 {
                            let q = load32(x.add(x8off::QS + 256 * j + 32 * k));
                            let ql = _mm256_and_si256(q, m4);
                            let qh = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
                            for c in 0..C {
                                let yq = yb[c].add(off::Q8_QS + 64 * j + 4 * k);
                                lo[c] = $dpb(lo[c], ql, bcast4(yq));
                                hi[c] = $dpb(hi[c], qh, bcast4(yq.add(32)));
                            }
                        }
                    } else {
                        // AVX2: `maddubs` pairs summed in i16 over 4 groups (8 products of at
                        // most 15 * 128 each fit), then one `madd` to i32.
                        let ones = _mm256_set1_epi16(1);
                        for k4 in 0..2 {
                            let mut pl = [_mm256_setzero_si256(); C];
                            let mut ph = [_mm256_setzero_si256(); C];
                            for k in 4 * k4..4 * k4 + 4 {
                                let q = load32(x.add(x8off::QS + 256 * j + 32 * k));
                                let ql = _mm256_and_si256(q, m4);
                                let qh = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
                                for c in 0..C {
                                    let yq = yb[c].add(off::Q8_QS + 64 * j + 4 * k);
                                    let tl = _mm256_maddubs_epi16(ql, bcast4(yq));
                                    let th = _mm256_maddubs_epi16(qh, bcast4(yq.add(32)));
                                    pl[c] = _mm256_add_epi16(pl[c], tl);
                                    ph[c] = _mm256_add_epi16(ph[c], th);
                                }
                            }
                            for c in 0..C {
                                lo[c] = _mm256_add_epi32(lo[c], _mm256_madd_epi16(pl[c], ones));
                                hi[c] = _mm256_add_epi32(hi[c], _mm256_madd_epi16(ph[c], ones));
                            }
                        }
                    }
                    let sp = x.add(x8off::SCALES + 16 * j);
                    let s_lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64(sp as *const __m128i));
                    let s_hi = _mm256_cvtepu8_epi32(_mm_loadl_epi64(sp.add(8) as *const __m128i));
                    for c in 0..C {
                        let s = _mm256_add_epi32(
                            _mm256_mullo_epi32(lo[c], s_lo),
                            _mm256_mullo_epi32(hi[c], s_hi),
                        );
                        if SLICE {
                            let dl = _mm256_mul_ps(dw, _mm256_set1_ps(q8_d(yb[c])));
                            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), dl, acc[c]);
                        } else {
                            isum[c] = _mm256_add_epi32(isum[c], s);
                        }
                    }
                }
                if !SLICE {
                    for c in 0..C {
                        let dl = _mm256_mul_ps(dw, _mm256_set1_ps(q8_d(yb[c])));
                        acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[c]), dl, acc[c]);
                    }
                }
            }
            for c in 0..C {
                _mm256_storeu_ps(y.add(c * ys), _mm256_sub_ps(acc[c], acc_min[c]));
            }
        }

        /// Q6_K: the 8 rows of group `w` times columns `a .. a + C arb`. Per super-block the
        /// exact S = sum_s sc_s (q · y)_s - 32 sum_s sc_s B_s of each output (q the unsigned
        /// 6-bit values, B the 16-element activation sums), then `acc = fma(d_w S, d_y, acc)`.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn tile6<const C: usize>(
            nb: usize,
            w: *const u8,
            a: *const u8,
            arb: usize,
            y: *mut f32,
            ys: usize,
        ) {
            use x8off6::*;
            let m4 = _mm256_set1_epi8(0x0f);
            let m30 = _mm256_set1_epi8(0x30);
            // Byte shuffles that spread the even / odd sub-block's i16 scale of each pair
            // over both halves of its dword (AVX2's `madd` by scale).
            let (e0, e1, e2, e3) = (0x0100_0100, 0x0504_0504, 0x0908_0908, 0x0d0c_0d0c);
            let dup_even = _mm256_setr_epi32(e0, e1, e2, e3, e0, e1, e2, e3);
            let dup_odd = _mm256_add_epi8(dup_even, _mm256_set1_epi8(2));
            let mut acc = [_mm256_setzero_ps(); C];
            for i in 0..nb {
                let x = w.add(i * Q6_K_X8_BYTES);
                let mut yb = [a; C];
                for c in 0..C {
                    yb[c] = a.add(c * arb + i * Q8_K_BLOCK_BYTES);
                }
                let mut isum = [_mm256_setzero_si256(); C];
                let mut offs = [_mm256_setzero_si256(); C];
                for t in 0..8 {
                    // Lane r: row r's scales of sub-blocks 2t and 2t + 1 as an i16 pair.
                    let scp = _mm256_cvtepi8_epi16(_mm_loadu_si128(
                        x.add(SCALES + 16 * t) as *const __m128i
                    ));
                    for c in 0..C {
                        let b = bcast4(yb[c].add(off::Q8_BSUMS + 4 * t));
                        offs[c] = _mm256_add_epi32(offs[c], _mm256_madd_epi16(scp, b));
                    }
                    for h in 0..2 {
                        let s = 2 * t + h;
                        let p = x.add(QS + SUB * s);
                        let (ql0, ql1, qh) = (load32(p), load32(p.add(32)), load32(p.add(64)));
                        let v = [
                            _mm256_or_si256(
                                _mm256_and_si256(ql0, m4),
                                _mm256_and_si256(_mm256_slli_epi16::<4>(qh), m30),
                            ),
                            _mm256_or_si256(
                                _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4),
                                _mm256_and_si256(_mm256_slli_epi16::<2>(qh), m30),
                            ),
                            _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(qh, m30)),
                            _mm256_or_si256(
                                _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4),
                                _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m30),
                            ),
                        ];
                        if $vnni {
                            let sc = if h == 0 {
                                _mm256_srai_epi32::<16>(_mm256_slli_epi32::<16>(scp))
                            } else {
                                _mm256_srai_epi32::<16>(scp)
                            };
                            for c in 0..C {
                                let yq = yb[c].add(off::Q8_QS + 16 * s);
                                let mut d = _mm256_setzero_si256();
                                for k in 0..4 {
                                    d = $dpb(d, v[k], bcast4(yq.add(4 * k)));
                                }
                                isum[c] = _mm256_add_epi32(isum[c], _mm256_mullo_epi32(d, sc));
                            }
                        } else {
                            // Two `maddubs` of at most 2 * 63 * 128 each fit an i16; `madd`
                            // by the scale (both halves of the dword) widens and scales.
                            let scs =
                                _mm256_shuffle_epi8(scp, if h == 0 { dup_even } else { dup_odd });
                            for c in 0..C {
                                let yq = yb[c].add(off::Q8_QS + 16 * s);
                                let p01 = _mm256_add_epi16(
                                    _mm256_maddubs_epi16(v[0], bcast4(yq)),
                                    _mm256_maddubs_epi16(v[1], bcast4(yq.add(4))),
                                );
                                let p23 = _mm256_add_epi16(
                                    _mm256_maddubs_epi16(v[2], bcast4(yq.add(8))),
                                    _mm256_maddubs_epi16(v[3], bcast4(yq.add(12))),
                                );
                                let d = _mm256_add_epi32(
                                    _mm256_madd_epi16(p01, scs),
                                    _mm256_madd_epi16(p23, scs),
                                );
                                isum[c] = _mm256_add_epi32(isum[c], d);
                            }
                        }
                    }
                }
                let dw = _mm256_cvtph_ps(_mm_loadu_si128(x.add(D) as *const __m128i));
                for c in 0..C {
                    let s = _mm256_sub_epi32(isum[c], _mm256_slli_epi32::<5>(offs[c]));
                    let t = _mm256_mul_ps(dw, _mm256_cvtepi32_ps(s));
                    acc[c] = _mm256_fmadd_ps(t, _mm256_set1_ps(q8_d(yb[c])), acc[c]);
                }
            }
            for c in 0..C {
                _mm256_storeu_ps(y.add(c * ys), acc[c]);
            }
        }
    };
}

/// AVX2 + FMA + F16C (16 registers: 2-column tiles). Without VNNI the tiles take the
/// `maddubs` path; `dpb_avx2` only fills the macro's slot.
pub mod avx2 {
    x8_panels!(
        "avx2,fma,f16c",
        false,
        dpb_avx2,
        2,
        crate::arch::x86_64::kq_panel::avx2::panel_q4_k,
        crate::arch::x86_64::kq_panel::avx2::panel_q6_k
    );
}

/// AVX-512 F/BW/VL + VNNI on 256-bit vectors (32 registers: 4-column tiles): the group left
/// over when `kq_x16`'s 512-bit panels have taken the pairs.
pub mod avx512 {
    x8_panels!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        true,
        _mm256_dpbusd_epi32,
        4,
        crate::arch::x86_64::kq_panel::avx512::panel_q4_k,
        crate::arch::x86_64::kq_panel::avx512::panel_q6_k
    );
}

/// AVX2 + AVX-VNNI (16 registers: 2-column tiles).
pub mod avxvnni {
    x8_panels!(
        "avx2,fma,f16c,avxvnni",
        true,
        _mm256_dpbusd_avx_epi32,
        2,
        crate::arch::x86_64::kq_panel::avxvnni::panel_q4_k,
        crate::arch::x86_64::kq_panel::avxvnni::panel_q6_k
    );
}
