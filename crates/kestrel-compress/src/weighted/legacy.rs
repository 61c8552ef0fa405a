//! Weighted Q4_0 / Q4_1 / Q5_0 / Q5_1 (32-element blocks). Layouts (ggml): Q4_0 {d: f16,
//! qs[16]}, Q4_1 {d, m, qs[16]}, Q5_0 {d, qh[4], qs[16]}, Q5_1 {d, m, qh[4], qs[16]}; element j
//! of a block is the low nibble of qs[j] (j < 16) or the high nibble of qs[j-16], its fifth bit
//! is bit j of qh.

use super::put_f16;
use super::search;

const QK: usize = 32;

/// Per-element weights of a row: importance * sqrt(sigma^2 + x^2), sigma^2 the row's mean square.
fn row_weights(x: &[f32], qw: &[f32]) -> Vec<f32> {
    let sigma2 = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    x.iter()
        .zip(qw)
        .map(|(&v, &q)| q * (sigma2 + v * v).sqrt())
        .collect()
}

fn pack_nibbles(l: &[u8; QK], qs: &mut [u8]) {
    for j in 0..16 {
        qs[j] = (l[j] & 0x0f) | ((l[j + 16] & 0x0f) << 4);
    }
}

fn pack_high_bits(l: &[u8; QK], qh: &mut [u8]) {
    let mut h = 0u32;
    for (j, &v) in l.iter().enumerate() {
        h |= (((v >> 4) & 1) as u32) << j;
    }
    qh[..4].copy_from_slice(&h.to_le_bytes());
}

fn symmetric(x: &[f32], qw: &[f32], dst: &mut [u8], nmax: i32, five_bit: bool) {
    let w = row_weights(x, qw);
    let bs = if five_bit { 22 } else { 18 };
    let mut l = [0u8; QK];
    for ((xb, wb), y) in x
        .chunks_exact(QK)
        .zip(w.chunks_exact(QK))
        .zip(dst.chunks_exact_mut(bs))
    {
        let d = search::qx(nmax, xb, wb, &mut l);
        put_f16(y, d);
        if five_bit {
            pack_high_bits(&l, &mut y[2..6]);
            pack_nibbles(&l, &mut y[6..22]);
        } else {
            pack_nibbles(&l, &mut y[2..18]);
        }
    }
}

fn asymmetric(x: &[f32], qw: &[f32], dst: &mut [u8], nmax: i32, five_bit: bool) {
    let w = row_weights(x, qw);
    let bs = if five_bit { 24 } else { 20 };
    let mut l = [0u8; QK];
    for ((xb, wb), y) in x
        .chunks_exact(QK)
        .zip(w.chunks_exact(QK))
        .zip(dst.chunks_exact_mut(bs))
    {
        let (d, m) = search::qkx3(nmax, xb, wb, &mut l);
        put_f16(y, d);
        // ggml stores the (negative) minimum itself: x = d * l + m.
        put_f16(&mut y[2..], -m);
        if five_bit {
            pack_high_bits(&l, &mut y[4..8]);
            pack_nibbles(&l, &mut y[8..24]);
        } else {
            pack_nibbles(&l, &mut y[4..20]);
        }
    }
}

pub fn q4_0(x: &[f32], qw: &[f32], dst: &mut [u8]) {
    symmetric(x, qw, dst, 8, false)
}

pub fn q5_0(x: &[f32], qw: &[f32], dst: &mut [u8]) {
    symmetric(x, qw, dst, 16, true)
}

pub fn q4_1(x: &[f32], qw: &[f32], dst: &mut [u8]) {
    asymmetric(x, qw, dst, 15, false)
}

pub fn q5_1(x: &[f32], qw: &[f32], dst: &mut [u8]) {
    asymmetric(x, qw, dst, 31, true)
}
