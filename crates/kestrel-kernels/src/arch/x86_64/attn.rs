//! AVX2 + F16C + FMA twins of `generic::attn`: the same operations in the same order, so the
//! results are bit-identical to the scalar code.

use crate::generic::attn::{fold32, hsum8, Lanes};
use half::f16;
use std::arch::x86_64::*;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8(p: *const f16) -> __m256 {
    _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
}

/// `hsum8` of the lanes of `x`: high half onto low, then (0+2) + (1+3).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum8_v(x: __m256) -> f32 {
    let a = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps::<1>(x));
    let b = _mm_add_ps(a, _mm_movehl_ps(a, a));
    _mm_cvtss_f32(_mm_add_ss(b, _mm_movehdup_ps(b)))
}

/// `fold32` of four accumulators: (0+2), (1+3), their sum, then `hsum8_hadd`'s two pairwise
/// horizontal adds — ggml's reduction, in vector form.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn fold32_v(acc: [__m256; 4]) -> f32 {
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
    let a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let h = _mm_hadd_ps(a, a);
    _mm_cvtss_f32(_mm_hadd_ps(h, h))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16_one(lanes: Lanes, a: &[f16], b: &[f16]) -> f32 {
    let n = a.len().min(b.len());
    let (ap, bp) = (a.as_ptr(), b.as_ptr());
    let (head, full) = match lanes {
        Lanes::L8 => {
            let mut acc = _mm256_setzero_ps();
            let full = n / 8 * 8;
            let mut i = 0;
            while i < full {
                acc = _mm256_fmadd_ps(load8(ap.add(i)), load8(bp.add(i)), acc);
                i += 8;
            }
            (hsum8_v(acc), full)
        }
        Lanes::L32 => {
            let mut acc = [_mm256_setzero_ps(); 4];
            let full = n / 32 * 32;
            let mut i = 0;
            while i < full {
                for (k, acc) in acc.iter_mut().enumerate() {
                    *acc =
                        _mm256_fmadd_ps(load8(ap.add(i + 8 * k)), load8(bp.add(i + 8 * k)), *acc);
                }
                i += 32;
            }
            (fold32_v(acc), full)
        }
    };
    with_tail(head, ap, bp, full, n)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_f16(lanes: Lanes, a: &[f16], b: &[f16]) -> f32 {
    dot_f16_one(lanes, a, b)
}

/// Longest head the tiled dot takes (a tile's queries sit on the stack in f32); longer heads
/// go one dot at a time.
const MAX_TILE_D: usize = 256;

/// `out[g * n + j] = q_g · rows[j]` for `G = q.len() / d` queries and `n = out.len() / G`
/// consecutive rows of `d` values, each exactly as [`dot_f16`]. Queries and rows go in small
/// tiles: each converted key vector feeds several queries, and the independent accumulation
/// chains overlap (one row alone waits on FMA latency). Every output keeps its own
/// single-dot order.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_f16_rows(lanes: Lanes, d: usize, q: &[f16], rows: &[f16], out: &mut [f32]) {
    let g = q.len() / d;
    let n = out.len() / g;
    if n == 0 {
        return;
    }
    if d > MAX_TILE_D {
        for (qi, o) in q.chunks_exact(d).zip(out.chunks_exact_mut(n)) {
            for (o, r) in o.iter_mut().zip(rows.chunks_exact(d)) {
                *o = dot_f16_one(lanes, qi, r);
            }
        }
        return;
    }
    // The queries in f32 once (exact: they are f16 values), four at a time.
    let mut qf = [0.0f32; 4 * MAX_TILE_D];
    let t = DotTile {
        d,
        n,
        q16: q.as_ptr(),
        rows: rows.as_ptr(),
        out: out.as_mut_ptr(),
    };
    let mut q0 = 0;
    while q0 < g {
        let qt = (g - q0).min(4);
        crate::ops::f16_to_f32_slice(&q[q0 * d..(q0 + qt) * d], &mut qf);
        let qp = qf.as_ptr();
        match (lanes, qt) {
            (Lanes::L8, 4) => t.queries_l8::<4, 2>(q0, qp),
            (Lanes::L8, 3) => t.queries_l8::<3, 2>(q0, qp),
            (Lanes::L8, 2) => t.queries_l8::<2, 4>(q0, qp),
            (Lanes::L8, _) => t.queries_l8::<1, 4>(q0, qp),
            (Lanes::L32, 1) => t.queries_l32::<1>(q0, qp),
            (Lanes::L32, qt) => {
                t.queries_l32::<2>(q0, qp);
                if qt > 2 {
                    let rest = qp.add(2 * d);
                    if qt == 4 {
                        t.queries_l32::<2>(q0 + 2, rest);
                    } else {
                        t.queries_l32::<1>(q0 + 2, rest);
                    }
                }
            }
        }
        q0 += qt;
    }
}

/// One `dot_f16_rows` call's operands.
struct DotTile {
    d: usize,
    n: usize,
    q16: *const f16,
    rows: *const f16,
    out: *mut f32,
}

impl DotTile {
    /// Queries `q0..q0 + QT` (their f32 copies at `qf`) against every row, `RT` rows a step.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn queries_l8<const QT: usize, const RT: usize>(&self, q0: usize, qf: *const f32) {
        let mut j = 0;
        while j + RT <= self.n {
            self.block_l8::<QT, RT>(q0, qf, j);
            j += RT;
        }
        while j < self.n {
            self.block_l8::<QT, 1>(q0, qf, j);
            j += 1;
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn block_l8<const QT: usize, const RT: usize>(
        &self,
        q0: usize,
        qf: *const f32,
        j: usize,
    ) {
        let d = self.d;
        let full = d / 8 * 8;
        let rows = self.rows.add(j * d);
        let mut acc = [[_mm256_setzero_ps(); RT]; QT];
        let mut i = 0;
        while i < full {
            let mut k = [_mm256_setzero_ps(); RT];
            for (r, k) in k.iter_mut().enumerate() {
                *k = load8(rows.add(r * d + i));
            }
            for (qi, acc) in acc.iter_mut().enumerate() {
                let qv = _mm256_loadu_ps(qf.add(qi * d + i));
                for (acc, k) in acc.iter_mut().zip(&k) {
                    *acc = _mm256_fmadd_ps(qv, *k, *acc);
                }
            }
            i += 8;
        }
        if full == d {
            // No tail (every head size in use): the sums as they are, without the f64 step.
            for (qi, acc) in acc.iter().enumerate() {
                let o = self.out.add((q0 + qi) * self.n + j);
                for (r, acc) in acc.iter().enumerate() {
                    *o.add(r) = hsum8_v(*acc);
                }
            }
            return;
        }
        for (qi, acc) in acc.iter().enumerate() {
            let q16 = self.q16.add((q0 + qi) * d);
            for (r, acc) in acc.iter().enumerate() {
                *self.out.add((q0 + qi) * self.n + j + r) =
                    with_tail(hsum8_v(*acc), q16, rows.add(r * d), full, d);
            }
        }
    }

    /// Queries `q0..q0 + QT` against every row, one row a step, four accumulators each.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn queries_l32<const QT: usize>(&self, q0: usize, qf: *const f32) {
        let d = self.d;
        let full = d / 32 * 32;
        for j in 0..self.n {
            let row = self.rows.add(j * d);
            let mut acc = [[_mm256_setzero_ps(); 4]; QT];
            let mut i = 0;
            while i < full {
                for s in 0..4 {
                    let k = load8(row.add(i + 8 * s));
                    for (qi, acc) in acc.iter_mut().enumerate() {
                        let qv = _mm256_loadu_ps(qf.add(qi * d + i + 8 * s));
                        acc[s] = _mm256_fmadd_ps(qv, k, acc[s]);
                    }
                }
                i += 32;
            }
            for (qi, acc) in acc.iter().enumerate() {
                let o = self.out.add((q0 + qi) * self.n + j);
                *o = if full == d {
                    fold32_v(*acc)
                } else {
                    with_tail(fold32_v(*acc), self.q16.add((q0 + qi) * d), row, full, d)
                };
            }
        }
    }
}

/// `head` plus the elements past the last full lane step, each product added onto it in f64
/// as ggml does (and as the scalar twin writes it); without a tail, `head` itself.
#[inline(always)]
unsafe fn with_tail(head: f32, q: *const f16, row: *const f16, full: usize, d: usize) -> f32 {
    (full..d).fold(head as f64, |s, i| {
        s + ((*q.add(i)).to_f32() * (*row.add(i)).to_f32()) as f64
    }) as f32
}

/// `acc[(g * lanes + l) * dv + d] += sum p[g * len + j] * v[j][d]` over the rows `j` of lane
/// `l = (pos0 + j) % lanes`, for the `G = acc.len() / (lanes * dv)` queries, as the scalar twin.
/// The lane accumulators are built one lane at a time (lane `l` takes rows `j ≡ l - pos0` in
/// increasing `j`) in registers, several queries sharing each converted value vector, instead
/// of a load-FMA-store through memory per row. Same FMAs, same order.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn mix_f16_add(
    lanes: Lanes,
    dv: usize,
    p: &[f32],
    v: &[f16],
    pos0: usize,
    acc: &mut [f32],
) {
    let w = lanes.count();
    let g = acc.len() / (w * dv);
    if g == 0 {
        return;
    }
    let len = p.len() / g;
    let m = MixTile {
        dv,
        len,
        n: len.min(v.len() / dv),
        w,
        pos0,
        v: v.as_ptr(),
        p: p.as_ptr(),
        acc: acc.as_mut_ptr(),
    };
    let mut q0 = 0;
    while q0 < g {
        let qt = (g - q0).min(4);
        match qt {
            4 => m.queries::<4, 2>(q0),
            3 => m.queries::<3, 2>(q0),
            2 => m.queries::<2, 4>(q0),
            _ => m.queries::<1, 8>(q0),
        }
        q0 += qt;
    }
}

/// Every query's lane sums folded into its `dv` outputs (`G = out.len() / dv`), as the scalar
/// twin.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn fold_lanes_all(lanes: Lanes, dv: usize, acc: &[f32], out: &mut [f32]) {
    let w = lanes.count();
    for q in 0..out.len() / dv {
        fold_lanes(
            w,
            dv,
            acc.as_ptr().add(q * w * dv),
            out.as_mut_ptr().add(q * dv),
        );
    }
}

/// One `mix_f16_add` call's operands; `acc` holds `lanes * dv` floats per query.
struct MixTile {
    dv: usize,
    len: usize,
    n: usize,
    w: usize,
    pos0: usize,
    v: *const f16,
    p: *const f32,
    acc: *mut f32,
}

impl MixTile {
    /// Every lane accumulator of queries `q0..q0 + QT`, `NB` vectors of outputs a pass.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn queries<const QT: usize, const NB: usize>(&self, q0: usize) {
        let dv = self.dv;
        let d8 = dv / 8 * 8;
        for l in 0..self.w {
            let j0 = (l + self.w - self.pos0 % self.w) % self.w;
            let mut d = 0;
            while d + 8 * NB <= dv {
                self.lane::<QT, NB>(q0, l, j0, d);
                d += 8 * NB;
            }
            while d < d8 {
                self.lane::<QT, 1>(q0, l, j0, d);
                d += 8;
            }
            for d in d..dv {
                for qi in q0..q0 + QT {
                    let p = self.p.add(qi * self.len);
                    let a = self.acc.add((qi * self.w + l) * dv + d);
                    let mut s = *a;
                    let mut j = j0;
                    while j < self.n {
                        s = (*self.v.add(j * dv + d)).to_f32().mul_add(*p.add(j), s);
                        j += self.w;
                    }
                    *a = s;
                }
            }
        }
    }

    /// Lane `l`'s accumulators for outputs `d..d + 8 * NB` of queries `q0..q0 + QT`, added
    /// onto: rows `j0, j0 + w, ...`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn lane<const QT: usize, const NB: usize>(
        &self,
        q0: usize,
        l: usize,
        j0: usize,
        d: usize,
    ) {
        let at = |qi: usize| self.acc.add(((q0 + qi) * self.w + l) * self.dv + d);
        let mut r = [[_mm256_setzero_ps(); NB]; QT];
        for (qi, r) in r.iter_mut().enumerate() {
            for (k, r) in r.iter_mut().enumerate() {
                *r = _mm256_loadu_ps(at(qi).add(8 * k));
            }
        }
        let mut j = j0;
        while j < self.n {
            let row = self.v.add(j * self.dv + d);
            let mut x = [_mm256_setzero_ps(); NB];
            for (k, x) in x.iter_mut().enumerate() {
                *x = load8(row.add(8 * k));
            }
            for (qi, r) in r.iter_mut().enumerate() {
                let pj = _mm256_set1_ps(*self.p.add((q0 + qi) * self.len + j));
                for (r, x) in r.iter_mut().zip(&x) {
                    *r = _mm256_fmadd_ps(*x, pj, *r);
                }
            }
            j += self.w;
        }
        for (qi, r) in r.iter().enumerate() {
            for (k, r) in r.iter().enumerate() {
                _mm256_storeu_ps(at(qi).add(8 * k), *r);
            }
        }
    }
}

/// One query's `w * dv` lane accumulators at `acc` folded into its `dv` outputs, eight at a
/// time (the same adds as the scalar twin, per element).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn fold_lanes(w: usize, dv: usize, acc: *const f32, out: *mut f32) {
    let at = |l: usize, d: usize| _mm256_loadu_ps(acc.add(l * dv + d));
    let d8 = dv / 8 * 8;
    let mut d = 0;
    while d < d8 {
        let mut x = [_mm256_setzero_ps(); 8];
        if w == 32 {
            for l in 0..8 {
                let lo = _mm256_add_ps(at(l, d), at(16 + l, d));
                let hi = _mm256_add_ps(at(8 + l, d), at(24 + l, d));
                x[l] = _mm256_add_ps(lo, hi);
            }
        } else {
            for (l, x) in x.iter_mut().enumerate() {
                *x = at(l, d);
            }
        }
        let a0 = _mm256_add_ps(x[0], x[4]);
        let a1 = _mm256_add_ps(x[1], x[5]);
        let a2 = _mm256_add_ps(x[2], x[6]);
        let a3 = _mm256_add_ps(x[3], x[7]);
        // ggml's fold pairs (0+1)+(2+3); tinyBLAS's hsum pairs (0+2)+(1+3).
        let r = if w == 32 {
            _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3))
        } else {
            _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3))
        };
        _mm256_storeu_ps(out.add(d), r);
        d += 8;
    }
    while d < dv {
        let mut x = [0.0f32; 32];
        for (l, x) in x.iter_mut().enumerate().take(w) {
            *x = *acc.add(l * dv + d);
        }
        *out.add(d) = if w == 32 {
            fold32(&mut x)
        } else {
            hsum8(&[x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]])
        };
        d += 1;
    }
}

/// Eight lanes of `generic::attn::exp_approx`, the same operations lane by lane.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn exp8(x: __m256) -> __m256 {
    use crate::generic::attn::{EXP_LN2_HI, EXP_LN2_LO, EXP_LOG2E, EXP_P, EXP_SHIFT};
    let shift = _mm256_set1_ps(EXP_SHIFT);
    let z = _mm256_fmadd_ps(x, _mm256_set1_ps(EXP_LOG2E), shift);
    let n = _mm256_sub_ps(z, shift);
    let b = _mm256_fnmadd_ps(
        n,
        _mm256_set1_ps(EXP_LN2_LO),
        _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_LN2_HI), x),
    );
    let e = _mm256_slli_epi32::<23>(_mm256_castps_si256(z));
    let k = _mm256_castsi256_ps(_mm256_add_epi32(
        e,
        _mm256_castps_si256(_mm256_set1_ps(1.0)),
    ));
    let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
    let big = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(126.0));
    let u = _mm256_mul_ps(b, b);
    let p = |i: usize| _mm256_set1_ps(EXP_P[i]);
    let j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(
            _mm256_fmadd_ps(p(4), b, p(3)),
            u,
            _mm256_fmadd_ps(p(2), b, p(1)),
        ),
        u,
        _mm256_mul_ps(p(0), b),
    );
    let normal = _mm256_fmadd_ps(j, k, k);
    if _mm256_movemask_ps(big) == 0 {
        return normal;
    }
    let g = _mm256_and_si256(
        _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LE_OQ>(n, _mm256_setzero_ps())),
        _mm256_set1_epi32(0x8200_0000u32 as i32),
    );
    let s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f00_0000)));
    let s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    let huge = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(192.0));
    let scaled = _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1);
    let r = _mm256_blendv_ps(normal, scaled, big);
    _mm256_blendv_ps(r, _mm256_mul_ps(s1, s1), huge)
}

#[target_feature(enable = "avx2,fma")]
pub unsafe fn softmax_cells(s: &mut [f32], cell0: usize) {
    let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return;
    }
    let n = s.len();
    let p = s.as_mut_ptr();
    let m = _mm256_set1_ps(max);
    let mut i = 0;
    while i + 8 <= n {
        _mm256_storeu_ps(p.add(i), exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), m)));
        i += 8;
    }
    if i < n {
        // The last partial vector: padded lanes give exp(-inf) = 0 and are dropped.
        let mut tail = [f32::NEG_INFINITY; 8];
        tail[..n - i].copy_from_slice(&s[i..]);
        let v = exp8(_mm256_sub_ps(_mm256_loadu_ps(tail.as_ptr()), m));
        _mm256_storeu_ps(tail.as_mut_ptr(), v);
        s[i..].copy_from_slice(&tail[..n - i]);
    }
    let inv = (1.0 / crate::generic::attn::chunked_sum(s, cell0)) as f32;
    let vinv = _mm256_set1_ps(inv);
    let p = s.as_mut_ptr();
    let mut i = 0;
    while i + 8 <= n {
        _mm256_storeu_ps(p.add(i), _mm256_mul_ps(_mm256_loadu_ps(p.add(i)), vinv));
        i += 8;
    }
    for v in s[i..].iter_mut() {
        *v *= inv;
    }
}
