//! Round-to-nearest quantizers of ggml's legacy 32-element weight formats (Q4_0, Q4_1, Q5_0,
//! Q5_1: its `quantize_row_qX_Y_ref`), onto the layouts kestrel-kernels (`generic::legacy`)
//! reads.

use kestrel_kernels::generic::legacy::{
    blocks, inv, Q4_0_BYTES, Q4_1_BYTES, Q5_0_BYTES, Q5_1_BYTES, QK,
};
use kestrel_kernels::generic::{put_f16, signed_absmax};

#[inline(always)]
fn min_max(x: &[f32]) -> (f32, f32) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

pub fn quantize_row_q4_0(src: &[f32], dst: &mut [u8]) {
    let nb = blocks(src.len());
    assert!(dst.len() >= nb * Q4_0_BYTES);
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(Q4_0_BYTES)) {
        let d = signed_absmax(x) / -8.0;
        let id = inv(d);
        put_f16(b, 0, d);
        for j in 0..16 {
            let q0 = ((x[j] * id + 8.5) as i32).min(15) as u8;
            let q1 = ((x[j + 16] * id + 8.5) as i32).min(15) as u8;
            b[2 + j] = q0 | (q1 << 4);
        }
    }
}

pub fn quantize_row_q4_1(src: &[f32], dst: &mut [u8]) {
    let nb = blocks(src.len());
    assert!(dst.len() >= nb * Q4_1_BYTES);
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(Q4_1_BYTES)) {
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = inv(d);
        put_f16(b, 0, d);
        put_f16(b, 2, min);
        for j in 0..16 {
            let q0 = (((x[j] - min) * id + 0.5) as i32).min(15) as u8;
            let q1 = (((x[j + 16] - min) * id + 0.5) as i32).min(15) as u8;
            b[4 + j] = q0 | (q1 << 4);
        }
    }
}

pub fn quantize_row_q5_0(src: &[f32], dst: &mut [u8]) {
    let nb = blocks(src.len());
    assert!(dst.len() >= nb * Q5_0_BYTES);
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(Q5_0_BYTES)) {
        let d = signed_absmax(x) / -16.0;
        let id = inv(d);
        put_f16(b, 0, d);
        let mut qh = 0u32;
        for j in 0..16 {
            let q0 = ((x[j] * id + 16.5) as i32).min(31) as u32;
            let q1 = ((x[j + 16] * id + 16.5) as i32).min(31) as u32;
            b[6 + j] = ((q0 & 0xF) | ((q1 & 0xF) << 4)) as u8;
            qh |= ((q0 >> 4) & 1) << j;
            qh |= ((q1 >> 4) & 1) << (j + 16);
        }
        b[2..6].copy_from_slice(&qh.to_le_bytes());
    }
}

pub fn quantize_row_q5_1(src: &[f32], dst: &mut [u8]) {
    let nb = blocks(src.len());
    assert!(dst.len() >= nb * Q5_1_BYTES);
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(Q5_1_BYTES)) {
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = inv(d);
        put_f16(b, 0, d);
        put_f16(b, 2, min);
        let mut qh = 0u32;
        for j in 0..16 {
            let q0 = (((x[j] - min) * id + 0.5) as i32).min(31) as u32;
            let q1 = (((x[j + 16] - min) * id + 0.5) as i32).min(31) as u32;
            b[8 + j] = ((q0 & 0xF) | ((q1 & 0xF) << 4)) as u8;
            qh |= ((q0 >> 4) & 1) << j;
            qh |= ((q1 >> 4) & 1) << (j + 16);
        }
        b[4..8].copy_from_slice(&qh.to_le_bytes());
    }
}
