//! ggml's "legacy" 32-element block formats, scalar reference code.
//!
//! | type | block layout (little-endian)                  | value                      |
//! |------|-----------------------------------------------|----------------------------|
//! | Q4_0 | d: f16, qs: [u8; 16]                          | (q - 8) * d                |
//! | Q4_1 | d: f16, m: f16, qs: [u8; 16]                  | q * d + m                  |
//! | Q5_0 | d: f16, qh: u32, qs: [u8; 16]                 | (q - 16) * d               |
//! | Q5_1 | d: f16, m: f16, qh: u32, qs: [u8; 16]         | q * d + m                  |
//! | Q8_0 | d: f16, qs: [i8; 32]                          | q * d                      |
//! | Q8_1 | d: f16, s: f16 (= d * sum q), qs: [i8; 32]    | q * d                      |
//!
//! Nibbles: element `j < 16` is the low nibble of `qs[j]`, element `j + 16` its high nibble;
//! the 5th bit of element `i` is bit `i` of `qh`.
//!
//! Dot products take weights of the named type and activations of its `vec_dot_type`
//! (Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1), with integer sums per block scaled as ggml's
//! generic code does.

use super::{f16_at, put_f16};

pub const QK: usize = 32;
pub const Q4_0_BYTES: usize = 18;
pub const Q4_1_BYTES: usize = 20;
pub const Q5_0_BYTES: usize = 22;
pub const Q5_1_BYTES: usize = 24;
pub const Q8_0_BYTES: usize = 34;
pub const Q8_1_BYTES: usize = 36;

/// Blocks in a row of `n` elements (a whole number of them, else a panic).
#[inline(always)]
pub fn blocks(n: usize) -> usize {
    assert!(n % QK == 0, "length {n} is not a multiple of {QK}");
    n / QK
}

#[inline(always)]
fn u32_at(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

// ---------------------------------------------------------------------------------------------
// dequantization

pub fn dequantize_row_q4_0(src: &[u8], dst: &mut [f32]) {
    let nb = blocks(dst.len());
    assert!(src.len() >= nb * Q4_0_BYTES);
    for (b, y) in src.chunks_exact(Q4_0_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        for j in 0..16 {
            let q = b[2 + j];
            y[j] = ((q & 0xF) as i32 - 8) as f32 * d;
            y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
}

pub fn dequantize_row_q4_1(src: &[u8], dst: &mut [f32]) {
    let nb = blocks(dst.len());
    assert!(src.len() >= nb * Q4_1_BYTES);
    for (b, y) in src.chunks_exact(Q4_1_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        let m = f16_at(b, 2);
        for j in 0..16 {
            let q = b[4 + j];
            y[j] = (q & 0xF) as f32 * d + m;
            y[j + 16] = (q >> 4) as f32 * d + m;
        }
    }
}

pub fn dequantize_row_q5_0(src: &[u8], dst: &mut [f32]) {
    let nb = blocks(dst.len());
    assert!(src.len() >= nb * Q5_0_BYTES);
    for (b, y) in src.chunks_exact(Q5_0_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        let qh = u32_at(&b[2..]);
        for j in 0..16 {
            let q = b[6 + j];
            let h0 = ((qh >> j) & 1) << 4;
            let h1 = ((qh >> (j + 16)) & 1) << 4;
            y[j] = (((q & 0xF) as u32 | h0) as i32 - 16) as f32 * d;
            y[j + 16] = (((q >> 4) as u32 | h1) as i32 - 16) as f32 * d;
        }
    }
}

pub fn dequantize_row_q5_1(src: &[u8], dst: &mut [f32]) {
    let nb = blocks(dst.len());
    assert!(src.len() >= nb * Q5_1_BYTES);
    for (b, y) in src.chunks_exact(Q5_1_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        let m = f16_at(b, 2);
        let qh = u32_at(&b[4..]);
        for j in 0..16 {
            let q = b[8 + j];
            let h0 = ((qh >> j) & 1) << 4;
            let h1 = ((qh >> (j + 16)) & 1) << 4;
            y[j] = ((q & 0xF) as u32 | h0) as f32 * d + m;
            y[j + 16] = ((q >> 4) as u32 | h1) as f32 * d + m;
        }
    }
}

pub fn dequantize_row_q8_0(src: &[u8], dst: &mut [f32]) {
    let nb = blocks(dst.len());
    assert!(src.len() >= nb * Q8_0_BYTES);
    for (b, y) in src.chunks_exact(Q8_0_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        for j in 0..QK {
            y[j] = (b[2 + j] as i8) as f32 * d;
        }
    }
}

pub fn dequantize_row_q8_1(src: &[u8], dst: &mut [f32]) {
    let nb = blocks(dst.len());
    assert!(src.len() >= nb * Q8_1_BYTES);
    for (b, y) in src.chunks_exact(Q8_1_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        for j in 0..QK {
            y[j] = (b[4 + j] as i8) as f32 * d;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// quantization (ggml's round-to-nearest reference quantizers)

/// `1 / d`, or 0 for a zero scale (ggml's `id` of an all-zero block).
#[inline(always)]
pub fn inv(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

/// Q8_0: d = max|x| / 127, q = round(x / d) (half away from zero), d stored as f16.
pub fn quantize_row_q8_0(src: &[f32], dst: &mut [u8]) {
    let nb = blocks(src.len());
    assert!(dst.len() >= nb * Q8_0_BYTES);
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(Q8_0_BYTES)) {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = inv(d);
        put_f16(b, 0, d);
        for j in 0..QK {
            b[2 + j] = ((x[j] * id).round() as i8) as u8;
        }
    }
}

/// Q8_1: as Q8_0, plus s = d * sum(q) (from the f32 d), stored as f16.
pub fn quantize_row_q8_1(src: &[f32], dst: &mut [u8]) {
    let nb = blocks(src.len());
    assert!(dst.len() >= nb * Q8_1_BYTES);
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(Q8_1_BYTES)) {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = inv(d);
        let mut sum = 0i32;
        for j in 0..QK {
            let q = (x[j] * id).round() as i32;
            sum += q;
            b[4 + j] = (q as i8) as u8;
        }
        put_f16(b, 0, d);
        put_f16(b, 2, sum as f32 * d);
    }
}

/// Activation quantizer for Q8_0 as llama.cpp's CPU backend runs it at inference time (its
/// SIMD path, not the reference): the inverse scale is `127 / amax` rather than `1 / d`, and
/// values round half to even. Bit-for-bit agreement here keeps our activations on llama.cpp's.
pub fn quantize_act_q8_0(src: &[f32], dst: &mut [u8]) {
    let nb = blocks(src.len());
    assert!(dst.len() >= nb * Q8_0_BYTES);
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(Q8_0_BYTES)) {
        let (d, _) = act_block(x, &mut b[2..2 + QK]);
        put_f16(b, 0, d);
    }
}

/// Activation quantizer for Q8_1, llama.cpp's inference-time variant (see [`quantize_act_q8_0`]);
/// s = d * sum(q) stored as f16.
pub fn quantize_act_q8_1(src: &[f32], dst: &mut [u8]) {
    let nb = blocks(src.len());
    assert!(dst.len() >= nb * Q8_1_BYTES);
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(Q8_1_BYTES)) {
        let (d, sum) = act_block(x, &mut b[4..4 + QK]);
        put_f16(b, 0, d);
        put_f16(b, 2, d * sum as f32);
    }
}

/// One block of the inference-time activation quantizer: writes the quants, returns (d, sum).
fn act_block(x: &[f32], q: &mut [u8]) -> (f32, i32) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for j in 0..QK {
        let v = (x[j] * id).round_ties_even() as i32;
        sum += v;
        q[j] = (v as i8) as u8;
    }
    (d, sum)
}

// ---------------------------------------------------------------------------------------------
// dot products

/// Q4_0 weights · Q8_0 activations.
pub fn vec_dot_q4_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = blocks(n);
    assert!(w.len() >= nb * Q4_0_BYTES && a.len() >= nb * Q8_0_BYTES);
    let mut sumf = 0.0f32;
    for (x, y) in w
        .chunks_exact(Q4_0_BYTES)
        .zip(a.chunks_exact(Q8_0_BYTES))
        .take(nb)
    {
        let mut sumi = 0i32;
        for j in 0..16 {
            let q = x[2 + j];
            sumi += ((q & 0xF) as i32 - 8) * (y[2 + j] as i8) as i32;
            sumi += ((q >> 4) as i32 - 8) * (y[2 + j + 16] as i8) as i32;
        }
        sumf += sumi as f32 * f16_at(x, 0) * f16_at(y, 0);
    }
    sumf
}

/// Q4_1 weights · Q8_1 activations.
pub fn vec_dot_q4_1(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = blocks(n);
    assert!(w.len() >= nb * Q4_1_BYTES && a.len() >= nb * Q8_1_BYTES);
    let mut sumf = 0.0f32;
    for (x, y) in w
        .chunks_exact(Q4_1_BYTES)
        .zip(a.chunks_exact(Q8_1_BYTES))
        .take(nb)
    {
        let mut sumi = 0i32;
        for j in 0..16 {
            let q = x[4 + j];
            sumi += (q & 0xF) as i32 * (y[4 + j] as i8) as i32;
            sumi += (q >> 4) as i32 * (y[4 + j + 16] as i8) as i32;
        }
        sumf += (f16_at(x, 0) * f16_at(y, 0)) * sumi as f32 + f16_at(x, 2) * f16_at(y, 2);
    }
    sumf
}

/// Q5_0 weights · Q8_0 activations.
pub fn vec_dot_q5_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = blocks(n);
    assert!(w.len() >= nb * Q5_0_BYTES && a.len() >= nb * Q8_0_BYTES);
    let mut sumf = 0.0f32;
    for (x, y) in w
        .chunks_exact(Q5_0_BYTES)
        .zip(a.chunks_exact(Q8_0_BYTES))
        .take(nb)
    {
        let qh = u32_at(&x[2..]);
        let mut sumi = 0i32;
        for j in 0..16 {
            let q = x[6 + j];
            let q0 = ((q & 0xF) as u32 | (((qh >> j) & 1) << 4)) as i32 - 16;
            let q1 = ((q >> 4) as u32 | (((qh >> (j + 16)) & 1) << 4)) as i32 - 16;
            sumi += q0 * (y[2 + j] as i8) as i32 + q1 * (y[2 + j + 16] as i8) as i32;
        }
        sumf += sumi as f32 * f16_at(x, 0) * f16_at(y, 0);
    }
    sumf
}

/// Q5_1 weights · Q8_1 activations.
pub fn vec_dot_q5_1(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = blocks(n);
    assert!(w.len() >= nb * Q5_1_BYTES && a.len() >= nb * Q8_1_BYTES);
    let mut sumf = 0.0f32;
    for (x, y) in w
        .chunks_exact(Q5_1_BYTES)
        .zip(a.chunks_exact(Q8_1_BYTES))
        .take(nb)
    {
        let qh = u32_at(&x[4..]);
        let mut sumi = 0i32;
        for j in 0..16 {
            let q = x[8 + j];
            let q0 = ((q & 0xF) as u32 | (((qh >> j) & 1) << 4)) as i32;
            let q1 = ((q >> 4) as u32 | (((qh >> (j + 16)) & 1) << 4)) as i32;
            sumi += q0 * (y[4 + j] as i8) as i32 + q1 * (y[4 + j + 16] as i8) as i32;
        }
        sumf += (f16_at(x, 0) * f16_at(y, 0)) * sumi as f32 + f16_at(x, 2) * f16_at(y, 2);
    }
    sumf
}

/// Q8_0 weights · Q8_0 activations.
pub fn vec_dot_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = blocks(n);
    assert!(w.len() >= nb * Q8_0_BYTES && a.len() >= nb * Q8_0_BYTES);
    let mut sumf = 0.0f32;
    for (x, y) in w
        .chunks_exact(Q8_0_BYTES)
        .zip(a.chunks_exact(Q8_0_BYTES))
        .take(nb)
    {
        let mut sumi = 0i32;
        for j in 0..QK {
            sumi += (x[2 + j] as i8) as i32 * (y[2 + j] as i8) as i32;
        }
        sumf += sumi as f32 * (f16_at(x, 0) * f16_at(y, 0));
    }
    sumf
}

/// Q8_0 weights · Q8_0 activations in the AVX2 dot's float order (llama.cpp's on x86): eight
/// lane sums, lane `j` of block `i` the exact integer sum of elements `4 j..4 j + 4`, each
/// `lane = fma(d_w d_y, S, lane)`, then `((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))`. The
/// scalar twin of the repacked Q8_0 kernels, which keep these bits (a golden model, Gemma 3,
/// holds Q8_0 matrices).
pub fn vec_dot_q8_0_lanes(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = blocks(n);
    assert!(w.len() >= nb * Q8_0_BYTES && a.len() >= nb * Q8_0_BYTES);
    let mut l = [0.0f32; 8];
    for (x, y) in w
        .chunks_exact(Q8_0_BYTES)
        .zip(a.chunks_exact(Q8_0_BYTES))
        .take(nb)
    {
        let d = f16_at(x, 0) * f16_at(y, 0);
        for (j, lane) in l.iter_mut().enumerate() {
            let s: i32 = (4 * j..4 * j + 4)
                .map(|e| (x[2 + e] as i8) as i32 * (y[2 + e] as i8) as i32)
                .sum();
            *lane = d.mul_add(s as f32, *lane);
        }
    }
    ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]))
}
