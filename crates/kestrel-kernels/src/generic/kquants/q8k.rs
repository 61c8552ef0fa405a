//! The Q8_K activation quantizer (ggml's `quantize_row_q8_K_ref`): what the K-quant dot
//! products take. The weight quantizers live in kestrel-compress (`rtn`).

use super::*;

/// ggml's `quantize_row_q8_K_ref`. The scale is chosen from the signed value
/// of largest magnitude with -127 (not -128) so that element maps to exactly
/// -127 and nothing can overflow i8; the `min(127)` clamp only catches
/// rounding on the opposite side.
pub fn quantize_row_q8_k(src: &[f32], dst: &mut [u8]) {
    let nb = check_len(src.len(), dst.len(), Q8_K_BLOCK_BYTES, "quantize_row_q8_k");
    for (x, y) in src
        .chunks_exact(QK_K)
        .zip(dst.chunks_exact_mut(Q8_K_BLOCK_BYTES))
        .take(nb)
    {
        let max = crate::generic::signed_absmax(x);
        if max == 0.0 {
            y.fill(0);
            continue;
        }
        let iscale = -127.0f32 / max;
        for (j, &v) in x.iter().enumerate() {
            let q = nearest_int(iscale * v).min(127);
            y[off::Q8_QS + j] = q as i8 as u8;
        }
        for g in 0..16 {
            let s: i32 = y[off::Q8_QS + 16 * g..off::Q8_QS + 16 * g + 16]
                .iter()
                .map(|&b| b as i8 as i32)
                .sum();
            y[off::Q8_BSUMS + 2 * g..off::Q8_BSUMS + 2 * g + 2]
                .copy_from_slice(&(s as i16).to_le_bytes());
        }
        y[off::Q8_D..off::Q8_D + 4].copy_from_slice(&(1.0f32 / iscale).to_le_bytes());
    }
}
