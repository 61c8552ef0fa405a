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

use half::f16;

/// Elements per super-block.
pub const QK_K: usize = 256;
/// Bytes per block of each format.
pub const Q2_K_BLOCK_BYTES: usize = 84;
pub const Q3_K_BLOCK_BYTES: usize = 110;
pub const Q4_K_BLOCK_BYTES: usize = 144;
pub const Q5_K_BLOCK_BYTES: usize = 176;
pub const Q6_K_BLOCK_BYTES: usize = 210;
pub const Q8_K_BLOCK_BYTES: usize = 292;

// Field offsets inside a block (bytes).
pub(crate) mod off {
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

#[inline(always)]
pub(crate) fn f16_at(b: &[u8], o: usize) -> f32 {
    f16::from_le_bytes([b[o], b[o + 1]]).to_f32()
}

#[inline(always)]
pub(crate) fn f32_at(b: &[u8], o: usize) -> f32 {
    f32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

#[inline(always)]
fn put_f16(b: &mut [u8], o: usize, v: f32) {
    b[o..o + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
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

fn check_len(n_elems: usize, bytes: usize, block_bytes: usize, what: &str) -> usize {
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

// ---------------------------------------------------------------------------
// Unpacking to plain integers (element order = ggml dequantize order)
// ---------------------------------------------------------------------------

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
pub(crate) fn pack_q6_k_quants(q: &[u8; QK_K], b: &mut [u8]) {
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
fn q8_qs(a: &[u8]) -> &[i8] {
    let s = &a[off::Q8_QS..off::Q8_QS + QK_K];
    // SAFETY: u8 and i8 have identical size and alignment.
    unsafe { core::slice::from_raw_parts(s.as_ptr() as *const i8, QK_K) }
}

#[inline(always)]
pub(crate) fn q8_bsum(a: &[u8], j: usize) -> i16 {
    let o = off::Q8_BSUMS + 2 * j;
    i16::from_le_bytes([a[o], a[o + 1]])
}

// ---------------------------------------------------------------------------
// Dequantization
// ---------------------------------------------------------------------------

pub fn dequantize_row_q2_k(src: &[u8], dst: &mut [f32]) {
    let nb = check_len(
        dst.len(),
        src.len(),
        Q2_K_BLOCK_BYTES,
        "dequantize_row_q2_k",
    );
    let mut q = [0u8; QK_K];
    for (b, y) in src
        .chunks_exact(Q2_K_BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(QK_K))
        .take(nb)
    {
        let d = f16_at(b, off::Q2_D);
        let dmin = f16_at(b, off::Q2_DMIN);
        let (sc, mn) = unpack_q2_k(b, &mut q);
        for j in 0..16 {
            // Same operation order as ggml: (d*sc)*q - dmin*m.
            let dl = d * sc[j] as f32;
            let ml = dmin * mn[j] as f32;
            for l in 0..16 {
                y[16 * j + l] = dl * q[16 * j + l] as f32 - ml;
            }
        }
    }
}

pub fn dequantize_row_q3_k(src: &[u8], dst: &mut [f32]) {
    let nb = check_len(
        dst.len(),
        src.len(),
        Q3_K_BLOCK_BYTES,
        "dequantize_row_q3_k",
    );
    let mut q = [0i8; QK_K];
    for (b, y) in src
        .chunks_exact(Q3_K_BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(QK_K))
        .take(nb)
    {
        let d = f16_at(b, off::Q3_D);
        let sc = unpack_q3_k(b, &mut q);
        for j in 0..16 {
            let dl = d * sc[j] as f32;
            for l in 0..16 {
                y[16 * j + l] = dl * q[16 * j + l] as f32;
            }
        }
    }
}

pub fn dequantize_row_q4_k(src: &[u8], dst: &mut [f32]) {
    let nb = check_len(
        dst.len(),
        src.len(),
        Q4_K_BLOCK_BYTES,
        "dequantize_row_q4_k",
    );
    let mut q = [0u8; QK_K];
    for (b, y) in src
        .chunks_exact(Q4_K_BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(QK_K))
        .take(nb)
    {
        let d = f16_at(b, off::Q4_D);
        let dmin = f16_at(b, off::Q4_DMIN);
        let (sc, mn) = unpack_q4_k(b, &mut q);
        for j in 0..8 {
            let d1 = d * sc[j] as f32;
            let m1 = dmin * mn[j] as f32;
            for l in 0..32 {
                y[32 * j + l] = d1 * q[32 * j + l] as f32 - m1;
            }
        }
    }
}

pub fn dequantize_row_q5_k(src: &[u8], dst: &mut [f32]) {
    let nb = check_len(
        dst.len(),
        src.len(),
        Q5_K_BLOCK_BYTES,
        "dequantize_row_q5_k",
    );
    let mut q = [0u8; QK_K];
    for (b, y) in src
        .chunks_exact(Q5_K_BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(QK_K))
        .take(nb)
    {
        let d = f16_at(b, off::Q5_D);
        let dmin = f16_at(b, off::Q5_DMIN);
        let (sc, mn) = unpack_q5_k(b, &mut q);
        for j in 0..8 {
            let d1 = d * sc[j] as f32;
            let m1 = dmin * mn[j] as f32;
            for l in 0..32 {
                y[32 * j + l] = d1 * q[32 * j + l] as f32 - m1;
            }
        }
    }
}

pub fn dequantize_row_q6_k(src: &[u8], dst: &mut [f32]) {
    let nb = check_len(
        dst.len(),
        src.len(),
        Q6_K_BLOCK_BYTES,
        "dequantize_row_q6_k",
    );
    let mut q = [0i8; QK_K];
    for (b, y) in src
        .chunks_exact(Q6_K_BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(QK_K))
        .take(nb)
    {
        let d = f16_at(b, off::Q6_D);
        let sc = unpack_q6_k(b, &mut q);
        for j in 0..16 {
            let dl = d * sc[j] as f32;
            for l in 0..16 {
                y[16 * j + l] = dl * q[16 * j + l] as f32;
            }
        }
    }
}

pub fn dequantize_row_q8_k(src: &[u8], dst: &mut [f32]) {
    let nb = check_len(
        dst.len(),
        src.len(),
        Q8_K_BLOCK_BYTES,
        "dequantize_row_q8_k",
    );
    for (b, y) in src
        .chunks_exact(Q8_K_BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(QK_K))
        .take(nb)
    {
        let d = f32_at(b, off::Q8_D);
        for (yv, &q) in y.iter_mut().zip(q8_qs(b)) {
            *yv = d * q as f32;
        }
    }
}

// ---------------------------------------------------------------------------
// Q8_K activation quantization
// ---------------------------------------------------------------------------

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
        let mut max = 0.0f32;
        let mut amax = 0.0f32;
        for &v in x {
            let av = v.abs();
            if av > amax {
                amax = av;
                max = v;
            }
        }
        if amax == 0.0 {
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

// ---------------------------------------------------------------------------
// Dot products against Q8_K activations
// ---------------------------------------------------------------------------

fn check_dot(n: usize, w: &[u8], wb: usize, a: &[u8], what: &str) -> usize {
    assert!(n % QK_K == 0, "{what}: n = {n} not a multiple of {QK_K}");
    let nb = n / QK_K;
    assert!(w.len() >= nb * wb, "{what}: weight row too short");
    assert!(
        a.len() >= nb * Q8_K_BLOCK_BYTES,
        "{what}: activation row too short"
    );
    nb
}

#[inline(always)]
fn dot_u8_i8(q: &[u8], a: &[i8]) -> i32 {
    q.iter().zip(a).map(|(&x, &y)| x as i32 * y as i32).sum()
}

#[inline(always)]
/// `sum_j sc[j] * (q · y over 16-element group j)`: a super-block's exact integer dot for the
/// formats with 16 signed 16-element groups (Q3_K, Q6_K).
fn scaled_isum16(sc: &[i8; 16], q: &[i8; QK_K], yq: &[i8]) -> i32 {
    (0..16)
        .map(|j| sc[j] as i32 * dot_i8_i8(&q[16 * j..16 * j + 16], &yq[16 * j..16 * j + 16]))
        .sum()
}

fn dot_i8_i8(q: &[i8], a: &[i8]) -> i32 {
    q.iter().zip(a).map(|(&x, &y)| x as i32 * y as i32).sum()
}

pub fn vec_dot_q2_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = check_dot(n, w, Q2_K_BLOCK_BYTES, a, "vec_dot_q2_k");
    let mut q = [0u8; QK_K];
    let mut sum = 0.0f32;
    for i in 0..nb {
        let b = &w[i * Q2_K_BLOCK_BYTES..(i + 1) * Q2_K_BLOCK_BYTES];
        let y = &a[i * Q8_K_BLOCK_BYTES..(i + 1) * Q8_K_BLOCK_BYTES];
        let (sc, mn) = unpack_q2_k(b, &mut q);
        let yq = q8_qs(y);
        let mut isum = 0i32;
        let mut msum = 0i32;
        for j in 0..16 {
            isum += sc[j] as i32 * dot_u8_i8(&q[16 * j..16 * j + 16], &yq[16 * j..16 * j + 16]);
            msum += mn[j] as i32 * q8_bsum(y, j) as i32;
        }
        let dy = f32_at(y, off::Q8_D);
        let d = dy * f16_at(b, off::Q2_D);
        let dmin = dy * f16_at(b, off::Q2_DMIN);
        sum += d * isum as f32 - dmin * msum as f32;
    }
    sum
}

pub fn vec_dot_q3_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = check_dot(n, w, Q3_K_BLOCK_BYTES, a, "vec_dot_q3_k");
    let mut q = [0i8; QK_K];
    let mut sum = 0.0f32;
    for i in 0..nb {
        let b = &w[i * Q3_K_BLOCK_BYTES..(i + 1) * Q3_K_BLOCK_BYTES];
        let y = &a[i * Q8_K_BLOCK_BYTES..(i + 1) * Q8_K_BLOCK_BYTES];
        let sc = unpack_q3_k(b, &mut q);
        let yq = q8_qs(y);
        let isum = scaled_isum16(&sc, &q, yq);
        let d = f32_at(y, off::Q8_D) * f16_at(b, off::Q3_D);
        sum += d * isum as f32;
    }
    sum
}

/// The exact scale and min sums `(S, M)` of 64-element slice `c` (0..4) of Q4_K block `b`
/// against Q8_K block `y`, straight from the packed bytes (same order as `unpack_q4_k`: 32
/// bytes give 32 low-nibble then 32 high-nibble elements).
fn q4_k_slice_sums(b: &[u8], y: &[u8], c: usize) -> (i32, i32) {
    let s = &b[off::Q4_SCALES..off::Q4_SCALES + 12];
    let qs = &b[off::Q4_QS + 32 * c..off::Q4_QS + 32 * c + 32];
    let (ylo, yhi) = q8_qs(y)[64 * c..64 * c + 64].split_at(32);
    let (mut s_lo, mut s_hi) = (0i32, 0i32);
    for l in 0..32 {
        s_lo += (qs[l] & 0x0f) as i32 * ylo[l] as i32;
        s_hi += (qs[l] >> 4) as i32 * yhi[l] as i32;
    }
    let (sc0, m0) = scale_min_k4(2 * c, s);
    let (sc1, m1) = scale_min_k4(2 * c + 1, s);
    // The min term needs only the activation sums of each sub-block, which Q8_K precomputes
    // per 16 elements.
    let bs = |j: usize| q8_bsum(y, j) as i32;
    let isum = sc0 as i32 * s_lo + sc1 as i32 * s_hi;
    let msum =
        m0 as i32 * (bs(4 * c) + bs(4 * c + 1)) + m1 as i32 * (bs(4 * c + 2) + bs(4 * c + 3));
    (isum, msum)
}

/// Q4_K · Q8_K, the float steps taken once per super-block (`per_slice` false: llama.cpp's
/// GEMV, [`vec_dot_q4_k`]) or once per 64-element slice (true: its GEMM,
/// [`vec_dot_q4_k_prompt`]), each into `acc` and `acc_min` by FMA.
fn q4_k_dot(n: usize, w: &[u8], a: &[u8], per_slice: bool, what: &str) -> f32 {
    check_dot(n, w, Q4_K_BLOCK_BYTES, a, what);
    let block = |i: usize| -> [u8; Q4_K_BLOCK_BYTES] {
        w[i * Q4_K_BLOCK_BYTES..(i + 1) * Q4_K_BLOCK_BYTES]
            .try_into()
            .unwrap()
    };
    q4_k_dot_blocks(n, block, a, per_slice)
}

/// [`q4_k_dot`] with block `i` of the weight row given by `block(i)` (a repacked row).
pub(crate) fn q4_k_dot_blocks(
    n: usize,
    block: impl Fn(usize) -> [u8; Q4_K_BLOCK_BYTES],
    a: &[u8],
    per_slice: bool,
) -> f32 {
    let nb = n / QK_K;
    assert!(
        a.len() >= nb * Q8_K_BLOCK_BYTES,
        "q4_k dot: activation row too short"
    );
    let (mut acc, mut acc_min) = (0.0f32, 0.0f32);
    for i in 0..nb {
        let blk = block(i);
        let b = &blk[..];
        let y = &a[i * Q8_K_BLOCK_BYTES..(i + 1) * Q8_K_BLOCK_BYTES];
        let dy = f32_at(y, off::Q8_D);
        let d = f16_at(b, off::Q4_D) * dy;
        let dmin = f16_at(b, off::Q4_DMIN) * dy;
        let (mut isum, mut msum) = (0i32, 0i32);
        for c in 0..4 {
            let (si, sm) = q4_k_slice_sums(b, y, c);
            if per_slice {
                acc = (si as f32).mul_add(d, acc);
                acc_min = (sm as f32).mul_add(dmin, acc_min);
            } else {
                isum += si;
                msum += sm;
            }
        }
        if !per_slice {
            acc = (isum as f32).mul_add(d, acc);
            acc_min = (msum as f32).mul_add(dmin, acc_min);
        }
    }
    acc - acc_min
}

/// Q4_K · Q8_K: per super-block the exact scale sum S and min sum M, then
/// `acc = fma(S, d_w d_y, acc)` and `acc_min = fma(M, dmin_w d_y, acc_min)`, `acc - acc_min` at
/// the end. Every SIMD kernel computes exactly these steps (bit-identical).
pub fn vec_dot_q4_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    q4_k_dot(n, w, a, false, "vec_dot_q4_k")
}

/// Q4_K · Q8_K in the float order of llama.cpp's Q4_K GEMM, which it uses for prompt batches
/// ([`crate::Arith::Prompt`]): the same exact integer sums as [`vec_dot_q4_k`], but taken per
/// 64-element slice, each into `acc` and `acc_min` with its own FMA. Every SIMD kernel's prompt
/// arithmetic computes exactly these steps (bit-identical).
pub fn vec_dot_q4_k_prompt(n: usize, w: &[u8], a: &[u8]) -> f32 {
    q4_k_dot(n, w, a, true, "vec_dot_q4_k_prompt")
}

pub fn vec_dot_q5_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = check_dot(n, w, Q5_K_BLOCK_BYTES, a, "vec_dot_q5_k");
    let mut sum = 0.0f32;
    for i in 0..nb {
        let b = &w[i * Q5_K_BLOCK_BYTES..(i + 1) * Q5_K_BLOCK_BYTES];
        let y = &a[i * Q8_K_BLOCK_BYTES..(i + 1) * Q8_K_BLOCK_BYTES];
        let s = &b[off::Q5_SCALES..off::Q5_SCALES + 12];
        let qh = &b[off::Q5_QH..off::Q5_QH + 32];
        let yq = q8_qs(y);
        let mut isum = 0i32;
        let mut msum = 0i32;
        // Same order as unpack_q5_k, straight from the packed bytes.
        for c in 0..4 {
            let qs = &b[off::Q5_QS + 32 * c..off::Q5_QS + 32 * c + 32];
            let (ylo, yhi) = yq[64 * c..64 * c + 64].split_at(32);
            let (mut s_lo, mut s_hi) = (0i32, 0i32);
            for l in 0..32 {
                let lo = (qs[l] & 0x0f) | (((qh[l] >> (2 * c)) & 1) << 4);
                let hi = (qs[l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4);
                s_lo += lo as i32 * ylo[l] as i32;
                s_hi += hi as i32 * yhi[l] as i32;
            }
            let (sc0, m0) = scale_min_k4(2 * c, s);
            let (sc1, m1) = scale_min_k4(2 * c + 1, s);
            isum += sc0 as i32 * s_lo + sc1 as i32 * s_hi;
            let bs = |j: usize| q8_bsum(y, j) as i32;
            msum += m0 as i32 * (bs(4 * c) + bs(4 * c + 1))
                + m1 as i32 * (bs(4 * c + 2) + bs(4 * c + 3));
        }
        let dy = f32_at(y, off::Q8_D);
        let d = dy * f16_at(b, off::Q5_D);
        let dmin = dy * f16_at(b, off::Q5_DMIN);
        sum += d * isum as f32 - dmin * msum as f32;
    }
    sum
}

/// Q6_K · Q8_K: per super-block the exact integer sum `s`, then `acc = fma(d_w * s, d_y, acc)`
/// (the arithmetic of llama.cpp's tiled K-quant matmul). Every SIMD kernel computes exactly
/// these steps (bit-identical).
pub fn vec_dot_q6_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_dot(n, w, Q6_K_BLOCK_BYTES, a, "vec_dot_q6_k");
    let block = |i: usize| -> [u8; Q6_K_BLOCK_BYTES] {
        w[i * Q6_K_BLOCK_BYTES..(i + 1) * Q6_K_BLOCK_BYTES]
            .try_into()
            .unwrap()
    };
    q6_k_dot_blocks(n, block, a)
}

/// [`vec_dot_q6_k`] with block `i` of the weight row given by `block(i)` (a repacked row).
pub(crate) fn q6_k_dot_blocks(
    n: usize,
    block: impl Fn(usize) -> [u8; Q6_K_BLOCK_BYTES],
    a: &[u8],
) -> f32 {
    let nb = n / QK_K;
    assert!(
        a.len() >= nb * Q8_K_BLOCK_BYTES,
        "q6_k dot: activation row too short"
    );
    let mut q = [0i8; QK_K];
    let mut acc = 0.0f32;
    for i in 0..nb {
        let blk = block(i);
        let b = &blk[..];
        let y = &a[i * Q8_K_BLOCK_BYTES..(i + 1) * Q8_K_BLOCK_BYTES];
        let sc = unpack_q6_k(b, &mut q);
        let yq = q8_qs(y);
        let isum = scaled_isum16(&sc, &q, yq);
        acc = (f16_at(b, off::Q6_D) * isum as f32).mul_add(f32_at(y, off::Q8_D), acc);
    }
    acc
}

// ---------------------------------------------------------------------------
// Reference weight quantizers (ggml's quantize_row_qX_K_ref, no imatrix)
// ---------------------------------------------------------------------------

/// Below this, a group's largest magnitude counts as zero (ggml's GROUP_MAX_EPS).
const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `make_qkx2_quants`: fits `x ~ scale * L - min` with L in 0..=nmax,
/// trying `nstep + 1` slightly different scales and keeping the weighted
/// least-squares fit with the smallest weighted error. Returns (scale, min)
/// with `min` already negated (>= 0), as ggml stores it.
#[allow(clippy::too_many_arguments)]
fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l_out: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out[..n].fill(0);
        return (0.0, -min);
    }
    let err = |d: f32| if use_mad { d.abs() } else { d * d };
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l_out[i] = l as u8;
        let diff = scale * l_out[i] as f32 + min - x[i];
        best_error += weights[i] * err(diff);
    }
    if nstep < 1 {
        return (scale, -min);
    }
    let mut laux = [0u8; 32];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = l as u8;
            let w = weights[i];
            let lf = l as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let dd = sum_w * sum_l2 - sum_l * sum_l;
        if dd > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / dd;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / dd;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                cur_error += weights[i] * err(diff);
            }
            if cur_error < best_error {
                l_out[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// ggml's `make_qx_quants` for rmse_type = 1 without importance weights:
/// symmetric fit `x ~ scale * (L - nmax)`, refined over 18 nearby scales by
/// |x|^2-weighted least squares. `l_out` receives L + nmax (unsigned).
fn make_qx_quants_rmse1(nmax: i32, x: &[f32], l_out: &mut [i8]) -> f32 {
    let n = x.len();
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let av = v.abs();
        if av > amax {
            amax = av;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let mut iscale = -nmaxf / max;
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l_out[i] = (l + nmax) as i8;
        let w = x[i] * x[i];
        let lf = l as f32;
        sumlx += w * x[i] * lf;
        suml2 += w * lf * lf;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9i32..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmaxf + 0.1f32 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for i in 0..n {
            let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
            let w = x[i] * x[i];
            let lf = l as f32;
            sumlx += w * x[i] * lf;
            suml2 += w * lf * lf;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for i in 0..n {
                let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
                l_out[i] = (l + nmax) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Packs 8 (scale, min) 6-bit pairs into the 12-byte Q4_K/Q5_K layout; the
/// inverse of [`scale_min_k4`].
pub(crate) fn pack_scale_min_k4(ls: &[u8; 8], lm: &[u8; 8], s: &mut [u8]) {
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

/// Shared body of the Q4_K / Q5_K reference quantizers: per 32-element
/// sub-block asymmetric fits, then 6-bit quantized scales/mins relative to
/// f16 super-scales, then a final re-rounding of every element against the
/// scales that will actually be stored. Fills L (0..=nmax) per element and
/// returns the f16-rounded (d, dmin).
fn quantize_block_qk_asym(
    x: &[f32],
    nmax: i32,
    (rmin, nstep): (f32, i32),
    scales_out: &mut [u8],
    l: &mut [u8; QK_K],
) -> (f32, f32) {
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    let mut weights = [0.0f32; 32];
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        let (s, m) = make_qkx2_quants(
            nmax,
            xs,
            &weights,
            &mut l[32 * j..32 * j + 32],
            rmin,
            0.1,
            nstep,
            false,
        );
        scales[j] = s;
        mins[j] = m;
        if s > max_scale {
            max_scale = s;
        }
        if m > max_min {
            max_min = m;
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    for j in 0..8 {
        // ggml stores nearest_int into a uint8_t before the min(63): mimic
        // the truncation.
        ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
    }
    pack_scale_min_k4(&ls, &lm, scales_out);
    let y_d = f16::from_f32(max_scale / 63.0).to_f32();
    let y_dmin = f16::from_f32(max_min / 63.0).to_f32();
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, scales_out);
        let d = y_d * sc as f32;
        if d == 0.0 {
            continue;
        }
        let dm = y_dmin * m as f32;
        for ii in 0..32 {
            let v = nearest_int((x[32 * j + ii] + dm) / d).clamp(0, nmax);
            l[32 * j + ii] = v as u8;
        }
    }
    (y_d, y_dmin)
}

pub fn quantize_row_q4_k(src: &[f32], dst: &mut [u8]) {
    let nb = check_len(src.len(), dst.len(), Q4_K_BLOCK_BYTES, "quantize_row_q4_k");
    let mut l = [0u8; QK_K];
    for (x, y) in src
        .chunks_exact(QK_K)
        .zip(dst.chunks_exact_mut(Q4_K_BLOCK_BYTES))
        .take(nb)
    {
        let (d, dmin) = quantize_block_qk_asym(
            x,
            15,
            (-1.0, 20),
            &mut y[off::Q4_SCALES..off::Q4_SCALES + 12],
            &mut l,
        );
        put_f16(y, off::Q4_D, d);
        put_f16(y, off::Q4_DMIN, dmin);
        for c in 0..4 {
            for i in 0..32 {
                y[off::Q4_QS + 32 * c + i] = l[64 * c + i] | (l[64 * c + 32 + i] << 4);
            }
        }
    }
}

pub fn quantize_row_q5_k(src: &[f32], dst: &mut [u8]) {
    let nb = check_len(src.len(), dst.len(), Q5_K_BLOCK_BYTES, "quantize_row_q5_k");
    let mut l = [0u8; QK_K];
    for (x, y) in src
        .chunks_exact(QK_K)
        .zip(dst.chunks_exact_mut(Q5_K_BLOCK_BYTES))
        .take(nb)
    {
        let (d, dmin) = quantize_block_qk_asym(
            x,
            31,
            (-0.5, 15),
            &mut y[off::Q5_SCALES..off::Q5_SCALES + 12],
            &mut l,
        );
        put_f16(y, off::Q5_D, d);
        put_f16(y, off::Q5_DMIN, dmin);
        y[off::Q5_QH..off::Q5_QH + 32].fill(0);
        for c in 0..4 {
            for i in 0..32 {
                let l1 = l[64 * c + i];
                let l2 = l[64 * c + 32 + i];
                y[off::Q5_QH + i] |= ((l1 >> 4) << (2 * c)) | ((l2 >> 4) << (2 * c + 1));
                y[off::Q5_QS + 32 * c + i] = (l1 & 0x0f) | ((l2 & 0x0f) << 4);
            }
        }
    }
}

pub fn quantize_row_q6_k(src: &[f32], dst: &mut [u8]) {
    let nb = check_len(src.len(), dst.len(), Q6_K_BLOCK_BYTES, "quantize_row_q6_k");
    let mut l = [0i8; QK_K];
    for (x, y) in src
        .chunks_exact(QK_K)
        .zip(dst.chunks_exact_mut(Q6_K_BLOCK_BYTES))
        .take(nb)
    {
        let mut scales = [0.0f32; 16];
        let mut max_scale = 0.0f32;
        let mut max_abs_scale = 0.0f32;
        for ib in 0..16 {
            let s =
                make_qx_quants_rmse1(32, &x[16 * ib..16 * ib + 16], &mut l[16 * ib..16 * ib + 16]);
            scales[ib] = s;
            if s.abs() > max_abs_scale {
                max_abs_scale = s.abs();
                max_scale = s;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            y.fill(0);
            continue;
        }
        // Signed super-scale chosen so the largest sub-scale maps to -128 and
        // the others fit in i8 (clamped at 127).
        let iscale = -128.0f32 / max_scale;
        put_f16(y, off::Q6_D, 1.0 / iscale);
        for ib in 0..16 {
            y[off::Q6_SCALES + ib] = nearest_int(iscale * scales[ib]).min(127) as i8 as u8;
        }
        let yd = f16_at(y, off::Q6_D);
        for j in 0..16 {
            let d = yd * (y[off::Q6_SCALES + j] as i8) as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let v = nearest_int(x[16 * j + ii] / d).clamp(-32, 31);
                l[16 * j + ii] = (v + 32) as i8;
            }
        }
        for half in 0..2 {
            let lh = &l[128 * half..128 * half + 128];
            for i in 0..32 {
                let q1 = lh[i] as u8;
                let q2 = lh[i + 32] as u8;
                let q3 = lh[i + 64] as u8;
                let q4 = lh[i + 96] as u8;
                y[off::Q6_QL + 64 * half + i] = (q1 & 0x0f) | ((q3 & 0x0f) << 4);
                y[off::Q6_QL + 64 * half + 32 + i] = (q2 & 0x0f) | ((q4 & 0x0f) << 4);
                y[off::Q6_QH + 32 * half + i] =
                    (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
            }
        }
    }
}

pub fn quantize_row_q2_k(src: &[f32], dst: &mut [u8]) {
    let nb = check_len(src.len(), dst.len(), Q2_K_BLOCK_BYTES, "quantize_row_q2_k");
    let mut l = [0u8; QK_K];
    for (x, y) in src
        .chunks_exact(QK_K)
        .zip(dst.chunks_exact_mut(Q2_K_BLOCK_BYTES))
        .take(nb)
    {
        let mut scales = [0.0f32; 16];
        let mut mins = [0.0f32; 16];
        let mut weights = [0.0f32; 16];
        let mut max_scale = 0.0f32;
        let mut max_min = 0.0f32;
        for j in 0..16 {
            let xs = &x[16 * j..16 * j + 16];
            for (w, &v) in weights.iter_mut().zip(xs) {
                *w = v.abs();
            }
            let (s, m) = make_qkx2_quants(
                3,
                xs,
                &weights,
                &mut l[16 * j..16 * j + 16],
                -0.5,
                0.1,
                15,
                true,
            );
            scales[j] = s;
            mins[j] = m;
            if s > max_scale {
                max_scale = s;
            }
            if m > max_min {
                max_min = m;
            }
        }
        // 4-bit scales and mins relative to two f16 super-scales (15 = max).
        let sc = &mut y[off::Q2_SCALES..off::Q2_SCALES + 16];
        if max_scale > 0.0 {
            let iscale = 15.0 / max_scale;
            for j in 0..16 {
                sc[j] = nearest_int(iscale * scales[j]) as u8;
            }
        } else {
            sc.fill(0);
        }
        if max_min > 0.0 {
            let iscale = 15.0 / max_min;
            for j in 0..16 {
                sc[j] |= (nearest_int(iscale * mins[j]) << 4) as u8;
            }
        }
        put_f16(
            y,
            off::Q2_D,
            if max_scale > 0.0 {
                max_scale / 15.0
            } else {
                0.0
            },
        );
        put_f16(
            y,
            off::Q2_DMIN,
            if max_min > 0.0 { max_min / 15.0 } else { 0.0 },
        );
        let (yd, ydmin) = (f16_at(y, off::Q2_D), f16_at(y, off::Q2_DMIN));
        for j in 0..16 {
            let s = y[off::Q2_SCALES + j];
            let d = yd * (s & 0x0f) as f32;
            if d == 0.0 {
                continue;
            }
            let dm = ydmin * (s >> 4) as f32;
            for ii in 0..16 {
                l[16 * j + ii] = nearest_int((x[16 * j + ii] + dm) / d).clamp(0, 3) as u8;
            }
        }
        pack_2bit(&l, &mut y[off::Q2_QS..off::Q2_QS + 64]);
    }
}

/// Inverse of the 2-bit unpacking: element 128*h + 32*k + i -> bits 2k of qs[32h + i].
fn pack_2bit(l: &[u8; QK_K], qs: &mut [u8]) {
    for h in 0..2 {
        for i in 0..32 {
            let b = 128 * h + i;
            qs[32 * h + i] = l[b] | (l[b + 32] << 2) | (l[b + 64] << 4) | (l[b + 96] << 6);
        }
    }
}

/// ggml's `make_q3_quants` with do_rmse: symmetric levels -nmax..nmax-1,
/// refined by coordinate descent on the |x|^2-weighted least-squares fit.
/// `l_out` receives level + nmax; an all-zero group gets zeros and scale 0.
fn make_q3_quants_rmse(nmax: i32, x: &[f32], l_out: &mut [i8]) -> f32 {
    let n = x.len();
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let mut lv = [0i32; 16];
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        lv[i] = l;
        let w = x[i] * x[i];
        sumlx += w * x[i] * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut changed = 0;
        for i in 0..n {
            let w = x[i] * x[i];
            let li = lv[i] as f32;
            let mut slx = sumlx - w * x[i] * li;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * li * li;
                let new_l = nearest_int(x[i] * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != lv[i] {
                    let nl = new_l as f32;
                    slx += w * x[i] * nl;
                    sl2 += w * nl * nl;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        lv[i] = new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        changed += 1;
                    }
                }
            }
        }
        if changed == 0 {
            break;
        }
    }
    for i in 0..n {
        l_out[i] = (lv[i] + nmax) as i8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

pub fn quantize_row_q3_k(src: &[f32], dst: &mut [u8]) {
    let nb = check_len(src.len(), dst.len(), Q3_K_BLOCK_BYTES, "quantize_row_q3_k");
    let mut l = [0i8; QK_K];
    for (x, y) in src
        .chunks_exact(QK_K)
        .zip(dst.chunks_exact_mut(Q3_K_BLOCK_BYTES))
        .take(nb)
    {
        let mut scales = [0.0f32; 16];
        let mut max_scale = 0.0f32;
        let mut amax = 0.0f32;
        for j in 0..16 {
            let s = make_q3_quants_rmse(4, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
            scales[j] = s;
            if s.abs() > amax {
                amax = s.abs();
                max_scale = s;
            }
        }
        let sb = &mut y[off::Q3_SCALES..off::Q3_SCALES + 12];
        sb.fill(0);
        if max_scale != 0.0 {
            // Signed super-scale so the largest sub-scale becomes -32; the
            // 6-bit scales are stored biased by +32 (inverse of q3_k_scales).
            let iscale = -32.0f32 / max_scale;
            for j in 0..16 {
                let v = ((nearest_int(iscale * scales[j]) as i8).clamp(-32, 31) + 32) as u8;
                if j < 8 {
                    sb[j] = v & 0x0f;
                } else {
                    sb[j - 8] |= (v & 0x0f) << 4;
                }
                sb[8 + j % 4] |= (v >> 4) << (2 * (j / 4));
            }
            put_f16(y, off::Q3_D, 1.0 / iscale);
        } else {
            put_f16(y, off::Q3_D, 0.0);
        }
        let sc = q3_k_scales(&y[off::Q3_SCALES..off::Q3_SCALES + 12]);
        let yd = f16_at(y, off::Q3_D);
        for j in 0..16 {
            let d = yd * sc[j] as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                l[16 * j + ii] = (nearest_int(x[16 * j + ii] / d).clamp(-4, 3) + 4) as i8;
            }
        }
        // High bit (level >= 4) of element j goes to bit j/32 of hmask[j%32].
        let mut low = [0u8; QK_K];
        y[off::Q3_HMASK..off::Q3_HMASK + 32].fill(0);
        for j in 0..QK_K {
            let mut v = l[j] as u8;
            if v > 3 {
                y[off::Q3_HMASK + j % 32] |= 1 << (j / 32);
                v -= 4;
            }
            low[j] = v;
        }
        pack_2bit(&low, &mut y[off::Q3_QS..off::Q3_QS + 64]);
    }
}
