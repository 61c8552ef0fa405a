//! Q4_0 and Q8_0 kernels over the repacked layouts (`generic::repack`: 8 rows interleaved per
//! block), with the 8 rows' outputs in the lanes of one vector, as `kq_x8` does for the
//! k-quants. Each 32-byte load of quants holds 4 bytes of each of the 8 rows, which meet one
//! broadcast activation dword.
//!
//! Q4_0: the low nibbles meet the dword `4 v` and the high nibbles the one 16 elements on
//! (`vpdpbusd`, or `maddubs` summed in i16 on AVX2: 8 products of at most 15 * 127 per lane
//! fit). The nibbles are the unsigned q; the `- 8` of every weight is taken off once per block
//! and column as `8 * sum(y)`, from a table of the activation blocks' sums made once per call.
//!
//! Per block and output that is the exact integer sum S, then the scalar dot's float step
//! `sum += (S d_w) d_y` (`generic::legacy::vec_dot_q4_0`), so these kernels give the scalar
//! table's bits on every table (tested).
//!
//! Q8_0: |q| meets the activations with q's sign (`vpdpbusd`, or `maddubs` + `madd`), and each
//! load's lane sums, elements `4 v..4 v + 4` of each row, are exactly the lane sums of the
//! row-major AVX2 dot. So the kernel keeps that dot's eight accumulators per output (vector
//! `v` holding lane `v` of the 8 rows) and its final sum tree: the bits of llama.cpp's x86
//! order (`generic::legacy::vec_dot_q8_0_lanes`), which a golden model's greedy tokens need.
//!
//! Safety (every `panel_*_x8`): the CPU has the table's features; `w` is a repacked Q4_0 or
//! Q8_0 matrix of `rows` rows of `n` elements (`repack::x8_size`); `r0` is a multiple of 8 and `r1`
//! one too or `rows`; `a` holds `cols` Q8_0 rows `arb` bytes apart whose quants lie in
//! -127..=127 (what the activation quantizer writes); `y` has `(cols - 1) * ys + rows` writable
//! floats of which this call alone writes rows `r0..r1`.

#![allow(clippy::missing_safety_doc)] // the module docs state the contract
#![allow(clippy::too_many_arguments)]
#![allow(clippy::needless_range_loop)] // indexed loops over const-sized tiles read clearest

use std::arch::x86_64::*;
use std::cell::Cell;

use super::hsum_i32x8;
use super::kq_x8::bcast4;
use super::legacy::{cvt4, f16_bits, load32};
use crate::generic::legacy::{Q4_0_BYTES, Q8_0_BYTES, QK};
use crate::generic::repack::{x8off40, Q4_0_X8_BYTES, Q8_0_X8_BYTES, X8_ROWS};

/// Activation columns whose block sums are tabled at once (and stay in L2 while every row
/// group passes over them).
const COL_BLOCK: usize = 64;

/// One activation block: the sum of its quants, and its scale.
#[derive(Clone, Copy, Default)]
pub(super) struct BlockSum {
    pub(super) s: i32,
    pub(super) d: f32,
}

thread_local! {
    /// Each thread's table of block sums, grown as needed and kept between calls.
    static SUMS: Cell<Vec<BlockSum>> = const { Cell::new(Vec::new()) };
}

/// The block sums of `cols` Q8_0 columns of `nb` blocks (`arb` bytes apart) into `out`,
/// column after column.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn block_sums(nb: usize, a: *const u8, arb: usize, cols: usize, out: &mut [BlockSum]) {
    let (ones8, ones16) = (_mm256_set1_epi8(1), _mm256_set1_epi16(1));
    for c in 0..cols {
        for i in 0..nb {
            let p = a.add(c * arb + i * Q8_0_BYTES);
            let s = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, load32(p.add(2))), ones16);
            out[c * nb + i] = BlockSum {
                s: hsum_i32x8(s),
                d: _mm_cvtss_f32(cvt4(f16_bits(p))),
            };
        }
    }
}

/// `cols` Q8_0 columns of `nb` blocks (`arb` bytes apart at `a`) in blocks of `COL_BLOCK`,
/// each block's activation sums tabled first: `f(cb, ce, sums)` for columns `cb..ce`, their
/// sums `nb` per column from column `cb` on. Shared by the 256- and 512-bit panels.
#[inline(always)]
pub(super) unsafe fn by_column_blocks(
    nb: usize,
    a: *const u8,
    arb: usize,
    cols: usize,
    mut f: impl FnMut(usize, usize, *const BlockSum),
) {
    let mut sums = SUMS.take();
    let need = nb * cols.min(COL_BLOCK);
    if sums.len() < need {
        sums.resize(need, BlockSum::default());
    }
    for cb in (0..cols).step_by(COL_BLOCK) {
        let ce = (cb + COL_BLOCK).min(cols);
        block_sums(nb, a.add(cb * arb), arb, ce - cb, &mut sums);
        f(cb, ce, sums.as_ptr());
    }
    SUMS.set(sums);
}

macro_rules! legacy_x8_panels {
    ($feat:literal, $vnni:literal, $dpb:path, $c:literal, $c8:literal) => {
        use super::*;

        /// Rows `r0..r1` of a repacked Q4_0 matrix times every column: see the module docs.
        #[target_feature(enable = $feat)]
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
            _slice_cols: usize,
        ) {
            panel::<false>(n, w, rows, r0, r1, a, arb, cols, y, ys)
        }

        /// Rows `r0..r1` of a repacked Q8_0 matrix times every column: see the module docs.
        #[target_feature(enable = $feat)]
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
            _slice_cols: usize,
        ) {
            panel::<true>(n, w, rows, r0, r1, a, arb, cols, y, ys)
        }

        /// Both panels (`Q8`: Q8_0, else Q4_0). The rows past the last group take the scalar
        /// dot (no real model has them).
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
        ) {
            let (ty, xb, bb) = if Q8 {
                (crate::GgmlType::Q8_0, Q8_0_X8_BYTES, Q8_0_BYTES)
            } else {
                (crate::GgmlType::Q4_0, Q4_0_X8_BYTES, Q4_0_BYTES)
            };
            let nb = n / QK;
            let groups = rows / X8_ROWS;
            let gb = nb * xb;
            debug_assert!(r0 % X8_ROWS == 0 && r0 <= r1 && r1 <= rows);
            debug_assert!(w.len() >= crate::generic::repack::x8_size(ty, rows, n));
            let (g0, g1) = (r0 / X8_ROWS, (r1 / X8_ROWS).min(groups));
            if g0 < g1 && cols > 0 {
                let ap = a.as_ptr();
                by_column_blocks(nb, ap, arb, cols, |cb, ce, sp| {
                    for g in g0..g1 {
                        let (wg, yg) = (w.as_ptr().add(g * gb), y.add(g * X8_ROWS));
                        let mut c = cb;
                        let step = if Q8 { $c8 } else { $c };
                        while c + step <= ce {
                            let (s, yc) = (sp.add((c - cb) * nb), yg.add(c * ys));
                            if Q8 {
                                tile8::<$c8>(nb, wg, ap.add(c * arb), arb, s, yc, ys);
                            } else {
                                tile::<$c>(nb, wg, ap.add(c * arb), arb, s, yc, ys);
                            }
                            c += step;
                        }
                        while c < ce {
                            let (s, yc) = (sp.add((c - cb) * nb), yg.add(c * ys));
                            if Q8 {
                                tile8::<1>(nb, wg, ap.add(c * arb), arb, s, yc, ys);
                            } else {
                                tile::<1>(nb, wg, ap.add(c * arb), arb, s, yc, ys);
                            }
                            c += 1;
                        }
                    }
                });
            }
            let dot = if Q8 {
                crate::generic::legacy::vec_dot_q8_0_lanes
            } else {
                crate::generic::legacy::vec_dot_q4_0
            };
            let rb = nb * bb;
            for r in r0.max(groups * X8_ROWS)..r1 {
                let row = &w[groups * gb + (r - groups * X8_ROWS) * rb..][..rb];
                for c in 0..cols {
                    y.add(c * ys + r).write(dot(n, row, &a[c * arb..]));
                }
            }
        }

        /// Q4_0: the 8 rows of group `w` times columns `a .. a + C arb` (block sums at `s`,
        /// `nb` per column), into `y[c * ys + r]`.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn tile<const C: usize>(
            nb: usize,
            w: *const u8,
            a: *const u8,
            arb: usize,
            s: *const BlockSum,
            y: *mut f32,
            ys: usize,
        ) {
            let m4 = _mm256_set1_epi8(0x0f);
            let mut acc = [_mm256_setzero_ps(); C];
            for i in 0..nb {
                let x = w.add(i * Q4_0_X8_BYTES);
                let ya = a.add(i * Q8_0_BYTES + 2);
                let mut p = [_mm256_setzero_si256(); C];
                for v in 0..4 {
                    let q = load32(x.add(x8off40::QS + 32 * v));
                    let ql = _mm256_and_si256(q, m4);
                    let qh = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
                    for c in 0..C {
                        let yq = ya.add(c * arb + 4 * v);
                        if $vnni {
                            p[c] = $dpb(p[c], ql, bcast4(yq));
                            p[c] = $dpb(p[c], qh, bcast4(yq.add(16)));
                        } else {
                            let t = _mm256_add_epi16(
                                _mm256_maddubs_epi16(ql, bcast4(yq)),
                                _mm256_maddubs_epi16(qh, bcast4(yq.add(16))),
                            );
                            p[c] = _mm256_add_epi16(p[c], t);
                        }
                    }
                }
                let dw = _mm256_cvtph_ps(_mm_loadu_si128(x.add(x8off40::D) as *const __m128i));
                for c in 0..C {
                    let bs = *s.add(c * nb + i);
                    let p32 = if $vnni {
                        p[c]
                    } else {
                        _mm256_madd_epi16(p[c], _mm256_set1_epi16(1))
                    };
                    // The exact block sum: less the 8 the unsigned nibbles carried.
                    let si = _mm256_cvtepi32_ps(_mm256_sub_epi32(p32, _mm256_set1_epi32(8 * bs.s)));
                    let t = _mm256_mul_ps(_mm256_mul_ps(si, dw), _mm256_set1_ps(bs.d));
                    acc[c] = _mm256_add_ps(acc[c], t);
                }
            }
            for c in 0..C {
                _mm256_storeu_ps(y.add(c * ys), acc[c]);
            }
        }

        /// Q8_0: the 8 rows of group `w` times columns `a .. a + C arb` (scales at `s`), into
        /// `y[c * ys + r]`, with the row-major AVX2 dot's eight lane sums per output.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn tile8<const C: usize>(
            nb: usize,
            w: *const u8,
            a: *const u8,
            arb: usize,
            s: *const BlockSum,
            y: *mut f32,
            ys: usize,
        ) {
            let ones = _mm256_set1_epi16(1);
            let mut acc = [[_mm256_setzero_ps(); 8]; C];
            for i in 0..nb {
                let x = w.add(i * Q8_0_X8_BYTES);
                let ya = a.add(i * Q8_0_BYTES + 2);
                let dw = _mm256_cvtph_ps(_mm_loadu_si128(x.add(x8off40::D) as *const __m128i));
                let mut d = [dw; C];
                for c in 0..C {
                    d[c] = _mm256_mul_ps(dw, _mm256_set1_ps((*s.add(c * nb + i)).d));
                }
                for v in 0..8 {
                    let q = load32(x.add(x8off40::QS + 32 * v));
                    let qa = _mm256_sign_epi8(q, q);
                    for c in 0..C {
                        let yv = _mm256_sign_epi8(bcast4(ya.add(c * arb + 4 * v)), q);
                        let p = if $vnni {
                            $dpb(_mm256_setzero_si256(), qa, yv)
                        } else {
                            _mm256_madd_epi16(_mm256_maddubs_epi16(qa, yv), ones)
                        };
                        acc[c][v] = _mm256_fmadd_ps(d[c], _mm256_cvtepi32_ps(p), acc[c][v]);
                    }
                }
            }
            for c in 0..C {
                let l = &acc[c];
                // hsum_f32x8's tree, for 8 rows at once.
                let t = [0, 1, 2, 3].map(|k| _mm256_add_ps(l[k], l[k + 4]));
                let u0 = _mm256_add_ps(t[0], t[2]);
                let u1 = _mm256_add_ps(t[1], t[3]);
                _mm256_storeu_ps(y.add(c * ys), _mm256_add_ps(u0, u1));
            }
        }
    };
}

/// AVX2 + FMA + F16C (16 registers: 2-column Q4_0 tiles, 1-column Q8_0 ones). Without VNNI the tiles take the
/// `maddubs` path; `dpb_avx2` only fills the macro's slot.
pub mod avx2 {
    legacy_x8_panels!(
        "avx2,fma,f16c",
        false,
        crate::arch::x86_64::kq_ops::dpb_avx2,
        2,
        1
    );
}

/// AVX-512 F/BW/VL + VNNI on 256-bit vectors (32 registers: 4-column Q4_0 tiles, 2-column
/// Q8_0 ones): the group left over when `legacy_x16`'s 512-bit panels have taken the pairs.
pub mod avx512 {
    legacy_x8_panels!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        true,
        _mm256_dpbusd_epi32,
        4,
        2
    );
}

/// AVX2 + AVX-VNNI (16 registers: 2-column Q4_0 tiles, 1-column Q8_0 ones).
pub mod avxvnni {
    legacy_x8_panels!("avx2,fma,f16c,avxvnni", true, _mm256_dpbusd_avx_epi32, 2, 1);
}
