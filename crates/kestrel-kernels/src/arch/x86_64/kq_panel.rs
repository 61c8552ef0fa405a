//! Q4_K and Q6_K matrix kernels: a panel of weight rows times every activation column, in
//! register tiles of R rows x C columns, for decode (one column) and prompt batches alike.
//!
//! Every output is computed with a fixed arithmetic, whatever the tile shape, the batch size
//! or the instruction set. Per super-block (or, for Q4_K in llama.cpp's prompt order, per
//! 64-element slice) it takes an exact integer sum, so the order of the integer additions
//! cannot matter. The float steps of the scalar twins (`generic::kquants::vec_dot_q4_k`,
//! `vec_dot_q4_k_prompt`, `vec_dot_q6_k`) follow, up to 8 outputs at once as the lanes of one
//! vector FMA, one rounding per lane exactly as the scalar `mul_add`. So a token's logits do not
//! depend on what else is in its batch, and the AVX2, AVX-512 VNNI and AVX-VNNI tables give
//! the same bits.
//!
//! The instruction sets differ in three ways:
//! - the scaled widening add of the `maddubs` pair sums: AVX2 uses `madd` then `add`, VNNI one
//!   `vpdpwssd`;
//! - the tiles: AVX-512's 32 vector registers hold a 4 x 4 tile, AVX2's 16 a 2 x 4 one;
//! - the VNNI tables' Q4_K prompt tile (`tile_q4_k_slices`) keeps the outputs in the lanes.
//!
//! Decode tiles are one row: interleaving the streams of several rows defeats the prefetcher.
//!
//! Safety (every `panel_*`): the CPU has the features of its table; `w` holds `rows` rows of
//! `n / 256` blocks, `wrb` bytes apart; `a` holds `cols` rows of Q8_K blocks, `arb` bytes
//! apart; `y` has `(cols - 1) * ys + rows` writable floats that no one else touches.

#![allow(clippy::missing_safety_doc)] // the module docs state the contract
#![allow(clippy::too_many_arguments)]
#![allow(clippy::manual_is_multiple_of)] // MSRV 1.85
#![allow(clippy::needless_range_loop)] // indexed loops over const-sized tiles read clearest

use std::arch::x86_64::*;

use super::kq_ops::*;
use super::kquants::{bcast_u8_i16, check, load32, q8_d, scale_pair_from, scales_mins_k4};
use super::panel_walk::{walk, Panel, Tiles};
use crate::generic::kquants::{off, Q4_K_BLOCK_BYTES, Q6_K_BLOCK_BYTES, Q8_K_BLOCK_BYTES, QK_K};

/// The panel and tile functions of one instruction set: `$feat` its target features, `$mac`
/// its scaled widening add, `$dot4` / `$dpb` its plain 4-byte dot (with `$vnni`, one
/// instruction), `$r4 x $c4` / `$r6 x $c6` its Q4_K / Q6_K prompt tiles.
macro_rules! panels {
    ($feat:literal, $mac:path, $dot4:path, $vnni:literal, $dpb:path, $r4:literal x $c4:literal, $r6:literal x $c6:literal) => {
        use super::*;

        /// Q4_K: see the module docs.
        #[target_feature(enable = $feat)]
        pub unsafe fn panel_q4_k(
            n: usize,
            w: &[u8],
            wrb: usize,
            rows: usize,
            a: &[u8],
            arb: usize,
            cols: usize,
            y: *mut f32,
            ys: usize,
            slice_cols: usize,
        ) {
            debug_assert!(rows == 0 || w.len() >= (rows - 1) * wrb + n / QK_K * Q4_K_BLOCK_BYTES);
            debug_assert!(cols == 0 || a.len() >= (cols - 1) * arb + n / QK_K * Q8_K_BLOCK_BYTES);
            let p = Panel::new(n / QK_K, w, wrb, a, arb, y, ys);
            let sc = slice_cols.min(cols);
            if sc > 0 {
                walk::<Kq<false, true>, $r4, $c4>(&Kq(p), rows, sc);
            }
            if sc < cols {
                let rest = Panel {
                    a: p.a.add(sc * arb),
                    y: p.y.add(sc * ys),
                    ..p
                };
                walk::<Kq<false, false>, $r4, $c4>(&Kq(rest), rows, cols - sc);
            }
        }

        /// Q6_K: see the module docs.
        #[target_feature(enable = $feat)]
        pub unsafe fn panel_q6_k(
            n: usize,
            w: &[u8],
            wrb: usize,
            rows: usize,
            a: &[u8],
            arb: usize,
            cols: usize,
            y: *mut f32,
            ys: usize,
            _slice_cols: usize,
        ) {
            debug_assert!(rows == 0 || w.len() >= (rows - 1) * wrb + n / QK_K * Q6_K_BLOCK_BYTES);
            debug_assert!(cols == 0 || a.len() >= (cols - 1) * arb + n / QK_K * Q8_K_BLOCK_BYTES);
            let p = Panel::new(n / QK_K, w, wrb, a, arb, y, ys);
            walk::<Kq<true, false>, $r6, $c6>(&Kq(p), rows, cols)
        }

        /// One Q4_K row · one Q8_K column (the 1 x 1 tile).
        #[target_feature(enable = $feat)]
        pub unsafe fn vec_dot_q4_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
            let nb = check(n, w, Q4_K_BLOCK_BYTES, a);
            gemv_q4_k(nb, w.as_ptr(), a.as_ptr())
        }

        /// One Q6_K row · one Q8_K column (the 1 x 1 tile).
        #[target_feature(enable = $feat)]
        pub unsafe fn vec_dot_q6_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
            let nb = check(n, w, Q6_K_BLOCK_BYTES, a);
            let mut y = 0.0f32;
            tile_q6_k::<1, 1>(nb, w.as_ptr(), 0, a.as_ptr(), 0, &mut y, 1);
            y
        }

        /// A panel of one weight format (`Q6`: Q6_K, else Q4_K) in one Q4_K order (`SLICE`:
        /// the prompt order).
        struct Kq<const Q6: bool, const SLICE: bool>(Panel);

        impl<const Q6: bool, const SLICE: bool> Tiles for Kq<Q6, SLICE> {
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn tile<const R: usize, const C: usize>(&self, r: usize, c: usize) {
                let p = &self.0;
                let (w, a, y) = p.at(r, c);
                if Q6 {
                    tile_q6_k::<R, C>(p.nb, w, p.wrb, a, p.arb, y, p.ys)
                } else if R == 1 && C == 1 && !SLICE {
                    y.write(gemv_q4_k(p.nb, w, a))
                } else if SLICE && $vnni && R == 4 && C % 2 == 0 {
                    tile_q4_k_slices::<C>(p.nb, w, p.wrb, a, p.arb, y, p.ys)
                } else {
                    tile_q4_k::<SLICE, R, C>(p.nb, w, p.wrb, a, p.arb, y, p.ys)
                }
            }
        }

        /// R x C outputs of Q4_K. Decode order (`SLICE` false, `vec_dot_q4_k`): per
        /// super-block the exact scale sum S and min sum M of each output, then
        /// `acc = fma(S, d_w d_y, acc)` and `acc_min = fma(M, dmin_w d_y, acc_min)`. Prompt order
        /// (`SLICE` true, `vec_dot_q4_k_prompt`): the same per 64-element slice. `acc - acc_min`
        /// at the end.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn tile_q4_k<const SLICE: bool, const R: usize, const C: usize>(
            nb: usize,
            w: *const u8,
            wrb: usize,
            a: *const u8,
            arb: usize,
            y: *mut f32,
            ys: usize,
        ) {
            const { assert!(R * C <= MAX_OUT, "tile too large") };
            let m4 = _mm256_set1_epi8(0x0f);
            let groups = (R * C).div_ceil(8);
            let mut acc = [_mm256_setzero_ps(); 2];
            let mut acc_min = [_mm256_setzero_ps(); 2];
            for i in 0..nb {
                let x: [*const u8; R] =
                    std::array::from_fn(|r| w.add(r * wrb + i * Q4_K_BLOCK_BYTES));
                let yb: [*const u8; C] =
                    std::array::from_fn(|c| a.add(c * arb + i * Q8_K_BLOCK_BYTES));
                // Loops, not `from_fn`: a closure does not inherit the target features, so its
                // calls to feature-gated helpers would not be inlined.
                let mut sm = [_mm_setzero_si128(); R];
                let mut dd = [(0.0f32, 0.0f32); R];
                for r in 0..R {
                    sm[r] =
                        scales_mins_k4(std::slice::from_raw_parts(x[r].add(off::Q4_SCALES), 12));
                    dd[r] = f16_pair(x[r].add(off::Q4_D));
                }
                let yd: [f32; C] = std::array::from_fn(|c| q8_d(yb[c]));
                let mut dl = [_mm256_setzero_ps(); 2];
                let mut ml = [_mm256_setzero_ps(); 2];
                for g in 0..groups {
                    dl[g] = lanes::<R, C>(g, |r, c| dd[r].0 * yd[c]);
                    ml[g] = lanes::<R, C>(g, |r, c| dd[r].1 * yd[c]);
                }
                let mut m16 = [_mm_setzero_si128(); R];
                let mut bt = [_mm_setzero_si128(); 4];
                if SLICE && C == 4 {
                    for r in 0..R {
                        m16[r] = _mm_cvtepu8_epi16(_mm_srli_si128::<8>(sm[r]));
                    }
                    bt = pairs_by_slice(yb[0], yb[1 % C], yb[2 % C], yb[3 % C]);
                }
                let mut s = [[_mm256_setzero_si256(); C]; R];
                for j in 0..4 {
                    for r in 0..R {
                        let qs = load32(x[r].add(off::Q4_QS + 32 * j));
                        let lo = _mm256_and_si256(qs, m4);
                        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(qs), m4);
                        let s_lo = bcast_u8_i16(sm[r], 2 * j);
                        let s_hi = bcast_u8_i16(sm[r], 2 * j + 1);
                        for c in 0..C {
                            let y_lo = load32(yb[c].add(off::Q8_QS + 64 * j));
                            let y_hi = load32(yb[c].add(off::Q8_QS + 64 * j + 32));
                            s[r][c] = $mac(s[r][c], _mm256_maddubs_epi16(lo, y_lo), s_lo);
                            s[r][c] = $mac(s[r][c], _mm256_maddubs_epi16(hi, y_hi), s_hi);
                        }
                    }
                    if SLICE {
                        let mut fs = [_mm256_setzero_si256(); MAX_OUT];
                        for r in 0..R {
                            for c in 0..C {
                                fs[r * C + c] = s[r][c];
                                s[r][c] = _mm256_setzero_si256();
                            }
                        }
                        let mj = slice_mins::<R, C>(&sm, &m16, &bt, &yb, j);
                        for g in 0..groups {
                            let sv = _mm256_cvtepi32_ps(hsum8(&fs[8 * g..8 * g + 8]));
                            acc[g] = _mm256_fmadd_ps(sv, dl[g], acc[g]);
                            acc_min[g] =
                                _mm256_fmadd_ps(_mm256_cvtepi32_ps(mj[g]), ml[g], acc_min[g]);
                        }
                    }
                }
                if !SLICE {
                    let mut fs = [_mm256_setzero_si256(); MAX_OUT];
                    let mut fm = [_mm256_setzero_si256(); MAX_OUT];
                    for r in 0..R {
                        let md = mins_dup(sm[r]);
                        for c in 0..C {
                            let bsums = load32(yb[c].add(off::Q8_BSUMS));
                            fs[r * C + c] = s[r][c];
                            fm[r * C + c] = _mm256_madd_epi16(bsums, md);
                        }
                    }
                    for g in 0..groups {
                        let sv = _mm256_cvtepi32_ps(hsum8(&fs[8 * g..8 * g + 8]));
                        let mv = _mm256_cvtepi32_ps(hsum8(&fm[8 * g..8 * g + 8]));
                        acc[g] = _mm256_fmadd_ps(sv, dl[g], acc[g]);
                        acc_min[g] = _mm256_fmadd_ps(mv, ml[g], acc_min[g]);
                    }
                }
            }
            let res = [
                _mm256_sub_ps(acc[0], acc_min[0]),
                _mm256_sub_ps(acc[1], acc_min[1]),
            ];
            store_tile::<R, C>(&res, y, ys);
        }

        /// One Q4_K row · one Q8_K column in decode order, bit-identical to the 1 x 1 tile but
        /// cheaper where nothing is shared between outputs: each 32-element sub-block's plain
        /// dot (`$dot4`) goes into a lane, the scales multiply the 8 lanes at once, and the
        /// horizontal sums of four super-blocks (scale and min) come out of one reduction.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn gemv_q4_k(nb: usize, x: *const u8, y: *const u8) -> f32 {
            // Exact sums first, the float steps after, a chunk at a time: the super-blocks'
            // integer work is then independent, not queued behind the FMA chain.
            const CHUNK: usize = 64;
            let m4 = _mm256_set1_epi8(0x0f);
            let (mut acc, mut acc_min) = (0.0f32, 0.0f32);
            let mut ss = [0i32; CHUNK];
            let mut ms = [0i32; CHUNK];
            let mut d = [0.0f32; CHUNK];
            let mut dmin = [0.0f32; CHUNK];
            let mut c0 = 0;
            while c0 < nb {
                let cn = (nb - c0).min(CHUNK);
                let mut i = 0;
                while i < cn {
                    let m = (cn - i).min(4);
                    // v[k]: super-block i + k's scaled sub-block sums; v[4 + k]: its min terms.
                    let mut v = [_mm256_setzero_si256(); 8];
                    for k in 0..m {
                        let xb = x.add((c0 + i + k) * Q4_K_BLOCK_BYTES);
                        let yb = y.add((c0 + i + k) * Q8_K_BLOCK_BYTES);
                        let sm =
                            scales_mins_k4(std::slice::from_raw_parts(xb.add(off::Q4_SCALES), 12));
                        // The scales as i32 in memory, each broadcast by a load (no shuffle).
                        let mut sc = [0i32; 8];
                        let scv = _mm256_cvtepu8_epi32(sm);
                        _mm256_storeu_si256(sc.as_mut_ptr() as *mut __m256i, scv);
                        let mut sv = _mm256_setzero_si256();
                        for j in 0..4 {
                            let qs = load32(xb.add(off::Q4_QS + 32 * j));
                            let lo = _mm256_and_si256(qs, m4);
                            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(qs), m4);
                            let t0 = $dot4(lo, load32(yb.add(off::Q8_QS + 64 * j)));
                            let t1 = $dot4(hi, load32(yb.add(off::Q8_QS + 64 * j + 32)));
                            let s0 = _mm256_set1_epi32(sc[2 * j]);
                            let s1 = _mm256_set1_epi32(sc[2 * j + 1]);
                            sv = _mm256_add_epi32(sv, _mm256_mullo_epi32(t0, s0));
                            sv = _mm256_add_epi32(sv, _mm256_mullo_epi32(t1, s1));
                        }
                        v[k] = sv;
                        let bs = load32(yb.add(off::Q8_BSUMS));
                        v[4 + k] = _mm256_madd_epi16(bs, mins_dup(sm));
                        let (dw, dmw) = f16_pair(xb.add(off::Q4_D));
                        let yd = q8_d(yb);
                        d[i + k] = dw * yd;
                        dmin[i + k] = dmw * yd;
                    }
                    let mut o = [0i32; 8];
                    _mm256_storeu_si256(o.as_mut_ptr() as *mut __m256i, hsum8(&v));
                    for k in 0..m {
                        ss[i + k] = o[k];
                        ms[i + k] = o[4 + k];
                    }
                    i += m;
                }
                for i in 0..cn {
                    acc = (ss[i] as f32).mul_add(d[i], acc);
                    acc_min = (ms[i] as f32).mul_add(dmin[i], acc_min);
                }
                c0 += cn;
            }
            acc - acc_min
        }

        /// 4 x C outputs of Q4_K in prompt order (`vec_dot_q4_k_prompt`), `C` even, with the
        /// outputs in the lanes: each 32-byte weight vector holds 8 bytes of each of the 4 rows
        /// (a 4 x 4 transpose of their 8-byte chunks, once per tile and slice) against 8
        /// activation bytes broadcast to all four, so a column's accumulator has two lanes per
        /// row and one `hadd` of two columns gives 8 outputs' slice sums, where the row-major
        /// tile needs a full horizontal sum per output and slice. Same bits as that tile.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn tile_q4_k_slices<const C: usize>(
            nb: usize,
            w: *const u8,
            wrb: usize,
            a: *const u8,
            arb: usize,
            y: *mut f32,
            ys: usize,
        ) {
            debug_assert!(C % 2 == 0 && C <= 4, "two or four columns");
            let m4 = _mm256_set1_epi8(0x0f);
            // Lane l of group g is row 2 (l / 4) + l % 2, column 2 g + (l % 4) / 2.
            let rc = |g: usize, l: usize| (2 * (l / 4) + l % 2, 2 * g + (l % 4) / 2);
            let mut acc = [_mm256_setzero_ps(); 2];
            let mut acc_min = [_mm256_setzero_ps(); 2];
            for i in 0..nb {
                let x: [*const u8; 4] =
                    std::array::from_fn(|r| w.add(r * wrb + i * Q4_K_BLOCK_BYTES));
                let yb: [*const u8; C] =
                    std::array::from_fn(|c| a.add(c * arb + i * Q8_K_BLOCK_BYTES));
                let mut sm = [_mm_setzero_si128(); 4];
                let mut dd = [(0.0f32, 0.0f32); 4];
                for r in 0..4 {
                    sm[r] =
                        scales_mins_k4(std::slice::from_raw_parts(x[r].add(off::Q4_SCALES), 12));
                    dd[r] = f16_pair(x[r].add(off::Q4_D));
                }
                let yd: [f32; C] = std::array::from_fn(|c| q8_d(yb[c]));
                let mut dl = [_mm256_setzero_ps(); 2];
                let mut ml = [_mm256_setzero_ps(); 2];
                for g in 0..C / 2 {
                    let v: [f32; 8] = std::array::from_fn(|l| {
                        let (r, c) = rc(g, l);
                        dd[r].0 * yd[c]
                    });
                    dl[g] = _mm256_loadu_ps(v.as_ptr());
                    let v: [f32; 8] = std::array::from_fn(|l| {
                        let (r, c) = rc(g, l);
                        dd[r].1 * yd[c]
                    });
                    ml[g] = _mm256_loadu_ps(v.as_ptr());
                }
                // Dword l of `sc[h]`: the 4 rows' scale bytes of sub-block 4 h + l.
                let s01 = _mm_unpacklo_epi8(sm[0], sm[1]);
                let s23 = _mm_unpacklo_epi8(sm[2], sm[3]);
                let sc = [_mm_unpacklo_epi16(s01, s23), _mm_unpackhi_epi16(s01, s23)];
                // The rows' mins as i16, pairs (m[2j], m[2j+1]) per dword.
                let mut m16 = [_mm_setzero_si128(); 4];
                for r in 0..4 {
                    m16[r] = _mm_cvtepu8_epi16(_mm_srli_si128::<8>(sm[r]));
                }
                let m01 = [
                    _mm_unpacklo_epi32(m16[0], m16[1]),
                    _mm_unpackhi_epi32(m16[0], m16[1]),
                ];
                let m23 = [
                    _mm_unpacklo_epi32(m16[2], m16[3]),
                    _mm_unpackhi_epi32(m16[2], m16[3]),
                ];
                let bt = pairs_by_slice(yb[0], yb[1 % C], yb[2 % C], yb[3 % C]);
                for j in 0..4 {
                    let mut q = [_mm256_setzero_si256(); 4];
                    for r in 0..4 {
                        q[r] = load32(x[r].add(off::Q4_QS + 32 * j));
                    }
                    let t0 = _mm256_unpacklo_epi64(q[0], q[1]);
                    let t1 = _mm256_unpackhi_epi64(q[0], q[1]);
                    let t2 = _mm256_unpacklo_epi64(q[2], q[3]);
                    let t3 = _mm256_unpackhi_epi64(q[2], q[3]);
                    let wv = [
                        _mm256_permute2x128_si256::<0x20>(t0, t2),
                        _mm256_permute2x128_si256::<0x20>(t1, t3),
                        _mm256_permute2x128_si256::<0x31>(t0, t2),
                        _mm256_permute2x128_si256::<0x31>(t1, t3),
                    ];
                    // Loops, not `from_fn`: closures do not inherit the target features.
                    let mut lo = [_mm256_setzero_si256(); 4];
                    let mut hi = [_mm256_setzero_si256(); 4];
                    for m in 0..4 {
                        lo[m] = _mm256_and_si256(wv[m], m4);
                        hi[m] = _mm256_and_si256(_mm256_srli_epi16::<4>(wv[m]), m4);
                    }
                    // i16 lanes 4 r..4 r + 4: row r's scale of sub-block 2 j (lo) / 2 j + 1 (hi).
                    let s_lo = row_scales(sc[(2 * j) / 4], (2 * j) % 4);
                    let s_hi = row_scales(sc[(2 * j + 1) / 4], (2 * j + 1) % 4);
                    // The same scales in the low i16 of each dword (rows 2 lanes each), zero high.
                    let keep_lo = _mm256_set1_epi32(0xffff);
                    let (s_lo_w, s_hi_w) = (
                        _mm256_and_si256(s_lo, keep_lo),
                        _mm256_and_si256(s_hi, keep_lo),
                    );
                    let mut sums = [_mm256_setzero_si256(); C];
                    for c in 0..C {
                        let yq = yb[c].add(off::Q8_QS + 64 * j);
                        let bc = |o: usize| {
                            _mm256_set1_epi64x((yq.add(o) as *const i64).read_unaligned())
                        };
                        if $vnni {
                            // Plain sums per sub-block (|lane| <= 16 * 15 * 128 fits i16), then
                            // one `madd` by the scales in the low halves: 5 multiplies per
                            // sub-block instead of 8.
                            let (mut tl, mut th) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                            for m in 0..4 {
                                tl = $dpb(tl, lo[m], bc(8 * m));
                                th = $dpb(th, hi[m], bc(32 + 8 * m));
                            }
                            sums[c] = _mm256_add_epi32(
                                _mm256_madd_epi16(tl, s_lo_w),
                                _mm256_madd_epi16(th, s_hi_w),
                            );
                        } else {
                            for m in 0..4 {
                                let (alo, ahi) = (bc(8 * m), bc(32 + 8 * m));
                                sums[c] = $mac(sums[c], _mm256_maddubs_epi16(lo[m], alo), s_lo);
                                sums[c] = $mac(sums[c], _mm256_maddubs_epi16(hi[m], ahi), s_hi);
                            }
                        }
                    }
                    // (m[2j], m[2j+1]) of rows 0, 1, 0, 1 | 2, 3, 2, 3.
                    let xj = _mm256_set_m128i(
                        pick_qword(m23[j / 2], j % 2),
                        pick_qword(m01[j / 2], j % 2),
                    );
                    for g in 0..C / 2 {
                        let sv = _mm256_hadd_epi32(sums[2 * g], sums[2 * g + 1]);
                        // (B[2j], B[2j+1]) of columns 2g, 2g, 2g+1, 2g+1 in both halves.
                        let b = if g == 0 {
                            _mm_unpacklo_epi32(bt[j], bt[j])
                        } else {
                            _mm_unpackhi_epi32(bt[j], bt[j])
                        };
                        let mv = _mm256_madd_epi16(xj, _mm256_set_m128i(b, b));
                        acc[g] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sv), dl[g], acc[g]);
                        acc_min[g] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mv), ml[g], acc_min[g]);
                    }
                }
            }
            for g in 0..C / 2 {
                let mut o = [0.0f32; 8];
                _mm256_storeu_ps(o.as_mut_ptr(), _mm256_sub_ps(acc[g], acc_min[g]));
                for (l, v) in o.iter().enumerate() {
                    let (r, c) = rc(g, l);
                    y.add(c * ys + r).write(*v);
                }
            }
        }

        /// Slice `j`'s min sums `m[2j] B[2j] + m[2j+1] B[2j+1]` of an R x C tile in output lanes
        /// (k = r * C + c), B the activation sums of the 32-element sub-blocks. Four columns:
        /// from `bt` ([`pairs_by_slice`]) and the rows' mins as i16 (`m16`), one `madd` per 8
        /// outputs; other widths (remainder columns only) lane by lane.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn slice_mins<const R: usize, const C: usize>(
            sm: &[__m128i; R],
            m16: &[__m128i; R],
            bt: &[__m128i; 4],
            yb: &[*const u8; C],
            j: usize,
        ) -> [__m256i; 2] {
            let mut out = [_mm256_setzero_si256(); 2];
            if C == 4 {
                let yj = _mm256_set_m128i(bt[j], bt[j]);
                for g in 0..R.div_ceil(2) {
                    let lo = bcast_dword(m16[2 * g], j);
                    let hi = if 2 * g + 1 < R {
                        bcast_dword(m16[2 * g + 1], j)
                    } else {
                        _mm_setzero_si128()
                    };
                    out[g] = _mm256_madd_epi16(_mm256_set_m128i(hi, lo), yj);
                }
            } else {
                let mut v = [0i32; MAX_OUT];
                for r in 0..R {
                    let mut mb = [0u8; 16];
                    _mm_storeu_si128(mb.as_mut_ptr() as *mut __m128i, sm[r]);
                    for c in 0..C {
                        let p = yb[c].add(off::Q8_BSUMS) as *const i16;
                        let bs = |l: usize| p.add(l).read_unaligned() as i32;
                        let b0 = bs(4 * j) + bs(4 * j + 1);
                        let b1 = bs(4 * j + 2) + bs(4 * j + 3);
                        v[r * C + c] = mb[8 + 2 * j] as i32 * b0 + mb[9 + 2 * j] as i32 * b1;
                    }
                }
                out[0] = _mm256_loadu_si256(v.as_ptr() as *const __m256i);
                out[1] = _mm256_loadu_si256(v.as_ptr().add(8) as *const __m256i);
            }
            out
        }

        /// R x C outputs of Q6_K: per super-block the exact sum S (the -32 offset taken off
        /// through the bsums), then `acc = fma(d_w * S, d_y, acc)`, as `vec_dot_q6_k_tiled`.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn tile_q6_k<const R: usize, const C: usize>(
            nb: usize,
            w: *const u8,
            wrb: usize,
            a: *const u8,
            arb: usize,
            y: *mut f32,
            ys: usize,
        ) {
            const { assert!(R * C <= MAX_OUT, "tile too large") };
            let groups = (R * C).div_ceil(8);
            let mut acc = [_mm256_setzero_ps(); 2];
            for i in 0..nb {
                let x: [*const u8; R] =
                    std::array::from_fn(|r| w.add(r * wrb + i * Q6_K_BLOCK_BYTES));
                let yb: [*const u8; C] =
                    std::array::from_fn(|c| a.add(c * arb + i * Q8_K_BLOCK_BYTES));
                let mut s = [[_mm256_setzero_si256(); C]; R];
                for g in 0..8 {
                    for r in 0..R {
                        let q = q6_group(x[r], g);
                        let scales = _mm_loadu_si128(x[r].add(off::Q6_SCALES) as *const __m128i);
                        let sv = scale_pair_from(scales, 2 * g);
                        for c in 0..C {
                            let yv = load32(yb[c].add(off::Q8_QS + 32 * g));
                            s[r][c] = $mac(s[r][c], _mm256_maddubs_epi16(q, yv), sv);
                        }
                    }
                }
                let mut fs = [_mm256_setzero_si256(); MAX_OUT];
                let yd: [f32; C] = std::array::from_fn(|c| q8_d(yb[c]));
                let mut bsums = [_mm256_setzero_si256(); C];
                for c in 0..C {
                    bsums[c] = load32(yb[c].add(off::Q8_BSUMS));
                }
                let mut d = [0.0f32; R];
                for r in 0..R {
                    d[r] = f16_one(x[r].add(off::Q6_D));
                }
                for r in 0..R {
                    let scales = _mm_loadu_si128(x[r].add(off::Q6_SCALES) as *const __m128i);
                    let sc16 = _mm256_cvtepi8_epi16(scales);
                    for c in 0..C {
                        let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(bsums[c], sc16));
                        fs[r * C + c] = _mm256_sub_epi32(s[r][c], offset);
                    }
                }
                for g in 0..groups {
                    let sv = _mm256_cvtepi32_ps(hsum8(&fs[8 * g..8 * g + 8]));
                    let t = _mm256_mul_ps(lanes::<R, C>(g, |r, _| d[r]), sv);
                    acc[g] = _mm256_fmadd_ps(t, lanes::<R, C>(g, |_, c| yd[c]), acc[g]);
                }
            }
            store_tile::<R, C>(&acc, y, ys);
        }
    };
}

/// AVX2 + FMA + F16C.
pub mod avx2 {
    panels!("avx2,fma,f16c", mac_avx2, dot4_avx2, false, dpb_avx2, 2 x 4, 2 x 4);
}

/// AVX-512 F/BW/VL + VNNI, on 256-bit vectors (32 registers, `vpdpwssd`).
pub mod avx512 {
    panels!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        mac_vnni512,
        dot4_vnni512,
        true,
        _mm256_dpbusd_epi32,
        4 x 4,
        4 x 4
    );
}

/// AVX2 + AVX-VNNI (`vpdpwssd` in its VEX form; 16 registers).
pub mod avxvnni {
    panels!(
        "avx2,fma,f16c,avxvnni",
        mac_avxvnni,
        dot4_avxvnni,
        true,
        _mm256_dpbusd_avx_epi32,
        4 x 2,
        2 x 4
    );
}
