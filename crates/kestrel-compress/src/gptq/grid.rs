//! The quantization grid of one block, once its scales are chosen: element k of the block can
//! take the values `a[k] * u + b[k]` for integer codes `u` in `0..=umax`. GPTQ picks codes one
//! column at a time against a fixed grid, so it needs the grid (read from the block's scale
//! fields) and a way to store one element's code back into the block bytes.
//!
//! Layouts are ggml's (see `kestrel-kernels`' dequantizers); a test checks both functions
//! against `kestrel_kernels::dequantize_row` on every supported type.

use kestrel_gguf::GgmlType;
use kestrel_kernels::f16_at;

/// Types GPTQ can write here: legacy 32-element blocks and the Q4_K/Q5_K/Q6_K super-blocks.
/// (Q2_K and Q3_K pack their codes more intricately and stay with the scale-only quantizers.)
pub fn supports(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(ty, Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q4_K | Q5_K | Q6_K)
}

/// Unpacks the 6-bit (scale, min) pair `j` of Q4_K/Q5_K (ggml's `get_scale_min_k4`).
fn scale_min_k4(j: usize, s: &[u8]) -> (f32, f32) {
    let (sc, m) = if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    };
    (sc as f32, m as f32)
}

/// Fills `a`, `b` (one entry per element of the block) and returns the largest code.
pub fn levels(ty: GgmlType, blk: &[u8], a: &mut [f32], b: &mut [f32]) -> u32 {
    use GgmlType::*;
    match ty {
        Q4_0 | Q5_0 | Q8_0 => {
            let d = f16_at(blk, 0);
            let (umax, zero) = match ty {
                Q4_0 => (15, 8.0),
                Q5_0 => (31, 16.0),
                _ => (255, 128.0),
            };
            a.fill(d);
            b.fill(-zero * d);
            umax
        }
        Q4_1 | Q5_1 => {
            a.fill(f16_at(blk, 0));
            b.fill(f16_at(blk, 2));
            if ty == Q4_1 {
                15
            } else {
                31
            }
        }
        Q4_K | Q5_K => {
            let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
            for j in 0..8 {
                let (sc, m) = scale_min_k4(j, &blk[4..16]);
                a[32 * j..32 * j + 32].fill(d * sc);
                b[32 * j..32 * j + 32].fill(-dmin * m);
            }
            if ty == Q4_K {
                15
            } else {
                31
            }
        }
        Q6_K => {
            let d = f16_at(blk, 208);
            for j in 0..16 {
                let dl = d * (blk[192 + j] as i8) as f32;
                a[16 * j..16 * j + 16].fill(dl);
                b[16 * j..16 * j + 16].fill(-32.0 * dl);
            }
            63
        }
        _ => unreachable!("levels: unsupported type {ty} (callers check `supports`)"),
    }
}

fn set_nibble(byte: &mut u8, high: bool, v: u8) {
    if high {
        *byte = (*byte & 0x0f) | (v << 4);
    } else {
        *byte = (*byte & 0xf0) | (v & 0x0f);
    }
}

fn set_bit(byte: &mut u8, bit: usize, on: bool) {
    if on {
        *byte |= 1 << bit;
    } else {
        *byte &= !(1 << bit);
    }
}

/// Stores code `u` (at most the `levels` maximum) of element `k` into the block.
pub fn set_code(ty: GgmlType, blk: &mut [u8], k: usize, u: u32) {
    use GgmlType::*;
    let u8v = u as u8;
    match ty {
        Q4_0 | Q4_1 => {
            let qs = if ty == Q4_0 { 2 } else { 4 };
            set_nibble(&mut blk[qs + k % 16], k >= 16, u8v);
        }
        Q5_0 | Q5_1 => {
            let (qh, qs) = if ty == Q5_0 { (2, 6) } else { (4, 8) };
            set_nibble(&mut blk[qs + k % 16], k >= 16, u8v & 0x0f);
            set_bit(&mut blk[qh + k / 8], k % 8, u8v & 0x10 != 0);
        }
        Q8_0 => blk[2 + k] = (u as i32 - 128) as i8 as u8,
        Q4_K => {
            let (c, l) = (k / 64, k % 64);
            set_nibble(&mut blk[16 + 32 * c + l % 32], l >= 32, u8v);
        }
        Q5_K => {
            let (c, l) = (k / 64, k % 64);
            set_nibble(&mut blk[48 + 32 * c + l % 32], l >= 32, u8v & 0x0f);
            let bit = 2 * c + usize::from(l >= 32);
            set_bit(&mut blk[16 + l % 32], bit, u8v & 0x10 != 0);
        }
        Q6_K => {
            // Per 128-element half: element 32*g + l (g = 0..4) has its low nibble in
            // ql[l + 32*(g%2)] (high nibble for g >= 2) and its top two bits at bits 2g of qh[l].
            let (half, e) = (k / 128, k % 128);
            let (g, l) = (e / 32, e % 32);
            let ql = 64 * half + l + 32 * (g % 2);
            set_nibble(&mut blk[ql], g >= 2, u8v & 0x0f);
            let qh = &mut blk[128 + 32 * half + l];
            *qh = (*qh & !(3 << (2 * g))) | (((u8v >> 4) & 3) << (2 * g));
        }
        _ => unreachable!("set_code: unsupported type {ty} (callers check `supports`)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random codes written with `set_code` must dequantize (by kestrel-kernels) to
    /// `a * u + b` with the grid `levels` reads.
    #[test]
    fn grid_matches_the_dequantizer() {
        use GgmlType::*;
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for ty in [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K] {
            let n = ty.block_size();
            let x: Vec<f32> = (0..n)
                .map(|_| (rnd() % 2001) as f32 / 1000.0 - 1.0)
                .collect();
            let mut blk = vec![0u8; ty.row_bytes(n).unwrap()];
            crate::rtn::quantize_row(ty, &x, &mut blk);
            let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
            let umax = levels(ty, &blk, &mut a, &mut b);
            let codes: Vec<u32> = (0..n).map(|_| (rnd() % (umax as u64 + 1)) as u32).collect();
            for (k, &u) in codes.iter().enumerate() {
                set_code(ty, &mut blk, k, u);
            }
            let mut y = vec![0.0; n];
            kestrel_kernels::dequantize_row(ty, &blk, &mut y);
            for k in 0..n {
                let want = a[k] * codes[k] as f32 + b[k];
                assert!(
                    (y[k] - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "{ty} element {k}: dequantized {} != grid {want}",
                    y[k]
                );
            }
        }
    }
}
