//! Round-to-nearest weight quantizers: ggml's reference code for every weight format kestrel
//! writes (no importance matrix; the weighted and GPTQ quantizers build on these layouts). The
//! formats activations also use (Q8_0, Q8_1, Q8_K) and the float formats are kestrel-kernels'
//! (`kestrel_kernels::quantize_row`), since inference quantizes with them.

pub mod kquants;
pub mod legacy;

use kestrel_kernels::GgmlType;

/// Quantize `src` into `dst` in format `ty` (any format kestrel writes). Requires `dst.len() ==
/// ty.row_bytes(src.len())`.
pub fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) {
    use GgmlType::*;
    match ty {
        Q4_0 => legacy::quantize_row_q4_0(src, dst),
        Q4_1 => legacy::quantize_row_q4_1(src, dst),
        Q5_0 => legacy::quantize_row_q5_0(src, dst),
        Q5_1 => legacy::quantize_row_q5_1(src, dst),
        Q2_K => kquants::quantize_row_q2_k(src, dst),
        Q3_K => kquants::quantize_row_q3_k(src, dst),
        Q4_K => kquants::quantize_row_q4_k(src, dst),
        Q5_K => kquants::quantize_row_q5_k(src, dst),
        Q6_K => kquants::quantize_row_q6_k(src, dst),
        _ => kestrel_kernels::quantize_row(ty, src, dst),
    }
}
