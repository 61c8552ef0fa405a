//! Kestrel's compute kernels: ggml's block formats (float, legacy quants, k-quants), their
//! dequantization and quantized dot products (scalar reference twins + SIMD, chosen at run
//! time), the f32 ops of the forward pass, a persistent thread pool and the matmul driver.
//!
//! Numerics follow ggml: a weight type's dot product consumes activations quantized to its
//! [`vec_dot_type`] (Q8_0 / Q8_1 / Q8_K, or plain f32 for float weights), so results track
//! llama.cpp's.

pub use kestrel_gguf::GgmlType;

pub mod arch;
pub mod dispatch;
pub mod generic;
pub mod matmul;
pub mod ops;
pub mod pool;

pub use dispatch::{kernels, kernels_for, prompt_cols, prompt_head, scalar_kernels, Kernels, ISAS};
pub use generic::attn::Lanes;
pub use generic::f16_at;
pub use generic::repack::{
    can_repack, has_x8_layout, repack, repack_x8 as repack_into, x8_size as repacked_size,
};
pub use matmul::{matmul, matmul_many, Arith, Layout, QMatrix};
pub use pool::ThreadPool;

/// Activation type a weight type's dot product consumes: Q4_0/Q5_0/Q8_0 -> Q8_0,
/// Q4_1/Q5_1 -> Q8_1, k-quants -> Q8_K, float types -> F32.
/// (Q8_1 and Q8_K are activation-only formats; they map to themselves.)
pub fn vec_dot_type(w: GgmlType) -> GgmlType {
    use GgmlType::*;
    match w {
        F32 | F16 | BF16 => F32,
        Q4_0 | Q5_0 | Q8_0 => Q8_0,
        Q4_1 | Q5_1 | Q8_1 => Q8_1,
        Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | Q8_K => Q8_K,
    }
}

/// Dequantize `dst.len()` elements (a whole number of blocks) from `src`. Any type, including
/// the k-quants. Panics if `dst.len()` is not a whole number of blocks or `src` is too short.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    use generic::{float, kquants, legacy};
    use GgmlType::*;
    let need = ty.row_bytes(dst.len()).unwrap_or_else(|| {
        panic!(
            "dequantize_row: {} elements is not a whole number of {ty} blocks",
            dst.len()
        )
    });
    assert!(src.len() >= need, "dequantize_row: {ty} source too short");
    let src = &src[..need];
    match ty {
        F32 => float::dequantize_row_f32(src, dst),
        F16 => float::dequantize_row_f16(src, dst),
        BF16 => float::dequantize_row_bf16(src, dst),
        Q4_0 => legacy::dequantize_row_q4_0(src, dst),
        Q4_1 => legacy::dequantize_row_q4_1(src, dst),
        Q5_0 => legacy::dequantize_row_q5_0(src, dst),
        Q5_1 => legacy::dequantize_row_q5_1(src, dst),
        Q8_0 => legacy::dequantize_row_q8_0(src, dst),
        Q8_1 => legacy::dequantize_row_q8_1(src, dst),
        Q2_K => kquants::dequantize_row_q2_k(src, dst),
        Q3_K => kquants::dequantize_row_q3_k(src, dst),
        Q4_K => kquants::dequantize_row_q4_k(src, dst),
        Q5_K => kquants::dequantize_row_q5_k(src, dst),
        Q6_K => kquants::dequantize_row_q6_k(src, dst),
        Q8_K => dequantize_row_q8_k(src, dst),
    }
}

/// Panics unless `dst_len` bytes hold exactly `src_len` elements of `ty`.
pub(crate) fn check_quant_lens(ty: GgmlType, src_len: usize, dst_len: usize) {
    let need = ty.row_bytes(src_len).unwrap_or_else(|| {
        panic!("quantize_row: {src_len} elements is not a whole number of {ty} blocks")
    });
    assert_eq!(
        dst_len, need,
        "quantize_row: {ty} destination has the wrong size"
    );
}

/// Quantize `src` into `dst` in format `ty`, with the scalar reference code: the formats
/// activations use (Q8_0, Q8_1, Q8_K) and the float ones (F32 as raw little-endian bytes, F16,
/// BF16). Requires `dst.len() == ty.row_bytes(src.len())`. (The SIMD activation quantizers are
/// [`Kernels::quantize_row`]; the weight formats' quantizers are kestrel-compress's
/// `rtn::quantize_row`.) Panics on a weight-only format.
pub fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) {
    use generic::{float, kquants, legacy};
    use GgmlType::*;
    check_quant_lens(ty, src.len(), dst.len());
    match ty {
        F32 => float::quantize_row_f32(src, dst),
        F16 => float::quantize_row_f16(src, dst),
        BF16 => float::quantize_row_bf16(src, dst),
        Q8_0 => legacy::quantize_row_q8_0(src, dst),
        Q8_1 => legacy::quantize_row_q8_1(src, dst),
        Q8_K => kquants::quantize_row_q8_k(src, dst),
        _ => panic!("quantize_row: {ty} is a weight format (kestrel_compress::rtn::quantize_row)"),
    }
}

/// Q8_K: {d: f32, qs: [i8; 256], bsums: [i16; 16]}; x = d * q.
fn dequantize_row_q8_k(src: &[u8], dst: &mut [f32]) {
    const QK: usize = kestrel_gguf::QK_K;
    let bs = GgmlType::Q8_K.type_size();
    for (b, y) in src.chunks_exact(bs).zip(dst.chunks_exact_mut(QK)) {
        let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        for (o, &q) in y.iter_mut().zip(&b[4..4 + QK]) {
            *o = d * (q as i8) as f32;
        }
    }
}
