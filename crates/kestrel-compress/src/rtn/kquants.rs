//! Round-to-nearest K-quant weight quantizers: ggml's `quantize_row_qX_K_ref` (no importance
//! matrix), onto the layouts of kestrel-kernels (`generic::kquants`), which reads them.

// Index loops mirror ggml's reference code on purpose (easier to audit).
#![allow(clippy::needless_range_loop)]
// `%` instead of `is_multiple_of`: the workspace MSRV is 1.85.
#![allow(clippy::manual_is_multiple_of)]

use half::f16;
use kestrel_kernels::f16_at;
use kestrel_kernels::generic::kquants::layout::*;
use kestrel_kernels::generic::kquants::*;
use kestrel_kernels::generic::{put_f16, signed_absmax};

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
    let max = signed_absmax(x);
    if max.abs() < GROUP_MAX_EPS {
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
pub fn pack_2bit(l: &[u8; QK_K], qs: &mut [u8]) {
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
    let max = signed_absmax(x);
    if max.abs() < GROUP_MAX_EPS {
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
