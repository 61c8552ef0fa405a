//! Float formats: F32, F16 (IEEE half), BF16 (top 16 bits of an f32). Their dot products take
//! f32 activations (raw little-endian bytes, `vec_dot_type == F32`) and are plain f32 products
//! accumulated in f64, as ggml's scalar code does.

use half::f16;

#[inline(always)]
fn f32_at(b: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
}

/// Element `i` of an f16 array.
#[inline(always)]
fn f16_el(b: &[u8], i: usize) -> f32 {
    super::f16_at(b, 2 * i)
}

#[inline(always)]
fn bf16_at(b: &[u8], i: usize) -> f32 {
    f32::from_bits((u16::from_le_bytes([b[2 * i], b[2 * i + 1]]) as u32) << 16)
}

/// f32 -> bf16 bits as ggml_compute_fp32_to_bf16: NaN forced quiet, round to nearest even.
#[inline(always)]
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    let u = x.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    ((u as u64 + (0x7fff + ((u >> 16) & 1)) as u64) >> 16) as u16
}

pub fn dequantize_row_f32(src: &[u8], dst: &mut [f32]) {
    assert!(src.len() >= 4 * dst.len());
    for (i, o) in dst.iter_mut().enumerate() {
        *o = f32_at(src, i);
    }
}

pub fn dequantize_row_f16(src: &[u8], dst: &mut [f32]) {
    assert!(src.len() >= 2 * dst.len());
    for (i, o) in dst.iter_mut().enumerate() {
        *o = f16_el(src, i);
    }
}

pub fn dequantize_row_bf16(src: &[u8], dst: &mut [f32]) {
    assert!(src.len() >= 2 * dst.len());
    for (i, o) in dst.iter_mut().enumerate() {
        *o = bf16_at(src, i);
    }
}

/// Raw little-endian f32 bytes (the F32 "activation format").
pub fn quantize_row_f32(src: &[f32], dst: &mut [u8]) {
    assert!(dst.len() >= 4 * src.len());
    for (x, o) in src.iter().zip(dst.chunks_exact_mut(4)) {
        o.copy_from_slice(&x.to_le_bytes());
    }
}

/// IEEE half, round to nearest even.
pub fn quantize_row_f16(src: &[f32], dst: &mut [u8]) {
    assert!(dst.len() >= 2 * src.len());
    for (x, o) in src.iter().zip(dst.chunks_exact_mut(2)) {
        o.copy_from_slice(&f16::from_f32(*x).to_bits().to_le_bytes());
    }
}

/// bf16 as ggml rounds it (nearest even, NaN quieted).
pub fn quantize_row_bf16(src: &[f32], dst: &mut [u8]) {
    assert!(dst.len() >= 2 * src.len());
    for (x, o) in src.iter().zip(dst.chunks_exact_mut(2)) {
        o.copy_from_slice(&f32_to_bf16_bits(*x).to_le_bytes());
    }
}

/// Dot of `n` f32 weights with `n` f32 activations (both raw LE bytes).
pub fn vec_dot_f32(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(w.len() >= 4 * n && a.len() >= 4 * n);
    let mut s = 0.0f64;
    for i in 0..n {
        s += (f32_at(w, i) * f32_at(a, i)) as f64;
    }
    s as f32
}

/// Dot of `n` f16 weights with `n` f32 activations.
pub fn vec_dot_f16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(w.len() >= 2 * n && a.len() >= 4 * n);
    let mut s = 0.0f64;
    for i in 0..n {
        s += (f16_el(w, i) * f32_at(a, i)) as f64;
    }
    s as f32
}

/// Dot of `n` bf16 weights with `n` f32 activations.
pub fn vec_dot_bf16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(w.len() >= 2 * n && a.len() >= 4 * n);
    let mut s = 0.0f64;
    for i in 0..n {
        s += (bf16_at(w, i) * f32_at(a, i)) as f64;
    }
    s as f32
}
