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
    let tail: f64 = (full..n)
        .map(|i| (a[i].to_f32() * b[i].to_f32()) as f64)
        .sum();
    (head as f64 + tail) as f32
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_f16(lanes: Lanes, a: &[f16], b: &[f16]) -> f32 {
    dot_f16_one(lanes, a, b)
}

/// `out[j] = q · rows[j]` for consecutive rows of `q.len()` values, each as [`dot_f16`].
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_f16_rows(lanes: Lanes, q: &[f16], rows: &[f16], out: &mut [f32]) {
    let d = q.len();
    for (o, r) in out.iter_mut().zip(rows.chunks_exact(d)) {
        *o = dot_f16_one(lanes, q, r);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn mix_f16(
    lanes: Lanes,
    out: &mut [f32],
    p: &[f32],
    v: &[f16],
    pos0: usize,
    acc: &mut [f32],
) {
    let dv = out.len();
    let w = lanes.count();
    let acc = &mut acc[..w * dv];
    acc.fill(0.0);
    let d8 = dv / 8 * 8;
    for (j, row) in v.chunks_exact(dv).enumerate().take(p.len()) {
        let l = (pos0 + j) % w;
        let a = acc.as_mut_ptr().add(l * dv);
        let pj = _mm256_set1_ps(p[j]);
        let mut d = 0;
        while d < d8 {
            _mm256_storeu_ps(
                a.add(d),
                _mm256_fmadd_ps(load8(row.as_ptr().add(d)), pj, _mm256_loadu_ps(a.add(d))),
            );
            d += 8;
        }
        while d < dv {
            *a.add(d) = row[d].to_f32().mul_add(p[j], *a.add(d));
            d += 1;
        }
    }
    // The lane folds, eight outputs at a time (the same adds as the scalar twin, per element).
    let ap = acc.as_ptr();
    let at = |l: usize, d: usize| _mm256_loadu_ps(ap.add(l * dv + d));
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
        _mm256_storeu_ps(out.as_mut_ptr().add(d), r);
        d += 8;
    }
    while d < dv {
        let mut x = [0.0f32; 32];
        for l in 0..w {
            x[l] = acc[l * dv + d];
        }
        out[d] = if w == 32 {
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
