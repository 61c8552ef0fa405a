//! Activation codecs: how rows of hidden states travel. `f32` is exact; `f16` halves the
//! bytes; `q8` keeps 8 bits per value with one f16 scale per block of 32 values of a row
//! (the Q8_0 idea), so a row's outliers only cost precision inside their own block.
//!
//! `f16` rows carry a power-of-two scale (f32) first: residual streams can exceed f16's
//! largest value (65504; gemma-3-270m's first position reaches ~1e5 from layer 8 on), which a
//! plain cast turns into infinity. Dividing by a power of two keeps every value's f16
//! precision and only costs 4 bytes a row.

use crate::error::{CollabError, Result};
use half::f16;

/// Values per q8 block (the last block of a row may be shorter).
pub const Q8_BLOCK: usize = 32;

/// An f16 row whose largest magnitude is above this is scaled down by a power of two; the
/// headroom below 65504 leaves room for the scaled values' rounding.
const F16_SAFE: f32 = 32768.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireFormat {
    F32,
    F16,
    Q8,
}

impl WireFormat {
    pub const ALL: [WireFormat; 3] = [WireFormat::F32, WireFormat::F16, WireFormat::Q8];

    pub fn as_str(self) -> &'static str {
        match self {
            WireFormat::F32 => "f32",
            WireFormat::F16 => "f16",
            WireFormat::Q8 => "q8",
        }
    }

    pub fn parse(s: &str) -> Result<WireFormat> {
        match s {
            "f32" => Ok(WireFormat::F32),
            "f16" => Ok(WireFormat::F16),
            "q8" => Ok(WireFormat::Q8),
            _ => Err(CollabError::SplitInvalid(format!(
                "unknown wire format {s:?} (f32, f16 or q8)"
            ))),
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            WireFormat::F32 => 0,
            WireFormat::F16 => 1,
            WireFormat::Q8 => 2,
        }
    }

    pub(crate) fn from_code(c: u8) -> Result<WireFormat> {
        match c {
            0 => Ok(WireFormat::F32),
            1 => Ok(WireFormat::F16),
            2 => Ok(WireFormat::Q8),
            _ => Err(CollabError::Malformed(format!(
                "unknown wire format code {c}"
            ))),
        }
    }

    /// Bytes one row of `n_embd` values takes on the wire (the payload, without headers).
    pub fn row_bytes(self, n_embd: usize) -> usize {
        match self {
            WireFormat::F32 => 4 * n_embd,
            WireFormat::F16 => 4 + 2 * n_embd,
            WireFormat::Q8 => n_embd + 2 * n_embd.div_ceil(Q8_BLOCK),
        }
    }

    /// Append `x` (whole rows of `n_embd`) to `out`.
    pub fn encode(self, x: &[f32], n_embd: usize, out: &mut Vec<u8>) {
        match self {
            WireFormat::F32 => x
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            WireFormat::F16 => {
                for row in x.chunks(n_embd.max(1)) {
                    let scale = f16_row_scale(row);
                    out.extend_from_slice(&scale.to_le_bytes());
                    let inv = 1.0 / scale;
                    row.iter()
                        .for_each(|v| out.extend_from_slice(&f16::from_f32(v * inv).to_le_bytes()));
                }
            }
            WireFormat::Q8 => {
                for row in x.chunks(n_embd.max(1)) {
                    for b in row.chunks(Q8_BLOCK) {
                        encode_q8_block(b, out);
                    }
                }
            }
        }
    }

    /// Decode `rows` rows of `n_embd` from exactly `bytes`.
    pub fn decode(self, bytes: &[u8], rows: usize, n_embd: usize) -> Result<Vec<f32>> {
        let want = rows
            .checked_mul(self.row_bytes(n_embd))
            .ok_or_else(|| CollabError::Malformed("row count overflows".into()))?;
        if bytes.len() != want {
            return Err(CollabError::Malformed(format!(
                "{} payload bytes for {rows} rows of {n_embd} in {} (want {want})",
                bytes.len(),
                self.as_str()
            )));
        }
        let mut out = Vec::with_capacity(rows * n_embd);
        match self {
            WireFormat::F32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
            WireFormat::F16 => {
                for row in bytes.chunks(self.row_bytes(n_embd).max(1)) {
                    let scale = f32::from_le_bytes([row[0], row[1], row[2], row[3]]);
                    if !(scale.is_finite() && scale > 0.0) {
                        return Err(CollabError::Malformed(format!("f16 row scale {scale}")));
                    }
                    out.extend(
                        row[4..]
                            .chunks_exact(2)
                            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32() * scale),
                    );
                }
            }
            WireFormat::Q8 => {
                for row in bytes.chunks(self.row_bytes(n_embd).max(1)) {
                    let mut at = 0;
                    let mut left = n_embd;
                    while left > 0 {
                        let n = left.min(Q8_BLOCK);
                        let d = f16::from_le_bytes([row[at], row[at + 1]]).to_f32();
                        out.extend(row[at + 2..at + 2 + n].iter().map(|&q| q as i8 as f32 * d));
                        at += 2 + n;
                        left -= n;
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The power of two that brings `row` under [`F16_SAFE`] (1 for ordinary rows).
fn f16_row_scale(row: &[f32]) -> f32 {
    let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
    if !amax.is_finite() || amax <= F16_SAFE {
        return 1.0;
    }
    (amax / F16_SAFE).log2().ceil().exp2()
}

fn encode_q8_block(b: &[f32], out: &mut Vec<u8>) {
    let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    // The scale is rounded to f16 first so the quantized values are computed against the
    // scale the receiver will actually use.
    let d = f16::from_f32(amax / 127.0);
    let df = d.to_f32();
    let inv = if df > 0.0 { 1.0 / df } else { 0.0 };
    out.extend_from_slice(&d.to_le_bytes());
    out.extend(
        b.iter()
            .map(|v| (v * inv).round().clamp(-127.0, 127.0) as i8 as u8),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize, e: usize) -> Vec<f32> {
        // A deterministic mix of small values and a few large outliers, as residual streams have.
        (0..n * e)
            .map(|i| {
                let x = ((i * 2654435761) % 1000) as f32 / 1000.0 - 0.5;
                if i % 97 == 0 {
                    x * 300.0
                } else {
                    x
                }
            })
            .collect()
    }

    #[test]
    fn f32_round_trip_is_exact() {
        let x = rows(3, 576);
        let mut b = Vec::new();
        WireFormat::F32.encode(&x, 576, &mut b);
        assert_eq!(b.len(), 3 * WireFormat::F32.row_bytes(576));
        assert_eq!(WireFormat::F32.decode(&b, 3, 576).unwrap(), x);
    }

    #[test]
    fn f16_round_trip_within_half_precision() {
        let x = rows(2, 640);
        let mut b = Vec::new();
        WireFormat::F16.encode(&x, 640, &mut b);
        assert_eq!(b.len(), 2 * (4 + 2 * 640));
        let y = WireFormat::F16.decode(&b, 2, 640).unwrap();
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= a.abs() * 1e-3 + 1e-7, "{a} vs {b}");
        }
    }

    #[test]
    fn f16_keeps_values_past_the_half_range() {
        // A row like gemma-3's first position: one value past 65504, the rest ordinary.
        let mut x = rows(2, 640);
        x[3] = 103_772.4;
        x[5] = -70_000.0;
        x[640 + 7] = 65_504.0 * 7.5;
        let mut b = Vec::new();
        WireFormat::F16.encode(&x, 640, &mut b);
        let y = WireFormat::F16.decode(&b, 2, 640).unwrap();
        for (a, b) in x.iter().zip(&y) {
            assert!(b.is_finite(), "{a} became {b}");
            // Relative precision is kept down to the f16 subnormals of the scaled row.
            assert!((a - b).abs() <= a.abs() * 1e-3 + 1e-3, "{a} vs {b}");
        }
        // A plain cast would have overflowed.
        assert!(f16::from_f32(103_772.4).to_f32().is_infinite());
        // A corrupt scale is an error, not a NaN row.
        b[0..4].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(WireFormat::F16.decode(&b, 2, 640).is_err());
    }

    #[test]
    fn q8_round_trip_within_half_a_step_per_block() {
        // 50 is not a multiple of 32: the short last block is covered too.
        for e in [576, 50] {
            let x = rows(4, e);
            let mut b = Vec::new();
            WireFormat::Q8.encode(&x, e, &mut b);
            assert_eq!(b.len(), 4 * WireFormat::Q8.row_bytes(e));
            let y = WireFormat::Q8.decode(&b, 4, e).unwrap();
            for (xr, yr) in x.chunks(e).zip(y.chunks(e)) {
                for (xb, yb) in xr.chunks(Q8_BLOCK).zip(yr.chunks(Q8_BLOCK)) {
                    let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let step = amax / 127.0;
                    for (a, b) in xb.iter().zip(yb) {
                        // Half a step plus the f16 rounding of the scale.
                        assert!((a - b).abs() <= 0.5 * step + amax * 1e-3, "{a} vs {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn bytes_per_token() {
        // SmolLM2-135M (576) and Gemma-3-270M (640).
        assert_eq!(WireFormat::F32.row_bytes(576), 2304);
        assert_eq!(WireFormat::F16.row_bytes(576), 1156);
        assert_eq!(WireFormat::Q8.row_bytes(576), 612);
        assert_eq!(WireFormat::Q8.row_bytes(640), 680);
    }

    #[test]
    fn wrong_length_is_an_error() {
        for f in WireFormat::ALL {
            assert!(f.decode(&[0u8; 7], 1, 576).is_err());
        }
        assert!(WireFormat::parse("bf16").is_err());
    }
}
