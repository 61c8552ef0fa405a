//! Unpacking K-quant blocks to plain integers (element order = ggml's dequantize order), the
//! inverse packers the repacked layouts need, and Q8_K field access.

// Index loops mirror ggml's reference code on purpose (easier to audit).
#![allow(clippy::needless_range_loop)]
// `%` instead of `is_multiple_of`: the workspace MSRV is 1.85.
#![allow(clippy::manual_is_multiple_of)]

use super::*;

/// Q2_K block -> 2-bit quants (0..3), 16 scales, 16 mins.
pub(crate) fn unpack_q2_k(b: &[u8], q: &mut [u8; QK_K]) -> ([u8; 16], [u8; 16]) {
    let mut sc = [0u8; 16];
    let mut mn = [0u8; 16];
    for j in 0..16 {
        let s = b[off::Q2_SCALES + j];
        sc[j] = s & 0x0f;
        mn[j] = s >> 4;
    }
    // Each 32-byte chunk of qs holds 128 elements: bit-pair k of byte l is
    // element 32*k + l of that half.
    for half in 0..2 {
        let qs = &b[off::Q2_QS + 32 * half..off::Q2_QS + 32 * half + 32];
        for k in 0..4 {
            for l in 0..32 {
                q[128 * half + 32 * k + l] = (qs[l] >> (2 * k)) & 3;
            }
        }
    }
    (sc, mn)
}

/// Q3_K block -> signed 3-bit quants (-4..3) and 16 signed scales.
pub(crate) fn unpack_q3_k(b: &[u8], q: &mut [i8; QK_K]) -> [i8; 16] {
    let hmask = &b[off::Q3_HMASK..off::Q3_HMASK + 32];
    // Low 2 bits packed like Q2_K; the high bit of element 32*m + l lives in
    // bit m of hmask[l] (m = 0..8 across the whole super-block). A *cleared*
    // high bit means "subtract 4".
    for half in 0..2 {
        let qs = &b[off::Q3_QS + 32 * half..off::Q3_QS + 32 * half + 32];
        for k in 0..4 {
            let m = 4 * half + k;
            for l in 0..32 {
                let lo = ((qs[l] >> (2 * k)) & 3) as i8;
                let h = if hmask[l] & (1 << m) != 0 { 0 } else { 4 };
                q[32 * m + l] = lo - h;
            }
        }
    }
    q3_k_scales(&b[off::Q3_SCALES..off::Q3_SCALES + 12])
}

/// Q4_K block -> 4-bit quants (0..15), 8 scales, 8 mins.
pub(crate) fn unpack_q4_k(b: &[u8], q: &mut [u8; QK_K]) -> ([u8; 8], [u8; 8]) {
    let s = &b[off::Q4_SCALES..off::Q4_SCALES + 12];
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..8 {
        (sc[j], mn[j]) = scale_min_k4(j, s);
    }
    // 64 elements per 32 bytes: low nibbles first, then high nibbles.
    for c in 0..4 {
        let qs = &b[off::Q4_QS + 32 * c..off::Q4_QS + 32 * c + 32];
        for l in 0..32 {
            q[64 * c + l] = qs[l] & 0x0f;
            q[64 * c + 32 + l] = qs[l] >> 4;
        }
    }
    (sc, mn)
}

/// Q5_K block -> 5-bit quants (0..31), 8 scales, 8 mins.
pub(crate) fn unpack_q5_k(b: &[u8], q: &mut [u8; QK_K]) -> ([u8; 8], [u8; 8]) {
    let s = &b[off::Q5_SCALES..off::Q5_SCALES + 12];
    let qh = &b[off::Q5_QH..off::Q5_QH + 32];
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..8 {
        (sc[j], mn[j]) = scale_min_k4(j, s);
    }
    // Same nibble order as Q4_K; the 5th bit of element 32*m + l is bit m of qh[l].
    for c in 0..4 {
        let qs = &b[off::Q5_QS + 32 * c..off::Q5_QS + 32 * c + 32];
        for l in 0..32 {
            let h0 = ((qh[l] >> (2 * c)) & 1) << 4;
            let h1 = ((qh[l] >> (2 * c + 1)) & 1) << 4;
            q[64 * c + l] = (qs[l] & 0x0f) | h0;
            q[64 * c + 32 + l] = (qs[l] >> 4) | h1;
        }
    }
    (sc, mn)
}

/// Q6_K block -> signed 6-bit quants (-32..31) and 16 signed scales.
pub(crate) fn unpack_q6_k(b: &[u8], q: &mut [i8; QK_K]) -> [i8; 16] {
    // Per 128-element half: ql has 64 bytes (low nibbles = elements 0..64,
    // high nibbles = 64..128), qh has 32 bytes whose bit-pairs k give the top
    // two bits of element 32*k + l.
    for half in 0..2 {
        let ql = &b[off::Q6_QL + 64 * half..off::Q6_QL + 64 * half + 64];
        let qh = &b[off::Q6_QH + 32 * half..off::Q6_QH + 32 * half + 32];
        let y = &mut q[128 * half..128 * half + 128];
        for l in 0..32 {
            let h = qh[l];
            y[l] = ((ql[l] & 0x0f) | ((h & 3) << 4)) as i8 - 32;
            y[l + 32] = ((ql[l + 32] & 0x0f) | (((h >> 2) & 3) << 4)) as i8 - 32;
            y[l + 64] = ((ql[l] >> 4) | (((h >> 4) & 3) << 4)) as i8 - 32;
            y[l + 96] = ((ql[l + 32] >> 4) | (((h >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    let mut sc = [0i8; 16];
    for j in 0..16 {
        sc[j] = b[off::Q6_SCALES + j] as i8;
    }
    sc
}

/// The inverse of [`unpack_q6_k`]'s quants: 6-bit values `q` (0..64, element order) into a
/// block's `ql` and `qh` bytes (`b[..192]`).
pub fn pack_q6_k_quants(q: &[u8; QK_K], b: &mut [u8]) {
    for half in 0..2 {
        let e = &q[128 * half..128 * half + 128];
        for l in 0..32 {
            let ql = off::Q6_QL + 64 * half;
            b[ql + l] = (e[l] & 0x0f) | ((e[l + 64] & 0x0f) << 4);
            b[ql + l + 32] = (e[l + 32] & 0x0f) | ((e[l + 96] & 0x0f) << 4);
            b[off::Q6_QH + 32 * half + l] = (e[l] >> 4)
                | ((e[l + 32] >> 4) << 2)
                | ((e[l + 64] >> 4) << 4)
                | ((e[l + 96] >> 4) << 6);
        }
    }
}

#[inline(always)]
pub(super) fn q8_qs(a: &[u8]) -> &[i8] {
    let s = &a[off::Q8_QS..off::Q8_QS + QK_K];
    // SAFETY: u8 and i8 have identical size and alignment.
    unsafe { core::slice::from_raw_parts(s.as_ptr() as *const i8, QK_K) }
}

#[inline(always)]
pub(crate) fn q8_bsum(a: &[u8], j: usize) -> i16 {
    let o = off::Q8_BSUMS + 2 * j;
    i16::from_le_bytes([a[o], a[o + 1]])
}

/// Packs 8 (scale, min) 6-bit pairs into the 12-byte Q4_K/Q5_K layout; the
/// inverse of [`scale_min_k4`].
pub fn pack_scale_min_k4(ls: &[u8; 8], lm: &[u8; 8], s: &mut [u8]) {
    s[..12].fill(0);
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 0x0f) | ((lm[j] & 0x0f) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
}
