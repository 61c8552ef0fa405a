//! Weighted least-squares searches for a block's scale (and min), as ggml's
//! `make_qx_quants`, `make_qkx3_quants` and `make_qp_quants` do them.

use kestrel_kernels::generic::kquants::nearest_int;
use kestrel_kernels::generic::signed_absmax;

/// Below this, a group's largest magnitude counts as zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// Symmetric fit `x ~ d * l`, l in -nmax..nmax-1, over 19 candidate scales; `out` gets
/// l + nmax. Returns d.
pub fn qx(nmax: i32, x: &[f32], w: &[f32], out: &mut [u8]) -> f32 {
    let n = x.len();
    let max = signed_absmax(x);
    if max.abs() < GROUP_MAX_EPS {
        out[..n].fill(0);
        return 0.0;
    }
    let level = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| {
        let (mut slx, mut sl2) = (0.0f32, 0.0f32);
        for i in 0..n {
            let l = level(iscale, x[i]) as f32;
            slx += w[i] * x[i] * l;
            sl2 += w[i] * l * l;
        }
        (slx, sl2)
    };
    let mut iscale = -(nmax as f32) / max;
    for i in 0..n {
        out[i] = (level(iscale, x[i]) + nmax) as u8;
    }
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9i32..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (slx, sl2) = sums(iscale);
        if sl2 > 0.0 && slx * slx > best * sl2 {
            for i in 0..n {
                out[i] = (level(iscale, x[i]) + nmax) as u8;
            }
            scale = slx / sl2;
            best = scale * slx;
        }
    }
    scale
}

/// Asymmetric fit `x ~ d * l - m`, l in 0..=nmax, m >= 0, searching `nstep + 1` scales
/// around the min-max one. Returns (d, m).
pub fn qkx3(nmax: i32, x: &[f32], w: &[f32], out: &mut [u8]) -> (f32, f32) {
    const RMIN: f32 = -0.9;
    const RDELTA: f32 = 0.05;
    const NSTEP: i32 = 36;
    let n = x.len();
    let (mut min, mut max) = (x[0], x[0]);
    let (mut sum_w, mut sum_x) = (0.0f32, 0.0f32);
    for i in 0..n {
        min = min.min(x[i]);
        max = max.max(x[i]);
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max <= min {
        out[..n].fill(0);
        return (0.0, -min);
    }
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        out[i] = l as u8;
        let diff = scale * l as f32 + min - x[i];
        best += w[i] * diff * diff;
    }
    let mut aux = [0u8; 32];
    for is in 0..=NSTEP {
        iscale = (RMIN + RDELTA * is as f32 + nmax as f32) / (max - min);
        let (mut sl, mut sl2, mut sxl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            aux[i] = l as u8;
            let lf = l as f32;
            sl += w[i] * lf;
            sl2 += w[i] * lf * lf;
            sxl += w[i] * lf * x[i];
        }
        let det = sum_w * sl2 - sl * sl;
        if det > 0.0 {
            let mut this_scale = (sum_w * sxl - sum_x * sl) / det;
            let mut this_min = (sl2 * sum_x - sl * sxl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sxl / sl2;
            }
            let mut err = 0.0f32;
            for i in 0..n {
                let diff = this_scale * aux[i] as f32 + this_min - x[i];
                err += w[i] * diff * diff;
            }
            if err < best {
                out[..n].copy_from_slice(&aux[..n]);
                best = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Fit of non-negative values `x ~ d * l`, l in 0..=nmax (the sub-block scales of the
/// k-quants, weighted by each sub-block's total importance), refined by coordinate descent.
pub fn qp(nmax: i32, x: &[f32], w: &[f32], out: &mut [u8]) -> f32 {
    let n = x.len();
    let max = x.iter().fold(0.0f32, |a, &v| a.max(v));
    if max < GROUP_MAX_EPS {
        out[..n].fill(0);
        return 0.0;
    }
    let mse = |iscale: f32| {
        let scale = 1.0 / iscale;
        let mut e = 0.0f32;
        for i in 0..n {
            let l = nearest_int(iscale * x[i]).min(nmax);
            let diff = x[i] - scale * l as f32;
            e += w[i] * diff * diff;
        }
        e
    };
    let mut iscale = nmax as f32 / max;
    let mut best = mse(iscale);
    for is in -4i32..=4 {
        if is == 0 {
            continue;
        }
        let cand = (0.1 * is as f32 + nmax as f32) / max;
        let e = mse(cand);
        if e < best {
            best = e;
            iscale = cand;
        }
    }
    let mut l = [0i32; 16];
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for i in 0..n {
        l[i] = nearest_int(iscale * x[i]).min(nmax);
        let lf = l[i] as f32;
        sumlx += w[i] * x[i] * lf;
        suml2 += w[i] * lf * lf;
    }
    for _ in 0..5 {
        let mut changed = false;
        for i in 0..n {
            let li = l[i] as f32;
            let mut slx = sumlx - w[i] * x[i] * li;
            let mut sl2 = suml2 - w[i] * li * li;
            if slx > 0.0 && sl2 > 0.0 {
                let new_l = nearest_int(x[i] * sl2 / slx).min(nmax);
                if new_l != l[i] {
                    let nl = new_l as f32;
                    slx += w[i] * x[i] * nl;
                    sl2 += w[i] * nl * nl;
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l[i] = new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    for i in 0..n {
        out[i] = l[i].max(0) as u8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}
