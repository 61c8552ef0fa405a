//! K-quant super-block formats (QK_K = 256): scalar reference code.
//!
//! Byte layouts and element order follow ggml (`block_q2_K` .. `block_q8_K`)
//! exactly, so that rows read from a GGUF file dequantize to the same floats
//! llama.cpp produces and activations quantize to the same Q8_K bytes.
//!
//! Everything here is safe, straightforward code meant to be the yardstick for
//! the SIMD kernels. The dot products unpack a super-block to plain integers
//! first and then do integer multiply-adds; only the per-super-block
//! combination with the f16/f32 scales happens in floating point, which is what
//! the SIMD versions do too, so both agree to within float re-association.

// Index loops mirror ggml's reference code on purpose (easier to audit).
#![allow(clippy::needless_range_loop)]
// `%` instead of `is_multiple_of`: the workspace MSRV is 1.85.
#![allow(clippy::manual_is_multiple_of)]

mod dequant;
mod dot;
/// How each format packs its quants and scales (the weight quantizers in kestrel-compress
/// write with these).
pub mod layout;
mod q8k;

pub use dequant::*;
pub use dot::*;
pub(crate) use layout::*;
pub use q8k::quantize_row_q8_k;

/// Elements per super-block (the one definition: kestrel-gguf's).
pub use kestrel_gguf::QK_K;
/// Bytes per block of each format.
pub const Q2_K_BLOCK_BYTES: usize = 84;
pub const Q3_K_BLOCK_BYTES: usize = 110;
pub const Q4_K_BLOCK_BYTES: usize = 144;
pub const Q5_K_BLOCK_BYTES: usize = 176;
pub const Q6_K_BLOCK_BYTES: usize = 210;
pub const Q8_K_BLOCK_BYTES: usize = 292;

/// Field offsets inside a block (bytes).
pub mod off {
    // Q2_K: scales[16], qs[64], d, dmin
    pub const Q2_SCALES: usize = 0;
    pub const Q2_QS: usize = 16;
    pub const Q2_D: usize = 80;
    pub const Q2_DMIN: usize = 82;
    // Q3_K: hmask[32], qs[64], scales[12], d
    pub const Q3_HMASK: usize = 0;
    pub const Q3_QS: usize = 32;
    pub const Q3_SCALES: usize = 96;
    pub const Q3_D: usize = 108;
    // Q4_K: d, dmin, scales[12], qs[128]
    pub const Q4_D: usize = 0;
    pub const Q4_DMIN: usize = 2;
    pub const Q4_SCALES: usize = 4;
    pub const Q4_QS: usize = 16;
    // Q5_K: d, dmin, scales[12], qh[32], qs[128]
    pub const Q5_D: usize = 0;
    pub const Q5_DMIN: usize = 2;
    pub const Q5_SCALES: usize = 4;
    pub const Q5_QH: usize = 16;
    pub const Q5_QS: usize = 48;
    // Q6_K: ql[128], qh[64], scales[16] (i8), d
    pub const Q6_QL: usize = 0;
    pub const Q6_QH: usize = 128;
    pub const Q6_SCALES: usize = 192;
    pub const Q6_D: usize = 208;
    // Q8_K: d (f32), qs[256] (i8), bsums[16] (i16)
    pub const Q8_D: usize = 0;
    pub const Q8_QS: usize = 4;
    pub const Q8_BSUMS: usize = 260;
}

pub(crate) use super::f16_at;

#[inline(always)]
pub(crate) fn f32_at(b: &[u8], o: usize) -> f32 {
    f32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// ggml's `nearest_int`: adding 1.5 * 2^23 pushes the fraction out of the
/// mantissa, so the FPU's round-half-to-even does the rounding. Kept bit-exact
/// (instead of `f32::round`, which rounds half away from zero) so quantized
/// bytes match llama.cpp. Valid for |x| <= 2^22.
#[inline(always)]
pub fn nearest_int(x: f32) -> i32 {
    let v = x + 12_582_912.0f32;
    (v.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// Unpacks the 6-bit (scale, min) pair `j` (0..8) of Q4_K/Q5_K. The first four
/// pairs sit in the low 6 bits of bytes 0..4 / 4..8; pairs 4..8 keep their low
/// nibbles in bytes 8..12 and borrow the spare top 2 bits of bytes 0..8.
#[inline(always)]
pub fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// Unpacks the 16 signed 6-bit scales of Q3_K. Low nibbles: bytes 0..8 hold
/// scales 0..8 (low nibble) and 8..16 (high nibble); the top 2 bits of scale j
/// are bits 2*(j/4).. of byte 8 + j%4. Stored with a +32 bias.
#[inline(always)]
pub fn q3_k_scales(s: &[u8]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (j, o) in out.iter_mut().enumerate() {
        let lo = (s[j % 8] >> (4 * (j / 8))) & 0x0f;
        let hi = (s[8 + j % 4] >> (2 * (j / 4))) & 0x03;
        *o = ((lo | (hi << 4)) as i8) - 32;
    }
    out
}

/// Blocks in a row of `n_elems` (a whole number of super-blocks, else a panic) whose
/// `bytes` hold at least that many blocks of `block_bytes`.
pub fn check_len(n_elems: usize, bytes: usize, block_bytes: usize, what: &str) -> usize {
    assert!(
        n_elems % QK_K == 0,
        "{what}: length {n_elems} not a multiple of {QK_K}"
    );
    let nb = n_elems / QK_K;
    assert!(
        bytes >= nb * block_bytes,
        "{what}: {bytes} bytes is too short for {nb} blocks of {block_bytes}"
    );
    nb
}
