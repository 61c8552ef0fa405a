//! K-quant rows to f32, as ggml's `dequantize_row_qX_K`.

// Index loops mirror ggml's reference code on purpose (easier to audit).
#![allow(clippy::needless_range_loop)]
// `%` instead of `is_multiple_of`: the workspace MSRV is 1.85.
#![allow(clippy::manual_is_multiple_of)]

use super::layout::*;
use super::*;

pub fn dequantize_row_q2_k(src: &[u8], dst: &mut [f32]) {
    let nb = check_len(
        dst.len(),
        src.len(),
        Q2_K_BLOCK_BYTES,
        "dequantize_row_q2_k",
    );
    let mut q = [0u8; QK_K];
    for (b, y) in src
        .chunks_exact(Q2_K_BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(QK_K))
        .take(nb)
    {
        let d = f16_at(b, off::Q2_D);
        let dmin = f16_at(b, off::Q2_DMIN);
        let (sc, mn) = unpack_q2_k(b, &mut q);
        for j in 0..16 {
            // Same operation order as ggml: (d*sc)*q - dmin*m.
            let dl = d * sc[j] as f32;
            let ml = dmin * mn[j] as f32;
            for l in 0..16 {
                y[16 * j + l] = dl * q[16 * j + l] as f32 - ml;
            }
        }
    }
}

pub fn dequantize_row_q3_k(src: &[u8], dst: &mut [f32]) {
    let nb = check_len(
        dst.len(),
        src.len(),
        Q3_K_BLOCK_BYTES,
        "dequantize_row_q3_k",
    );
    let mut q = [0i8; QK_K];
    for (b, y) in src
        .chunks_exact(Q3_K_BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(QK_K))
        .take(nb)
    {
        let d = f16_at(b, off::Q3_D);
        let sc = unpack_q3_k(b, &mut q);
        for j in 0..16 {
            let dl = d * sc[j] as f32;
            for l in 0..16 {
                y[16 * j + l] = dl * q[16 * j + l] as f32;
            }
        }
    }
}

pub fn dequantize_row_q4_k(src: &[u8], dst: &mut [f32]) {
    let nb = check_len(
        dst.len(),
        src.len(),
        Q4_K_BLOCK_BYTES,
        "dequantize_row_q4_k",
    );
    let mut q = [0u8; QK_K];
    for (b, y) in src
        .chunks_exact(Q4_K_BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(QK_K))
        .take(nb)
    {
        let d = f16_at(b, off::Q4_D);
        let dmin = f16_at(b, off::Q4_DMIN);
        let (sc, mn) = unpack_q4_k(b, &mut q);
        for j in 0..8 {
            let d1 = d * sc[j] as f32;
            let m1 = dmin * mn[j] as f32;
            for l in 0..32 {
                y[32 * j + l] = d1 * q[32 * j + l] as f32 - m1;
            }
        }
    }
}

pub fn dequantize_row_q5_k(src: &[u8], dst: &mut [f32]) {
    let nb = check_len(
        dst.len(),
        src.len(),
        Q5_K_BLOCK_BYTES,
        "dequantize_row_q5_k",
    );
    let mut q = [0u8; QK_K];
    for (b, y) in src
        .chunks_exact(Q5_K_BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(QK_K))
        .take(nb)
    {
        let d = f16_at(b, off::Q5_D);
        let dmin = f16_at(b, off::Q5_DMIN);
        let (sc, mn) = unpack_q5_k(b, &mut q);
        for j in 0..8 {
            let d1 = d * sc[j] as f32;
            let m1 = dmin * mn[j] as f32;
            for l in 0..32 {
                y[32 * j + l] = d1 * q[32 * j + l] as f32 - m1;
            }
        }
    }
}

pub fn dequantize_row_q6_k(src: &[u8], dst: &mut [f32]) {
    let nb = check_len(
        dst.len(),
        src.len(),
        Q6_K_BLOCK_BYTES,
        "dequantize_row_q6_k",
    );
    let mut q = [0i8; QK_K];
    for (b, y) in src
        .chunks_exact(Q6_K_BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(QK_K))
        .take(nb)
    {
        let d = f16_at(b, off::Q6_D);
        let sc = unpack_q6_k(b, &mut q);
        for j in 0..16 {
            let dl = d * sc[j] as f32;
            for l in 0..16 {
                y[16 * j + l] = dl * q[16 * j + l] as f32;
            }
        }
    }
}

pub fn dequantize_row_q8_k(src: &[u8], dst: &mut [f32]) {
    let nb = check_len(
        dst.len(),
        src.len(),
        Q8_K_BLOCK_BYTES,
        "dequantize_row_q8_k",
    );
    for (b, y) in src
        .chunks_exact(Q8_K_BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(QK_K))
        .take(nb)
    {
        let d = f32_at(b, off::Q8_D);
        for (yv, &q) in y.iter_mut().zip(q8_qs(b)) {
            *yv = d * q as f32;
        }
    }
}
