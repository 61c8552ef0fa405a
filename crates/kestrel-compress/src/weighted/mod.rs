//! Importance-weighted quantizers: the same block layouts as the round-to-nearest ones in
//! `kestrel-kernels`, but the scale (and min) of every block minimizes the error weighted by
//! `w_j * sqrt(sigma^2 + x_j^2)`, where `w_j` is the importance of input column j (an
//! importance matrix entry: the mean square activation that multiplies that weight).
//! This is the scheme of llama.cpp's `quantize_*_impl` with `quant_weights`.

mod kquants;
mod legacy;
mod search;

use kestrel_gguf::GgmlType;

/// Whether `ty` has a weighted quantizer here (Q8_0 and the float types ignore weights, as in
/// llama.cpp).
pub fn supports(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q2_K | Q3_K | Q4_K | Q5_K | Q6_K
    )
}

/// Quantizes one row `x` to `ty` with column importances `qw` (same length as `x`).
/// Requires `supports(ty)`, `dst.len() == ty.row_bytes(x.len())` and `qw.len() == x.len()`;
/// callers check shapes (this is not outside input).
pub fn quantize_row(ty: GgmlType, x: &[f32], qw: &[f32], dst: &mut [u8]) {
    use GgmlType::*;
    assert_eq!(qw.len(), x.len(), "importance length");
    assert_eq!(Some(dst.len()), ty.row_bytes(x.len()), "destination size");
    match ty {
        Q4_0 => legacy::q4_0(x, qw, dst),
        Q4_1 => legacy::q4_1(x, qw, dst),
        Q5_0 => legacy::q5_0(x, qw, dst),
        Q5_1 => legacy::q5_1(x, qw, dst),
        Q2_K => kquants::q2_k(x, qw, dst),
        Q3_K => kquants::q3_k(x, qw, dst),
        Q4_K => kquants::q4_k(x, qw, dst),
        Q5_K => kquants::q5_k(x, qw, dst),
        Q6_K => kquants::q6_k(x, qw, dst),
        _ => panic!("no weighted quantizer for {ty}"),
    }
}

#[inline]
fn put_f16(b: &mut [u8], v: f32) {
    b[..2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
}

#[inline]
fn f16_round(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}
