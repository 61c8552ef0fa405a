//! Attention inner loops over the f16 KV cache, computed the way llama.cpp's CPU backend does
//! (non-flash path): the query is rounded to f16, q·k is an f16 dot product with f32 FMA
//! accumulation, the softmax weights are rounded to f16 before they weight the values. The
//! summation order matters for bit-exact agreement: llama.cpp's batched path (2+ tokens,
//! tinyBLAS) keeps 8 lanes; its single-token path (ggml's vec_dot_f16) keeps 4x8 lanes. These
//! are the scalar twins of `arch::x86_64::attn`; both give identical bits.

use half::f16;

/// How partial sums are kept, mirroring llama.cpp's two matmul paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lanes {
    /// One 8-lane accumulator (llama.cpp prompt batches).
    L8,
    /// Four 8-lane accumulators over 32-element steps (llama.cpp single-token decode).
    L32,
}

impl Lanes {
    pub fn count(self) -> usize {
        match self {
            Lanes::L8 => 8,
            Lanes::L32 => 32,
        }
    }
}

/// Horizontal sum of 8 lanes as tinyBLAS does: high half onto low, then lanes (0+2) + (1+3).
#[inline]
pub fn hsum8(x: &[f32; 8]) -> f32 {
    let a = [x[0] + x[4], x[1] + x[5], x[2] + x[6], x[3] + x[7]];
    (a[0] + a[2]) + (a[1] + a[3])
}

/// Horizontal sum of 8 lanes as ggml's reduce does: high half onto low, then two pairwise
/// horizontal adds, (0+1) + (2+3).
#[inline]
pub fn hsum8_hadd(x: &[f32; 8]) -> f32 {
    let a = [x[0] + x[4], x[1] + x[5], x[2] + x[6], x[3] + x[7]];
    (a[0] + a[1]) + (a[2] + a[3])
}

/// Fold 32 lanes as ggml's reduce does (lanes 0..8 += 16..24, 8..16 += 24..32, then 0..8 +=
/// 8..16), then [`hsum8_hadd`].
#[inline]
pub fn fold32(x: &mut [f32; 32]) -> f32 {
    for l in 0..8 {
        x[l] += x[16 + l];
        x[8 + l] += x[24 + l];
    }
    for l in 0..8 {
        x[l] += x[8 + l];
    }
    hsum8_hadd(&[x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]])
}

/// `a · b` for f16 vectors whose length is a multiple of 8 (L8) or 32 (L32); other lengths
/// finish the remainder in f64 as ggml does.
pub fn dot_f16(lanes: Lanes, a: &[f16], b: &[f16]) -> f32 {
    let w = lanes.count();
    let n = a.len().min(b.len());
    let full = n / w * w;
    let mut acc = [0.0f32; 32];
    for i in (0..full).step_by(w) {
        for l in 0..w {
            acc[l] = a[i + l].to_f32().mul_add(b[i + l].to_f32(), acc[l]);
        }
    }
    let head = match lanes {
        Lanes::L8 => hsum8(&[
            acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7],
        ]),
        Lanes::L32 => fold32(&mut acc),
    };
    // ggml adds each leftover product onto the reduced head, in double.
    (full..n).fold(head as f64, |s, i| {
        s + (a[i].to_f32() * b[i].to_f32()) as f64
    }) as f32
}

/// `out[g * n + j] = q_g · rows[j]`, each as [`dot_f16`], for the `G = q.len() / d` queries
/// of `d` values in `q` (heads that share one KV head) and the `n = out.len() / G`
/// consecutive rows of `d` values in `rows`.
pub fn dot_f16_rows(lanes: Lanes, d: usize, q: &[f16], rows: &[f16], out: &mut [f32]) {
    let n = out.len() / (q.len() / d);
    if n == 0 {
        return;
    }
    for (qg, out) in q.chunks_exact(d).zip(out.chunks_exact_mut(n)) {
        for (o, r) in out.iter_mut().zip(rows.chunks_exact(d)) {
            *o = dot_f16(lanes, qg, r);
        }
    }
}

/// The value mix `out[d] = sum_j p[j] * v[j][d]` in two steps (the dispatch table's
/// `mix_f16` is both): the lane sums, the partial sum of row `j` kept in lane `(pos0 + j) %
/// lanes` (the KV cell index decides the lane, as in llama.cpp's matmul over the cache), added
/// onto `acc`, which holds `lanes * dv` floats per query (`acc[(g * lanes + l) * dv + d]`,
/// `G = acc.len() / (lanes * dv)` queries; query `g`'s weights are `p[g * len..(g + 1) * len]`,
/// `len = p.len() / G`, already rounded to f16 precision). Calls over consecutive runs of
/// cells, in order, make the same sums as one call over all of them.
pub fn mix_f16_add(lanes: Lanes, dv: usize, p: &[f32], v: &[f16], pos0: usize, acc: &mut [f32]) {
    let w = lanes.count();
    let g = acc.len() / (w * dv);
    if g == 0 {
        return;
    }
    let len = p.len() / g;
    for (acc, p) in acc.chunks_exact_mut(w * dv).zip(p.chunks_exact(len)) {
        for (j, row) in v.chunks_exact(dv).enumerate().take(len) {
            let l = (pos0 + j) % w;
            let a = &mut acc[l * dv..(l + 1) * dv];
            for d in 0..dv {
                a[d] = row[d].to_f32().mul_add(p[j], a[d]);
            }
        }
    }
}

/// Each query's lane sums in `acc` (as [`mix_f16_add`] lays them out) folded into its `dv`
/// outputs, `G = out.len() / dv` queries, in llama.cpp's order for `lanes`.
pub fn fold_lanes(lanes: Lanes, dv: usize, acc: &[f32], out: &mut [f32]) {
    let w = lanes.count();
    for (out, acc) in out.chunks_exact_mut(dv).zip(acc.chunks_exact(w * dv)) {
        for d in 0..dv {
            let mut x = [0.0f32; 32];
            for l in 0..w {
                x[l] = acc[l * dv + d];
            }
            out[d] = match lanes {
                Lanes::L8 => hsum8(&[x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]]),
                Lanes::L32 => fold32(&mut x),
            };
        }
    }
}

/// An f32 constant written as ggml writes it in hex, `0x1.<frac24>p<exp>` (frac24 even).
const fn hexf(frac24: u32, exp: i32) -> f32 {
    f32::from_bits((((exp + 127) as u32) << 23) | (frac24 >> 1))
}

// The coefficients of the exp approximation llama.cpp's SIMD softmax uses (ARM's
// optimized-routines method: x = n ln2 + b, 2^n from the exponent bits, a degree-5
// polynomial for e^b). Reproducing it makes attention weights round as llama.cpp's do.
pub(crate) const EXP_SHIFT: f32 = 12582912.0; // 0x1.8p23: rounds to integer n in the low bits
pub(crate) const EXP_LOG2E: f32 = hexf(0x715476, 0);
pub(crate) const EXP_LN2_HI: f32 = hexf(0x62e400, -1);
pub(crate) const EXP_LN2_LO: f32 = hexf(0x7f7d1c, -20);
pub(crate) const EXP_P: [f32; 5] = [
    hexf(0xffffec, -1),
    hexf(0xfffdb6, -2),
    hexf(0x555e66, -3),
    hexf(0x573e2e, -5),
    hexf(0x0e4020, -7),
];

/// e^x as llama.cpp's vectorized softmax computes it (within ~1.5 ulp of the true value; the
/// point is to be the same 1.5 ulp). Scalar twin of the AVX2 lanes.
pub fn exp_approx(x: f32) -> f32 {
    let z = x.mul_add(EXP_LOG2E, EXP_SHIFT);
    let n = z - EXP_SHIFT;
    let b = (-n).mul_add(EXP_LN2_LO, (-n).mul_add(EXP_LN2_HI, x));
    let e = z.to_bits() << 23;
    let k = f32::from_bits(e.wrapping_add(1.0f32.to_bits()));
    let u = b * b;
    let [p0, p1, p2, p3, p4] = EXP_P;
    let j = p4
        .mul_add(b, p3)
        .mul_add(u, p2.mul_add(b, p1))
        .mul_add(u, p0 * b);
    if !(n.abs() > 126.0) {
        return j.mul_add(k, k);
    }
    // |n| > 126: 2^n would leave the normal range; split it into two factors.
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = f32::from_bits(g.wrapping_add(0x7f00_0000));
    let s2 = f32::from_bits(e.wrapping_sub(g));
    if n.abs() > 192.0 {
        s1 * s1
    } else {
        s2.mul_add(j, s2) * s1
    }
}

/// Softmax over attention scores for KV cells `cell0..cell0 + s.len()`, as llama.cpp's CPU
/// softmax computes it over a row of cells: exponentials by [`exp_approx`], the sum taken in
/// chunks of 8 cells (aligned to the cell index, each chunk summed in f32 in hsum order, chunks
/// accumulated in f64), then every value scaled by the f32 reciprocal of the sum.
pub fn softmax_cells(s: &mut [f32], cell0: usize) {
    let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return;
    }
    for v in s.iter_mut() {
        *v = exp_approx(*v - max);
    }
    let inv = (1.0 / chunked_sum(s, cell0)) as f32;
    for v in s.iter_mut() {
        *v *= inv;
    }
}

/// Sum of `s` (values of cells `cell0..`) in llama.cpp's softmax order.
pub(crate) fn chunked_sum(s: &[f32], cell0: usize) -> f64 {
    let mut sum = 0.0f64;
    let mut j = 0;
    while j < s.len() {
        let lane0 = (cell0 + j) % 8;
        let take = (8 - lane0).min(s.len() - j);
        let mut lanes = [0.0f32; 8];
        lanes[lane0..lane0 + take].copy_from_slice(&s[j..j + take]);
        sum += hsum8(&lanes) as f64;
        j += take;
    }
    sum
}
