//! Scalar reference kernels: the "twins" every SIMD kernel is tested against, and the
//! fallback on any CPU. Written for clarity and ggml-faithful numerics, not speed.

pub mod act;
pub mod attn;
pub mod float;
pub mod kquants;
pub mod legacy;
pub mod repack;

use half::f16;

/// The little-endian IEEE half at byte `o` of `b`, as f32: the one reader of f16 scales, for
/// every format, kernel and crate. Inline and without F16C (the AVX2 tables need only AVX2 +
/// FMA, and `half` would make an out-of-line call per scale): the f16 exponent and mantissa
/// shifted into f32 position and multiplied by 2^112 re-bias the exponent exactly, subnormals
/// included; inf and NaN are patched separately. Equal to `half`'s conversion for every
/// non-NaN input, and NaN for NaN (tested over all 65536).
#[inline(always)]
pub fn f16_at(b: &[u8], o: usize) -> f32 {
    let h = u16::from_le_bytes([b[o], b[o + 1]]) as u32;
    let sign = (h & 0x8000) << 16;
    let em = h & 0x7fff;
    let mag = if em >= 0x7c00 {
        f32::from_bits(0x7f80_0000 | ((em & 0x3ff) << 13))
    } else {
        f32::from_bits(em << 13) * f32::from_bits(0x7780_0000) // 2^112
    };
    f32::from_bits(mag.to_bits() | sign)
}

/// The element of largest magnitude, with its sign (the first one on ties; 0 for none): the
/// scale source of ggml's symmetric quantizers.
#[inline(always)]
pub fn signed_absmax(x: &[f32]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// Writes `v` rounded to an IEEE half (round to nearest even, as ggml) at byte `o` of `b`.
#[inline(always)]
pub fn put_f16(b: &mut [u8], o: usize, v: f32) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_at_equals_half_for_every_bit_pattern() {
        for h in 0..=u16::MAX {
            let got = f16_at(&h.to_le_bytes(), 0);
            let want = f16::from_bits(h).to_f32();
            if want.is_nan() {
                assert!(got.is_nan(), "{h:#06x}: {got}");
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{h:#06x}: {got} vs {want}");
            }
        }
    }
}
