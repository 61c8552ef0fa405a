//! Scalar reference kernels: the "twins" every SIMD kernel is tested against, and the
//! fallback on any CPU. Written for clarity and ggml-faithful numerics, not speed.

pub mod act;
pub mod attn;
pub mod float;
pub mod kquants;
pub mod legacy;
pub mod repack;

use half::f16;

/// The little-endian IEEE half at byte `o` of `b`, as f32 (every scalar format reads its f16
/// scales through this one).
#[inline(always)]
pub(crate) fn f16_at(b: &[u8], o: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[o], b[o + 1]])).to_f32()
}

/// Writes `v` rounded to an IEEE half (round to nearest even, as ggml) at byte `o` of `b`.
#[inline(always)]
pub(crate) fn put_f16(b: &mut [u8], o: usize, v: f32) {
    b[o..o + 2].copy_from_slice(&f16::from_f32(v).to_bits().to_le_bytes());
}

/// Puts the k-quant scalar kernels (from `kquants`, written separately) into the dispatch
/// tables: dot products vs Q8_K for Q2_K..Q6_K and the Q8_K activation quantizer.
pub(crate) fn kquants_wire(
    vd: &mut [Option<crate::dispatch::VecDotFn>],
    q: &mut [Option<crate::dispatch::QuantFn>],
) {
    use crate::dispatch::{QuantFn, VecDotFn};
    use kestrel_gguf::GgmlType::*;
    vd[Q2_K as usize] = Some(kquants::vec_dot_q2_k as VecDotFn);
    vd[Q3_K as usize] = Some(kquants::vec_dot_q3_k as VecDotFn);
    vd[Q4_K as usize] = Some(kquants::vec_dot_q4_k as VecDotFn);
    vd[Q5_K as usize] = Some(kquants::vec_dot_q5_k as VecDotFn);
    vd[Q6_K as usize] = Some(kquants::vec_dot_q6_k as VecDotFn);
    q[Q8_K as usize] = Some(kquants::quantize_row_q8_k as QuantFn);
}
