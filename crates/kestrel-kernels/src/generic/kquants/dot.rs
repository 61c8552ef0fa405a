//! Dot products of K-quant weight rows with Q8_K activations: the scalar twins every SIMD
//! kernel is tested against (integer sums exact, then the float steps llama.cpp takes).

// Index loops mirror ggml's reference code on purpose (easier to audit).
#![allow(clippy::needless_range_loop)]
// `%` instead of `is_multiple_of`: the workspace MSRV is 1.85.
#![allow(clippy::manual_is_multiple_of)]

use super::layout::*;
use super::*;

fn check_dot(n: usize, w: &[u8], wb: usize, a: &[u8], what: &str) -> usize {
    assert!(n % QK_K == 0, "{what}: n = {n} not a multiple of {QK_K}");
    let nb = n / QK_K;
    assert!(w.len() >= nb * wb, "{what}: weight row too short");
    assert!(
        a.len() >= nb * Q8_K_BLOCK_BYTES,
        "{what}: activation row too short"
    );
    nb
}

#[inline(always)]
fn dot_u8_i8(q: &[u8], a: &[i8]) -> i32 {
    q.iter().zip(a).map(|(&x, &y)| x as i32 * y as i32).sum()
}

#[inline(always)]
/// `sum_j sc[j] * (q · y over 16-element group j)`: a super-block's exact integer dot for the
/// formats with 16 signed 16-element groups (Q3_K, Q6_K).
fn scaled_isum16(sc: &[i8; 16], q: &[i8; QK_K], yq: &[i8]) -> i32 {
    (0..16)
        .map(|j| sc[j] as i32 * dot_i8_i8(&q[16 * j..16 * j + 16], &yq[16 * j..16 * j + 16]))
        .sum()
}

fn dot_i8_i8(q: &[i8], a: &[i8]) -> i32 {
    q.iter().zip(a).map(|(&x, &y)| x as i32 * y as i32).sum()
}

pub fn vec_dot_q2_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = check_dot(n, w, Q2_K_BLOCK_BYTES, a, "vec_dot_q2_k");
    let mut q = [0u8; QK_K];
    let mut sum = 0.0f32;
    for i in 0..nb {
        let b = &w[i * Q2_K_BLOCK_BYTES..(i + 1) * Q2_K_BLOCK_BYTES];
        let y = &a[i * Q8_K_BLOCK_BYTES..(i + 1) * Q8_K_BLOCK_BYTES];
        let (sc, mn) = unpack_q2_k(b, &mut q);
        let yq = q8_qs(y);
        let mut isum = 0i32;
        let mut msum = 0i32;
        for j in 0..16 {
            isum += sc[j] as i32 * dot_u8_i8(&q[16 * j..16 * j + 16], &yq[16 * j..16 * j + 16]);
            msum += mn[j] as i32 * q8_bsum(y, j) as i32;
        }
        let dy = f32_at(y, off::Q8_D);
        let d = dy * f16_at(b, off::Q2_D);
        let dmin = dy * f16_at(b, off::Q2_DMIN);
        sum += d * isum as f32 - dmin * msum as f32;
    }
    sum
}

pub fn vec_dot_q3_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = check_dot(n, w, Q3_K_BLOCK_BYTES, a, "vec_dot_q3_k");
    let mut q = [0i8; QK_K];
    let mut sum = 0.0f32;
    for i in 0..nb {
        let b = &w[i * Q3_K_BLOCK_BYTES..(i + 1) * Q3_K_BLOCK_BYTES];
        let y = &a[i * Q8_K_BLOCK_BYTES..(i + 1) * Q8_K_BLOCK_BYTES];
        let sc = unpack_q3_k(b, &mut q);
        let yq = q8_qs(y);
        let isum = scaled_isum16(&sc, &q, yq);
        let d = f32_at(y, off::Q8_D) * f16_at(b, off::Q3_D);
        sum += d * isum as f32;
    }
    sum
}

/// The exact scale and min sums `(S, M)` of 64-element slice `c` (0..4) of Q4_K block `b`
/// against Q8_K block `y`, straight from the packed bytes (same order as `unpack_q4_k`: 32
/// bytes give 32 low-nibble then 32 high-nibble elements).
fn q4_k_slice_sums(b: &[u8], y: &[u8], c: usize) -> (i32, i32) {
    let s = &b[off::Q4_SCALES..off::Q4_SCALES + 12];
    let qs = &b[off::Q4_QS + 32 * c..off::Q4_QS + 32 * c + 32];
    let (ylo, yhi) = q8_qs(y)[64 * c..64 * c + 64].split_at(32);
    let (mut s_lo, mut s_hi) = (0i32, 0i32);
    for l in 0..32 {
        s_lo += (qs[l] & 0x0f) as i32 * ylo[l] as i32;
        s_hi += (qs[l] >> 4) as i32 * yhi[l] as i32;
    }
    let (sc0, m0) = scale_min_k4(2 * c, s);
    let (sc1, m1) = scale_min_k4(2 * c + 1, s);
    // The min term needs only the activation sums of each sub-block, which Q8_K precomputes
    // per 16 elements.
    let bs = |j: usize| q8_bsum(y, j) as i32;
    let isum = sc0 as i32 * s_lo + sc1 as i32 * s_hi;
    let msum =
        m0 as i32 * (bs(4 * c) + bs(4 * c + 1)) + m1 as i32 * (bs(4 * c + 2) + bs(4 * c + 3));
    (isum, msum)
}

/// Q4_K · Q8_K, the float steps taken once per super-block (`per_slice` false: llama.cpp's
/// GEMV, [`vec_dot_q4_k`]) or once per 64-element slice (true: its GEMM,
/// [`vec_dot_q4_k_prompt`]), each into `acc` and `acc_min` by FMA.
fn q4_k_dot(n: usize, w: &[u8], a: &[u8], per_slice: bool, what: &str) -> f32 {
    check_dot(n, w, Q4_K_BLOCK_BYTES, a, what);
    let block = |i: usize| -> [u8; Q4_K_BLOCK_BYTES] {
        w[i * Q4_K_BLOCK_BYTES..(i + 1) * Q4_K_BLOCK_BYTES]
            .try_into()
            .unwrap()
    };
    q4_k_dot_blocks(n, block, a, per_slice)
}

/// [`q4_k_dot`] with block `i` of the weight row given by `block(i)` (a repacked row).
pub(crate) fn q4_k_dot_blocks(
    n: usize,
    block: impl Fn(usize) -> [u8; Q4_K_BLOCK_BYTES],
    a: &[u8],
    per_slice: bool,
) -> f32 {
    let nb = n / QK_K;
    assert!(
        a.len() >= nb * Q8_K_BLOCK_BYTES,
        "q4_k dot: activation row too short"
    );
    let (mut acc, mut acc_min) = (0.0f32, 0.0f32);
    for i in 0..nb {
        let blk = block(i);
        let b = &blk[..];
        let y = &a[i * Q8_K_BLOCK_BYTES..(i + 1) * Q8_K_BLOCK_BYTES];
        let dy = f32_at(y, off::Q8_D);
        let d = f16_at(b, off::Q4_D) * dy;
        let dmin = f16_at(b, off::Q4_DMIN) * dy;
        let (mut isum, mut msum) = (0i32, 0i32);
        for c in 0..4 {
            let (si, sm) = q4_k_slice_sums(b, y, c);
            if per_slice {
                acc = (si as f32).mul_add(d, acc);
                acc_min = (sm as f32).mul_add(dmin, acc_min);
            } else {
                isum += si;
                msum += sm;
            }
        }
        if !per_slice {
            acc = (isum as f32).mul_add(d, acc);
            acc_min = (msum as f32).mul_add(dmin, acc_min);
        }
    }
    acc - acc_min
}

/// Q4_K · Q8_K: per super-block the exact scale sum S and min sum M, then
/// `acc = fma(S, d_w d_y, acc)` and `acc_min = fma(M, dmin_w d_y, acc_min)`, `acc - acc_min` at
/// the end. Every SIMD kernel computes exactly these steps (bit-identical).
pub fn vec_dot_q4_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    q4_k_dot(n, w, a, false, "vec_dot_q4_k")
}

/// Q4_K · Q8_K in the float order of llama.cpp's Q4_K GEMM, which it uses for prompt batches
/// ([`crate::Arith::Prompt`]): the same exact integer sums as [`vec_dot_q4_k`], but taken per
/// 64-element slice, each into `acc` and `acc_min` with its own FMA. Every SIMD kernel's prompt
/// arithmetic computes exactly these steps (bit-identical).
pub fn vec_dot_q4_k_prompt(n: usize, w: &[u8], a: &[u8]) -> f32 {
    q4_k_dot(n, w, a, true, "vec_dot_q4_k_prompt")
}

pub fn vec_dot_q5_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = check_dot(n, w, Q5_K_BLOCK_BYTES, a, "vec_dot_q5_k");
    let mut sum = 0.0f32;
    for i in 0..nb {
        let b = &w[i * Q5_K_BLOCK_BYTES..(i + 1) * Q5_K_BLOCK_BYTES];
        let y = &a[i * Q8_K_BLOCK_BYTES..(i + 1) * Q8_K_BLOCK_BYTES];
        let s = &b[off::Q5_SCALES..off::Q5_SCALES + 12];
        let qh = &b[off::Q5_QH..off::Q5_QH + 32];
        let yq = q8_qs(y);
        let mut isum = 0i32;
        let mut msum = 0i32;
        // Same order as unpack_q5_k, straight from the packed bytes.
        for c in 0..4 {
            let qs = &b[off::Q5_QS + 32 * c..off::Q5_QS + 32 * c + 32];
            let (ylo, yhi) = yq[64 * c..64 * c + 64].split_at(32);
            let (mut s_lo, mut s_hi) = (0i32, 0i32);
            for l in 0..32 {
                let lo = (qs[l] & 0x0f) | (((qh[l] >> (2 * c)) & 1) << 4);
                let hi = (qs[l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4);
                s_lo += lo as i32 * ylo[l] as i32;
                s_hi += hi as i32 * yhi[l] as i32;
            }
            let (sc0, m0) = scale_min_k4(2 * c, s);
            let (sc1, m1) = scale_min_k4(2 * c + 1, s);
            isum += sc0 as i32 * s_lo + sc1 as i32 * s_hi;
            let bs = |j: usize| q8_bsum(y, j) as i32;
            msum += m0 as i32 * (bs(4 * c) + bs(4 * c + 1))
                + m1 as i32 * (bs(4 * c + 2) + bs(4 * c + 3));
        }
        let dy = f32_at(y, off::Q8_D);
        let d = dy * f16_at(b, off::Q5_D);
        let dmin = dy * f16_at(b, off::Q5_DMIN);
        sum += d * isum as f32 - dmin * msum as f32;
    }
    sum
}

/// Q6_K · Q8_K: per super-block the exact integer sum `s`, then `acc = fma(d_w * s, d_y, acc)`
/// (the arithmetic of llama.cpp's tiled K-quant matmul). Every SIMD kernel computes exactly
/// these steps (bit-identical).
pub fn vec_dot_q6_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_dot(n, w, Q6_K_BLOCK_BYTES, a, "vec_dot_q6_k");
    let block = |i: usize| -> [u8; Q6_K_BLOCK_BYTES] {
        w[i * Q6_K_BLOCK_BYTES..(i + 1) * Q6_K_BLOCK_BYTES]
            .try_into()
            .unwrap()
    };
    q6_k_dot_blocks(n, block, a)
}

/// [`vec_dot_q6_k`] with block `i` of the weight row given by `block(i)` (a repacked row).
pub(crate) fn q6_k_dot_blocks(
    n: usize,
    block: impl Fn(usize) -> [u8; Q6_K_BLOCK_BYTES],
    a: &[u8],
) -> f32 {
    let nb = n / QK_K;
    assert!(
        a.len() >= nb * Q8_K_BLOCK_BYTES,
        "q6_k dot: activation row too short"
    );
    let mut q = [0i8; QK_K];
    let mut acc = 0.0f32;
    for i in 0..nb {
        let blk = block(i);
        let b = &blk[..];
        let y = &a[i * Q8_K_BLOCK_BYTES..(i + 1) * Q8_K_BLOCK_BYTES];
        let sc = unpack_q6_k(b, &mut q);
        let yq = q8_qs(y);
        let isum = scaled_isum16(&sc, &q, yq);
        acc = (f16_at(b, off::Q6_D) * isum as f32).mul_add(f32_at(y, off::Q8_D), acc);
    }
    acc
}
