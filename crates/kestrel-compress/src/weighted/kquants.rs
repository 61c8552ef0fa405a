//! Weighted k-quants (256-element super-blocks). Block layouts (ggml, bytes):
//! Q2_K {scales[16], qs[64], d, dmin}; Q3_K {hmask[32], qs[64], scales[12], d};
//! Q4_K {d, dmin, scales[12], qs[128]}; Q5_K {d, dmin, scales[12], qh[32], qs[128]};
//! Q6_K {ql[128], qh[64], scales[16] (i8), d}. The element packings are the inverses of the
//! dequantizers in `kestrel_kernels::generic::kquants`.

// Block loops index several parallel arrays (scales, weights, levels) by sub-block.
#![allow(clippy::needless_range_loop)]

use super::{f16_round, put_f16, search};
use crate::rtn::kquants::pack_2bit;
use kestrel_kernels::generic::kquants::layout::pack_scale_min_k4;
use kestrel_kernels::generic::kquants::{nearest_int, q3_k_scales, scale_min_k4, QK_K};

/// Mean square of a super-block times `factor` (llama.cpp uses 2 for most k-quants).
fn sigma2(x: &[f32], factor: f32) -> f32 {
    factor * x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32
}

fn weights(x: &[f32], qw: &[f32], s2: f32, out: &mut [f32]) -> f32 {
    let mut sum = 0.0;
    for ((o, &v), &q) in out.iter_mut().zip(x).zip(qw) {
        *o = q * (s2 + v * v).sqrt();
        sum += *o;
    }
    sum
}

/// Q4_K and Q5_K: 8 sub-blocks of 32 with asymmetric fits, their scales and mins quantized
/// to 6 bits against two f16 super-scales, then every element re-rounded against the stored
/// scales.
fn asym_k(x: &[f32], qw: &[f32], y: &mut [u8], nmax: i32) -> [u8; QK_K] {
    let s2 = sigma2(x, 2.0);
    let mut l = [0u8; QK_K];
    let (mut scales, mut mins, mut sw) = ([0.0f32; 8], [0.0f32; 8], [0.0f32; 8]);
    let mut w = [0.0f32; 32];
    for j in 0..8 {
        let r = 32 * j..32 * j + 32;
        sw[j] = weights(&x[r.clone()], &qw[r.clone()], s2, &mut w);
        let (d, m) = search::qkx3(nmax, &x[r.clone()], &w, &mut l[r]);
        scales[j] = d;
        mins[j] = m;
    }
    let (mut ls, mut lm) = ([0u8; 8], [0u8; 8]);
    let d_block = search::qp(63, &scales, &sw, &mut ls);
    let m_block = search::qp(63, &mins, &sw, &mut lm);
    pack_scale_min_k4(&ls, &lm, &mut y[4..16]);
    put_f16(&mut y[0..], d_block);
    put_f16(&mut y[2..], m_block);
    let (d, dmin) = (f16_round(d_block), f16_round(m_block));
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &y[4..16]);
        let dj = d * sc as f32;
        if dj == 0.0 {
            continue;
        }
        let dm = dmin * m as f32;
        for i in 32 * j..32 * j + 32 {
            l[i] = nearest_int((x[i] + dm) / dj).clamp(0, nmax) as u8;
        }
    }
    l
}

pub fn q4_k(x: &[f32], qw: &[f32], dst: &mut [u8]) {
    for ((xb, wb), y) in x
        .chunks_exact(QK_K)
        .zip(qw.chunks_exact(QK_K))
        .zip(dst.chunks_exact_mut(144))
    {
        let l = asym_k(xb, wb, y, 15);
        for c in 0..4 {
            for i in 0..32 {
                y[16 + 32 * c + i] = l[64 * c + i] | (l[64 * c + 32 + i] << 4);
            }
        }
    }
}

pub fn q5_k(x: &[f32], qw: &[f32], dst: &mut [u8]) {
    for ((xb, wb), y) in x
        .chunks_exact(QK_K)
        .zip(qw.chunks_exact(QK_K))
        .zip(dst.chunks_exact_mut(176))
    {
        let l = asym_k(xb, wb, y, 31);
        y[16..48].fill(0);
        for c in 0..4 {
            for i in 0..32 {
                let (l1, l2) = (l[64 * c + i], l[64 * c + 32 + i]);
                y[16 + i] |= ((l1 >> 4) << (2 * c)) | ((l2 >> 4) << (2 * c + 1));
                y[48 + 32 * c + i] = (l1 & 0x0f) | ((l2 & 0x0f) << 4);
            }
        }
    }
}

pub fn q6_k(x: &[f32], qw: &[f32], dst: &mut [u8]) {
    for ((xb, wb), y) in x
        .chunks_exact(QK_K)
        .zip(qw.chunks_exact(QK_K))
        .zip(dst.chunks_exact_mut(210))
    {
        let mut l = [0u8; QK_K];
        let mut scales = [0.0f32; 16];
        let (mut max_scale, mut max_abs) = (0.0f32, 0.0f32);
        for ib in 0..16 {
            // Q6_K's 64 levels leave little to gain from the x^2 term: the importances
            // alone weight the fit (as in llama.cpp).
            let r = 16 * ib..16 * ib + 16;
            let s = search::qx(32, &xb[r.clone()], &wb[r.clone()], &mut l[r]);
            scales[ib] = s;
            if s.abs() > max_abs {
                max_abs = s.abs();
                max_scale = s;
            }
        }
        if max_abs < 1e-15 {
            y.fill(0);
            continue;
        }
        let iscale = -128.0f32 / max_scale;
        put_f16(&mut y[208..], 1.0 / iscale);
        for ib in 0..16 {
            y[192 + ib] = nearest_int(iscale * scales[ib]).min(127) as i8 as u8;
        }
        let d = f16_round(1.0 / iscale);
        for j in 0..16 {
            let dj = d * (y[192 + j] as i8) as f32;
            if dj == 0.0 {
                continue;
            }
            for i in 16 * j..16 * j + 16 {
                l[i] = (nearest_int(xb[i] / dj).clamp(-32, 31) + 32) as u8;
            }
        }
        for h in 0..2 {
            let lh = &l[128 * h..128 * h + 128];
            for i in 0..32 {
                let (q1, q2, q3, q4) = (lh[i], lh[i + 32], lh[i + 64], lh[i + 96]);
                y[64 * h + i] = (q1 & 0x0f) | ((q3 & 0x0f) << 4);
                y[64 * h + 32 + i] = (q2 & 0x0f) | ((q4 & 0x0f) << 4);
                y[128 + 32 * h + i] =
                    (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
            }
        }
    }
}

pub fn q3_k(x: &[f32], qw: &[f32], dst: &mut [u8]) {
    for ((xb, wb), y) in x
        .chunks_exact(QK_K)
        .zip(qw.chunks_exact(QK_K))
        .zip(dst.chunks_exact_mut(110))
    {
        let s2 = sigma2(xb, 2.0);
        let mut l = [0u8; QK_K];
        let (mut scales, mut sw) = ([0.0f32; 16], [0.0f32; 16]);
        let mut w = [0.0f32; 16];
        for j in 0..16 {
            let r = 16 * j..16 * j + 16;
            sw[j] = weights(&xb[r.clone()], &wb[r.clone()], s2, &mut w);
            scales[j] = search::qx(4, &xb[r.clone()], &w, &mut l[r]);
        }
        // The 16 signed sub-scales, 6 bits each (stored +32), against one f16 super-scale.
        let mut ls = [0u8; 16];
        let d_block = search::qx(32, &scales, &sw, &mut ls);
        let sb = &mut y[96..108];
        sb.fill(0);
        for (j, &v) in ls.iter().enumerate() {
            if j < 8 {
                sb[j] = v & 0x0f;
            } else {
                sb[j - 8] |= (v & 0x0f) << 4;
            }
            sb[8 + j % 4] |= (v >> 4) << (2 * (j / 4));
        }
        put_f16(&mut y[108..], d_block);
        let sc = q3_k_scales(&y[96..108]);
        let d = f16_round(d_block);
        for j in 0..16 {
            let dj = d * sc[j] as f32;
            if dj == 0.0 {
                continue;
            }
            for i in 16 * j..16 * j + 16 {
                l[i] = (nearest_int(xb[i] / dj).clamp(-4, 3) + 4) as u8;
            }
        }
        // Bit 2 of element j goes to bit j/32 of hmask[j % 32]; the low 2 bits to qs.
        y[..32].fill(0);
        let mut low = [0u8; QK_K];
        for j in 0..QK_K {
            let mut v = l[j];
            if v > 3 {
                y[j % 32] |= 1 << (j / 32);
                v -= 4;
            }
            low[j] = v;
        }
        pack_2bit(&low, &mut y[32..96]);
    }
}

pub fn q2_k(x: &[f32], qw: &[f32], dst: &mut [u8]) {
    for ((xb, wb), y) in x
        .chunks_exact(QK_K)
        .zip(qw.chunks_exact(QK_K))
        .zip(dst.chunks_exact_mut(84))
    {
        let s2 = sigma2(xb, 1.0);
        let mut l = [0u8; QK_K];
        let (mut scales, mut mins, mut sw) = ([0.0f32; 16], [0.0f32; 16], [0.0f32; 16]);
        let mut w = [0.0f32; 16];
        for j in 0..16 {
            let r = 16 * j..16 * j + 16;
            sw[j] = weights(&xb[r.clone()], &wb[r.clone()], s2, &mut w);
            let (d, m) = search::qkx3(3, &xb[r.clone()], &w, &mut l[r]);
            scales[j] = d;
            mins[j] = m;
        }
        let (mut ls, mut lm) = ([0u8; 16], [0u8; 16]);
        let dm = search::qp(15, &scales, &sw, &mut ls);
        let mm = search::qp(15, &mins, &sw, &mut lm);
        for j in 0..16 {
            y[j] = ls[j] | (lm[j] << 4);
        }
        put_f16(&mut y[80..], dm);
        put_f16(&mut y[82..], mm);
        let (d, dmin) = (f16_round(dm), f16_round(mm));
        for j in 0..16 {
            let dj = d * (y[j] & 0x0f) as f32;
            if dj == 0.0 {
                continue;
            }
            let m = dmin * (y[j] >> 4) as f32;
            for i in 16 * j..16 * j + 16 {
                l[i] = nearest_int((xb[i] + m) / dj).clamp(0, 3) as u8;
            }
        }
        pack_2bit(&l, &mut y[16..80]);
    }
}
