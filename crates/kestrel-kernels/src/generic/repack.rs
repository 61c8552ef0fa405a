//! Weight repacking at load time: Q4_K, Q6_K, Q4_0 and Q8_0 rows interleaved 8 at a time ("x8"),
//! so that
//! one contiguous stream feeds 8 outputs at once and every activation load, scale unpack and
//! float step is shared by 8 rows (the idea of llama.cpp's CPU repack; the layouts are
//! Kestrel's own, chosen for outputs-in-lanes kernels).
//!
//! A repacked matrix holds `rows / 8` groups, then the `rows % 8` remaining rows in the file's
//! row-major layout. A group is `n / QK` interleaved blocks (QK = 256 for the k-quants, 32 for
//! Q4_0), block `i` of its 8 rows together.
//!
//! Q4_K x8, [`Q4_K_X8_BYTES`] per block:
//!
//! | bytes      | content                                                                |
//! |------------|------------------------------------------------------------------------|
//! | 0..16      | `d` of rows 0..8 (f16)                                                 |
//! | 16..32     | `dmin` of rows 0..8 (f16)                                              |
//! | 32..96     | scale of sub-block `s` for row `r` at `32 + 8 s + r` (u8, 6-bit)       |
//! | 96..160    | mins, sub-blocks `2t, 2t + 1` of row `r` at `96 + 16 t + 2 r` (u8 pair)|
//! | 160..1184  | quants: 4-byte group `k` (0..8) of 32-byte chunk `j` (0..4) of row `r` at `160 + 256 j + 32 k + 4 r` |
//!
//! So a 32-byte load of the quants gives, in dword lane `r`, row `r`'s 4 bytes: low nibbles
//! elements `64 j + 4 k ..+ 4` (sub-block `2 j`), high nibbles the same 32 later (`2 j + 1`).
//! The scales of one sub-block are 8 consecutive bytes (one widening load to 8 lanes); the mins
//! come in the pairs that one `madd` against two sub-blocks' activation sums takes.
//!
//! Q6_K x8, [`Q6_K_X8_BYTES`] per block (the size of the file's 8 blocks):
//!
//! | bytes      | content                                                                |
//! |------------|------------------------------------------------------------------------|
//! | 0..16      | `d` of rows 0..8 (f16)                                                 |
//! | 16..144    | scales, sub-blocks `2t, 2t + 1` of row `r` at `16 + 16 t + 2 r` (i8 pair) |
//! | 144..1680  | sub-block `s` at `144 + 96 s`: two 32-byte low-bit vectors, one of top bits |
//!
//! In sub-block `s`, byte `b` (0..4) of dword lane `r` of the first vector holds the low 4 bits
//! of row `r`'s elements `16 s + b` (low nibble) and `16 s + 4 + b` (high nibble), the second
//! vector those of `16 s + 8 + b` and `16 s + 12 + b`, and the third their top 2 bits, element
//! `16 s + 4 k + b` in bits `2 k..2 k + 2`. A sub-block is then 4 vectors of 4 elements per row
//! against 4 broadcast activation dwords.
//!
//! Q4_0 x8, [`Q4_0_X8_BYTES`] per block (the size of the file's 8 blocks):
//!
//! | bytes      | content                                                                |
//! |------------|------------------------------------------------------------------------|
//! | 0..16      | `d` of rows 0..8 (f16)                                                 |
//! | 16..144    | quants: bytes `4 v..4 v + 4` (v = 0..4) of row `r`'s `qs` at `16 + 32 v + 4 r` |
//!
//! So a 32-byte load gives, in dword lane `r`, row `r`'s elements `4 v..4 v + 4` in the low
//! nibbles and `16 + 4 v..` in the high ones.
//!
//! Q8_0 x8, [`Q8_0_X8_BYTES`] per block (the size of the file's 8 blocks): `d` of rows 0..8
//! (f16) at 0..16, then bytes `4 v..4 v + 4` (v = 0..8) of row `r`'s quants at `16 + 32 v + 4 r`.
//!
//! The Q8_0 kernels keep the row-major AVX2 dot's bits, llama.cpp's eight-lane order
//! ([`super::legacy::vec_dot_q8_0_lanes`]): Gemma 3's golden greedy tokens part from
//! llama.cpp's with any other order. The Q4_0 kernels compute the scalar dot's cheaper
//! arithmetic instead (the exact integer sum of each block, then `sum += (S d_w) d_y` in block
//! order), which differs from the row-major AVX2 dot in the last bits, within the golden
//! tolerances. The rows past the last group take the same dots, so a repacked matrix gives
//! those bits on every table.
//!
//! Repacking is lossless ([`unpack_q4_k_x8_block`], [`unpack_q6_k_x8_block`] give back the
//! file's bytes), and the kernels over the repacked layouts give the same bits as the
//! row-major ones (tested).

// `%` instead of `is_multiple_of`: the workspace MSRV is 1.85.
#![allow(clippy::manual_is_multiple_of)]

use super::kquants::{
    off, pack_q6_k_quants, pack_scale_min_k4, q4_k_dot_blocks, q6_k_dot_blocks, scale_min_k4,
    unpack_q6_k, Q4_K_BLOCK_BYTES, Q6_K_BLOCK_BYTES, QK_K,
};
use super::legacy::{Q4_0_BYTES, Q8_0_BYTES, QK};
use crate::GgmlType;

/// Rows per interleaved group.
pub const X8_ROWS: usize = 8;
/// Bytes of one Q4_K super-block of 8 rows.
pub const Q4_K_X8_BYTES: usize = 8 * Q4_K_BLOCK_BYTES + 32;
/// Bytes of one Q6_K super-block of 8 rows.
pub const Q6_K_X8_BYTES: usize = 8 * Q6_K_BLOCK_BYTES;
/// Bytes of one Q4_0 block of 8 rows.
pub const Q4_0_X8_BYTES: usize = 8 * Q4_0_BYTES;
/// Bytes of one Q8_0 block of 8 rows.
pub const Q8_0_X8_BYTES: usize = 8 * Q8_0_BYTES;

/// Offsets in a Q4_K x8 block.
pub(crate) mod x8off {
    pub const D: usize = 0;
    pub const DMIN: usize = 16;
    pub const SCALES: usize = 32;
    pub const MINS: usize = 96;
    pub const QS: usize = 160;
}

/// Offsets in a Q6_K x8 block.
pub(crate) mod x8off6 {
    pub const D: usize = 0;
    pub const SCALES: usize = 16;
    pub const QS: usize = 144;
    /// Bytes of one 16-element sub-block's quants (two low-bit vectors, one of top bits).
    pub const SUB: usize = 96;
}

/// Offsets in a Q4_0 or Q8_0 x8 block.
pub(crate) mod x8off40 {
    pub const D: usize = 0;
    pub const QS: usize = 16;
}

/// Bytes per 8-row block, bytes per file block and elements per block of an interleaved type.
pub(crate) fn x8_block_bytes(ty: GgmlType) -> Option<(usize, usize, usize)> {
    match ty {
        GgmlType::Q4_K => Some((Q4_K_X8_BYTES, Q4_K_BLOCK_BYTES, QK_K)),
        GgmlType::Q6_K => Some((Q6_K_X8_BYTES, Q6_K_BLOCK_BYTES, QK_K)),
        GgmlType::Q4_0 => Some((Q4_0_X8_BYTES, Q4_0_BYTES, QK)),
        GgmlType::Q8_0 => Some((Q8_0_X8_BYTES, Q8_0_BYTES, QK)),
        _ => None,
    }
}

/// The weight types with an interleaved layout (what [`repack`] packs).
pub fn has_x8_layout(ty: GgmlType) -> bool {
    x8_block_bytes(ty).is_some()
}

/// Bytes of a repacked `rows` x `n` matrix of `ty` (`n` a whole number of blocks). Panics if
/// `ty` has no interleaved layout.
pub fn x8_size(ty: GgmlType, rows: usize, n: usize) -> usize {
    let (xb, bb, qk) = x8_block_bytes(ty).expect("a type with an interleaved layout");
    let nb = n / qk;
    rows / X8_ROWS * nb * xb + rows % X8_ROWS * nb * bb
}

/// Whether a `rows` x `cols` matrix of `ty` has an interleaved layout (at least one group).
pub fn can_repack(ty: GgmlType, rows: usize, cols: usize) -> bool {
    x8_block_bytes(ty).is_some_and(|(_, _, qk)| cols % qk == 0 && cols > 0) && rows >= X8_ROWS
}

/// `data` (a row-major `rows` x `cols` matrix of type `ty`) in the interleaved layout, or None
/// where `ty` has none or the shape does not fit it. Panics if `data` is not `rows` rows long.
pub fn repack(ty: GgmlType, rows: usize, cols: usize, data: &[u8]) -> Option<Vec<u8>> {
    if !can_repack(ty, rows, cols) {
        return None;
    }
    let mut out = vec![0u8; x8_size(ty, rows, cols)];
    repack_x8(ty, rows, cols, data, &mut out);
    Some(out)
}

/// Repacks `rows` row-major rows of `n` elements of `ty` (Q4_K, Q6_K, Q4_0 or Q8_0; `src`,
/// whole rows) into `dst` (`x8_size(ty, rows, n)` bytes). Panics on other types or lengths.
pub fn repack_x8(ty: GgmlType, rows: usize, n: usize, src: &[u8], dst: &mut [u8]) {
    let (xb, bb, qk) = x8_block_bytes(ty).expect("a type with an interleaved layout");
    assert!(n % qk == 0, "repack_x8: {n} is not a multiple of {qk}");
    let nb = n / qk;
    let rb = nb * bb;
    assert_eq!(src.len(), rows * rb, "repack_x8: source length");
    assert_eq!(
        dst.len(),
        x8_size(ty, rows, n),
        "repack_x8: destination length"
    );
    let groups = rows / X8_ROWS;
    for g in 0..groups {
        for i in 0..nb {
            let out = &mut dst[(g * nb + i) * xb..(g * nb + i + 1) * xb];
            for r in 0..X8_ROWS {
                let b = &src[(g * X8_ROWS + r) * rb + i * bb..][..bb];
                match ty {
                    GgmlType::Q4_K => pack_q4_k_row(b, r, out),
                    GgmlType::Q4_0 | GgmlType::Q8_0 => pack_legacy_row(b, r, out),
                    _ => pack_q6_k_row(b, r, out),
                }
            }
        }
    }
    let tail = groups * nb * xb;
    dst[tail..].copy_from_slice(&src[groups * X8_ROWS * rb..]);
}

/// Row `r`'s Q4_K block `b` into its places in an interleaved block.
fn pack_q4_k_row(b: &[u8], r: usize, out: &mut [u8]) {
    use x8off::*;
    out[D + 2 * r..D + 2 * r + 2].copy_from_slice(&b[off::Q4_D..off::Q4_D + 2]);
    out[DMIN + 2 * r..DMIN + 2 * r + 2].copy_from_slice(&b[off::Q4_DMIN..off::Q4_DMIN + 2]);
    let s = &b[off::Q4_SCALES..off::Q4_SCALES + 12];
    for sb in 0..8 {
        let (sc, m) = scale_min_k4(sb, s);
        out[SCALES + 8 * sb + r] = sc;
        out[MINS + 16 * (sb / 2) + 2 * r + sb % 2] = m;
    }
    for j in 0..4 {
        for k in 0..8 {
            let q = off::Q4_QS + 32 * j + 4 * k;
            out[QS + 256 * j + 32 * k + 4 * r..][..4].copy_from_slice(&b[q..q + 4]);
        }
    }
}

/// Row `r` (0..8) of a Q4_K x8 block as the file's 144-byte block.
pub fn unpack_q4_k_x8_block(x8: &[u8], r: usize) -> [u8; Q4_K_BLOCK_BYTES] {
    use x8off::*;
    assert!(
        x8.len() >= Q4_K_X8_BYTES && r < X8_ROWS,
        "unpack_q4_k_x8_block: bounds"
    );
    let mut b = [0u8; Q4_K_BLOCK_BYTES];
    b[off::Q4_D..off::Q4_D + 2].copy_from_slice(&x8[D + 2 * r..D + 2 * r + 2]);
    b[off::Q4_DMIN..off::Q4_DMIN + 2].copy_from_slice(&x8[DMIN + 2 * r..DMIN + 2 * r + 2]);
    let sc: [u8; 8] = std::array::from_fn(|sb| x8[SCALES + 8 * sb + r]);
    let m: [u8; 8] = std::array::from_fn(|sb| x8[MINS + 16 * (sb / 2) + 2 * r + sb % 2]);
    pack_scale_min_k4(&sc, &m, &mut b[off::Q4_SCALES..off::Q4_SCALES + 12]);
    for j in 0..4 {
        for k in 0..8 {
            let q = off::Q4_QS + 32 * j + 4 * k;
            b[q..q + 4].copy_from_slice(&x8[QS + 256 * j + 32 * k + 4 * r..][..4]);
        }
    }
    b
}

/// `rows` (a multiple of 8) row-major Q5_0 rows of `n` elements, `wrb` bytes apart in `src`,
/// as a repacked Q8_0 matrix in `dst` (`x8_size(Q8_0, rows, n)` bytes): each block keeps its
/// `d` and holds its 32 values `q - 16` as i8, the same numbers exactly. Over it the Q8_0
/// panels compute the eight-lane Q5_0 dot's bits (the AVX2 Q5_0 and Q8_0 dots are the same
/// sign-trick sums of 4 products per lane, FMA'd with `d_w d_y`).
pub(crate) fn q5_0_as_q8_0_x8(n: usize, src: &[u8], wrb: usize, rows: usize, dst: &mut [u8]) {
    use super::legacy::Q5_0_BYTES;
    assert!(n % QK == 0 && rows % X8_ROWS == 0, "q5_0_as_q8_0_x8: shape");
    let nb = n / QK;
    assert!(rows == 0 || src.len() >= (rows - 1) * wrb + nb * Q5_0_BYTES);
    assert_eq!(dst.len(), x8_size(GgmlType::Q8_0, rows, n));
    let mut b = [0u8; Q8_0_BYTES];
    for g in 0..rows / X8_ROWS {
        for i in 0..nb {
            let out = &mut dst[(g * nb + i) * Q8_0_X8_BYTES..][..Q8_0_X8_BYTES];
            for r in 0..X8_ROWS {
                let x = &src[(g * X8_ROWS + r) * wrb + i * Q5_0_BYTES..][..Q5_0_BYTES];
                let qh = u32::from_le_bytes([x[2], x[3], x[4], x[5]]);
                b[..2].copy_from_slice(&x[..2]);
                for j in 0..16 {
                    let lo = (x[6 + j] & 0xF) | (((qh >> j) & 1) << 4) as u8;
                    let hi = (x[6 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4) as u8;
                    b[2 + j] = (lo as i8 - 16) as u8;
                    b[2 + 16 + j] = (hi as i8 - 16) as u8;
                }
                pack_legacy_row(&b, r, out);
            }
        }
    }
}

/// Row `r`'s Q4_0 or Q8_0 block `b` into its places in an interleaved block: the scale, then
/// the quants 4 bytes at a time.
fn pack_legacy_row(b: &[u8], r: usize, out: &mut [u8]) {
    use x8off40::*;
    out[D + 2 * r..D + 2 * r + 2].copy_from_slice(&b[..2]);
    for v in 0..(b.len() - 2) / 4 {
        out[QS + 32 * v + 4 * r..][..4].copy_from_slice(&b[2 + 4 * v..2 + 4 * v + 4]);
    }
}

/// Row `r` (0..8) of a Q4_0 or Q8_0 x8 block as the file's block, into `b` (its size).
fn unpack_legacy_x8_block(x8: &[u8], r: usize, b: &mut [u8]) {
    use x8off40::*;
    assert!(
        x8.len() >= 8 * b.len() && r < X8_ROWS,
        "unpack_legacy_x8_block: bounds"
    );
    b[..2].copy_from_slice(&x8[D + 2 * r..D + 2 * r + 2]);
    for v in 0..(b.len() - 2) / 4 {
        b[2 + 4 * v..2 + 4 * v + 4].copy_from_slice(&x8[QS + 32 * v + 4 * r..][..4]);
    }
}

/// Row `r` (0..8) of the interleaved block `x8` of `ty` as the file's block, into `out`
/// (the file's block size). Panics on a type without an interleaved layout.
pub fn unpack_x8_block(ty: GgmlType, x8: &[u8], r: usize, out: &mut [u8]) {
    match ty {
        GgmlType::Q4_K => out.copy_from_slice(&unpack_q4_k_x8_block(x8, r)),
        GgmlType::Q6_K => out.copy_from_slice(&unpack_q6_k_x8_block(x8, r)),
        GgmlType::Q4_0 | GgmlType::Q8_0 => unpack_legacy_x8_block(x8, r, out),
        _ => panic!("unpack_x8_block: {ty} has no interleaved layout"),
    }
}

/// The scalar twin of the repacked Q4_0 panel kernels, and what they compute on every table:
/// each row's blocks unpacked and through the scalar dot ([`super::legacy::vec_dot_q4_0`]).
/// The contract of [`panel_q4_k_x8`].
///
/// # Safety
/// As [`panel_q4_k_x8`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn panel_q4_0_x8(
    n: usize,
    w: &[u8],
    rows: usize,
    r0: usize,
    r1: usize,
    a: &[u8],
    arb: usize,
    cols: usize,
    y: *mut f32,
    ys: usize,
    _slice_cols: usize,
) {
    let p = (n, w, rows, r0, r1, a, arb, cols);
    legacy_x8_scalar(GgmlType::Q4_0, p, y, ys)
}

/// The scalar twin of the repacked Q8_0 panel kernels, as [`panel_q4_0_x8`] with
/// [`super::legacy::vec_dot_q8_0_lanes`] (the AVX2 dot's order).
///
/// # Safety
/// As [`panel_q4_k_x8`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn panel_q8_0_x8(
    n: usize,
    w: &[u8],
    rows: usize,
    r0: usize,
    r1: usize,
    a: &[u8],
    arb: usize,
    cols: usize,
    y: *mut f32,
    ys: usize,
    _slice_cols: usize,
) {
    let p = (n, w, rows, r0, r1, a, arb, cols);
    legacy_x8_scalar(GgmlType::Q8_0, p, y, ys)
}

/// Both legacy scalar twins: each row unpacked and through the scalar dot, every column.
#[allow(clippy::type_complexity)]
unsafe fn legacy_x8_scalar(
    ty: GgmlType,
    (n, w, rows, r0, r1, a, arb, cols): (usize, &[u8], usize, usize, usize, &[u8], usize, usize),
    y: *mut f32,
    ys: usize,
) {
    let nb = n / QK;
    assert!(
        n % QK == 0 && w.len() >= x8_size(ty, rows, n),
        "x8 panel: weights too short"
    );
    let act_len = (cols.max(1) - 1) * arb + nb * Q8_0_BYTES;
    assert!(
        r1 <= rows && (cols == 0 || a.len() >= act_len),
        "x8 panel: bounds"
    );
    let dot = if ty == GgmlType::Q4_0 {
        super::legacy::vec_dot_q4_0
    } else {
        super::legacy::vec_dot_q8_0_lanes
    };
    let mut row = vec![0u8; ty.row_bytes(n).expect("whole blocks")];
    for r in r0..r1 {
        x8_row(ty, w, rows, n, r, &mut row);
        for c in 0..cols {
            y.add(c * ys + r).write(dot(n, &row, &a[c * arb..]));
        }
    }
}

/// Row `r` of a repacked `rows` x `n` matrix of `ty` in the file's layout, into `out` (one
/// row's bytes).
pub fn x8_row(ty: GgmlType, w: &[u8], rows: usize, n: usize, r: usize, out: &mut [u8]) {
    let (xb, bb, qk) = x8_block_bytes(ty).expect("a type with an interleaved layout");
    let nb = n / qk;
    let groups = rows / X8_ROWS;
    assert!(r < rows && out.len() == nb * bb, "x8_row: bounds");
    if r >= groups * X8_ROWS {
        let t = groups * nb * xb + (r - groups * X8_ROWS) * nb * bb;
        out.copy_from_slice(&w[t..t + nb * bb]);
        return;
    }
    for (i, o) in out.chunks_exact_mut(bb).enumerate() {
        unpack_x8_block(ty, &w[(r / X8_ROWS * nb + i) * xb..], r % X8_ROWS, o);
    }
}

/// Element `e` (0..16) of a Q6_K x8 sub-block: the low-bit vector (0 or 1), the byte in the
/// lane, the nibble's shift, and the shift of its top bits in the third vector.
#[inline]
fn q6_place(e: usize) -> (usize, usize, usize, usize) {
    let (k, b) = (e / 4, e % 4);
    (k / 2, b, 4 * (k % 2), 2 * k)
}

/// Row `r`'s Q6_K block `b` into its places in an interleaved block.
fn pack_q6_k_row(b: &[u8], r: usize, out: &mut [u8]) {
    use x8off6::*;
    out[D + 2 * r..D + 2 * r + 2].copy_from_slice(&b[off::Q6_D..off::Q6_D + 2]);
    let mut q = [0i8; QK_K];
    let sc = unpack_q6_k(b, &mut q);
    for s in 0..16 {
        out[SCALES + 16 * (s / 2) + 2 * r + s % 2] = sc[s] as u8;
        // The three dwords of this row, built in registers (the places of `q6_place`).
        let mut w = [0u32; 3];
        for b in 0..4 {
            let v = |k: usize| (q[16 * s + 4 * k + b] + 32) as u32;
            let (v0, v1, v2, v3) = (v(0), v(1), v(2), v(3));
            w[0] |= ((v0 & 0x0f) | (v1 & 0x0f) << 4) << (8 * b);
            w[1] |= ((v2 & 0x0f) | (v3 & 0x0f) << 4) << (8 * b);
            w[2] |= ((v0 >> 4) | (v1 >> 4) << 2 | (v2 >> 4) << 4 | (v3 >> 4) << 6) << (8 * b);
        }
        let sub = QS + SUB * s + 4 * r;
        for (v, word) in w.iter().enumerate() {
            out[sub + 32 * v..sub + 32 * v + 4].copy_from_slice(&word.to_le_bytes());
        }
    }
}

/// Row `r` (0..8) of a Q6_K x8 block as the file's 210-byte block.
pub fn unpack_q6_k_x8_block(x8: &[u8], r: usize) -> [u8; Q6_K_BLOCK_BYTES] {
    use x8off6::*;
    assert!(
        x8.len() >= Q6_K_X8_BYTES && r < X8_ROWS,
        "unpack_q6_k_x8_block: bounds"
    );
    let mut b = [0u8; Q6_K_BLOCK_BYTES];
    let mut q = [0u8; QK_K];
    for s in 0..16 {
        b[off::Q6_SCALES + s] = x8[SCALES + 16 * (s / 2) + 2 * r + s % 2];
        let sub = QS + SUB * s;
        for e in 0..16 {
            let (vec, byte, nib, hs) = q6_place(e);
            let lo = (x8[sub + 32 * vec + 4 * r + byte] >> nib) & 0x0f;
            let hi = (x8[sub + 64 + 4 * r + byte] >> hs) & 3;
            q[16 * s + e] = lo | (hi << 4);
        }
    }
    pack_q6_k_quants(&q, &mut b);
    b[off::Q6_D..off::Q6_D + 2].copy_from_slice(&x8[D + 2 * r..D + 2 * r + 2]);
    b
}

/// The scalar twin of the repacked Q4_K panel kernels (same contract as the row-major
/// [`crate::dispatch::PanelFn`], with `w` the repacked matrix and `rows` its row count): each
/// row's blocks are unpacked and go through the row-major dot's arithmetic, the first
/// `slice_cols` columns in the prompt order. Writes rows `r0..r1` of every column.
///
/// # Safety
/// `y` has `(cols - 1) * ys + rows` writable floats, rows `r0..r1` of which only this call
/// writes. `r1 <= rows`, and `w` and `a` are as long as [`x8_size`] and `cols` columns `arb`
/// bytes apart say (checked).
#[allow(clippy::too_many_arguments)]
pub unsafe fn panel_q4_k_x8(
    n: usize,
    w: &[u8],
    rows: usize,
    r0: usize,
    r1: usize,
    a: &[u8],
    arb: usize,
    cols: usize,
    y: *mut f32,
    ys: usize,
    slice_cols: usize,
) {
    let p = (n, w, rows, r0, r1, a, arb, cols);
    x8_panel_scalar(GgmlType::Q4_K, p, y, ys, slice_cols)
}

/// The scalar twin of the repacked Q6_K panel kernels, as [`panel_q4_k_x8`] (Q6_K has one
/// order).
///
/// # Safety
/// As [`panel_q4_k_x8`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn panel_q6_k_x8(
    n: usize,
    w: &[u8],
    rows: usize,
    r0: usize,
    r1: usize,
    a: &[u8],
    arb: usize,
    cols: usize,
    y: *mut f32,
    ys: usize,
    _slice_cols: usize,
) {
    let p = (n, w, rows, r0, r1, a, arb, cols);
    x8_panel_scalar(GgmlType::Q6_K, p, y, ys, 0)
}

/// Both scalar twins: each row's blocks unpacked and through the row-major dot's arithmetic.
#[allow(clippy::type_complexity)]
unsafe fn x8_panel_scalar(
    ty: GgmlType,
    (n, w, rows, r0, r1, a, arb, cols): (usize, &[u8], usize, usize, usize, &[u8], usize, usize),
    y: *mut f32,
    ys: usize,
    slice_cols: usize,
) {
    let nb = n / QK_K;
    let (xb, bb, _) = x8_block_bytes(ty).expect("a type with an interleaved layout");
    assert!(
        w.len() >= x8_size(ty, rows, n),
        "x8 panel: weights too short"
    );
    let act_len = (cols.max(1) - 1) * arb + nb * super::kquants::Q8_K_BLOCK_BYTES;
    assert!(
        r1 <= rows && (cols == 0 || a.len() >= act_len),
        "x8 panel: bounds"
    );
    let groups = rows / X8_ROWS;
    let tail = &w[groups * nb * xb..];
    for c in 0..cols {
        let col = &a[c * arb..];
        for row in r0..r1 {
            let (g, r) = (row / X8_ROWS, row % X8_ROWS);
            // Block i of this row: from its group, or from the row-major rows at the end.
            let file_block = |i: usize| &tail[(row - groups * X8_ROWS) * nb * bb + i * bb..][..bb];
            let v = if ty == GgmlType::Q4_K {
                let block = |i: usize| -> [u8; Q4_K_BLOCK_BYTES] {
                    if g < groups {
                        unpack_q4_k_x8_block(&w[(g * nb + i) * xb..], r)
                    } else {
                        file_block(i).try_into().unwrap()
                    }
                };
                q4_k_dot_blocks(n, block, col, c < slice_cols)
            } else {
                let block = |i: usize| -> [u8; Q6_K_BLOCK_BYTES] {
                    if g < groups {
                        unpack_q6_k_x8_block(&w[(g * nb + i) * xb..], r)
                    } else {
                        file_block(i).try_into().unwrap()
                    }
                };
                q6_k_dot_blocks(n, block, col)
            };
            y.add(c * ys + row).write(v);
        }
    }
}
