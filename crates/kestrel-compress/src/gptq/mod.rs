//! GPTQ (Frantar et al., 2022): quantize a weight matrix one input column at a time and push
//! each column's rounding error onto the columns not yet quantized, weighted by the inverse
//! calibration Hessian, so the layer's output on calibration inputs, X W^T, moves as little
//! as possible.
//!
//! The ggml block formats fix a scale (and min) per block of 32 or 256 consecutive weights of
//! a row. Kestrel chooses them when the column sweep reaches a block's first column, from the
//! current (already error-compensated) weights of that block, with the same importance-
//! weighted scale search `--imatrix` uses (the importances being the Hessian's diagonal);
//! then each column of the block is rounded to the nearest code on that fixed grid and its
//! error compensated. Rows are independent given the Hessian, so they run in parallel.

mod grid;
pub mod hessian;
mod linalg;

pub use grid::supports;
pub use hessian::{collect, input_key, Hessian, Hessians};

use crate::{weighted, CompressError, Result};
use kestrel_gguf::GgmlType;
use std::collections::HashMap;

/// Default damping: 1% of the mean diagonal is added to H (as in the GPTQ paper).
pub const DEFAULT_DAMP: f64 = 0.01;

/// Rows processed together, so each row of the factor is read once per batch.
const ROW_BATCH: usize = 8;

/// Factors of the current block's inputs: the matrices that read one input (q/k/v, gate/up)
/// share its factor, and a tensor of the next block drops the previous block's.
#[derive(Default)]
pub struct FactorCache(HashMap<String, Factor>);

impl FactorCache {
    /// The factor for the input of weight `tensor`, made from `h` on first use.
    pub fn get(&mut self, tensor: &str, h: &Hessian, damp: f64) -> Result<&Factor> {
        let key = input_key(tensor);
        let layer = |k: &str| k.split('.').take(2).collect::<Vec<_>>().join(".");
        self.0.retain(|k, _| layer(k) == layer(&key));
        Ok(match self.0.entry(key) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(h.factor(damp).map_err(|e| CompressError::Tensor {
                    tensor: tensor.to_string(),
                    why: e.to_string(),
                })?)
            }
        })
    }
}

/// The inverse Hessian's upper Cholesky factor for one input, with the importances that
/// weight the block scale search (the Hessian's diagonal). Shared by the matrices that read
/// that input.
pub struct Factor {
    cols: usize,
    /// The Hessian itself (for `output_error`).
    pub h: Vec<f64>,
    u: Vec<f32>,
    importance: Vec<f32>,
}

impl Factor {
    /// `h`: cols x cols, symmetric, row-major; `damp`: fraction of the mean diagonal added.
    pub fn new(h: &[f64], cols: usize, damp: f64) -> Result<Factor> {
        // (importance = the diagonal: mean square input per column, as an imatrix holds.)
        if h.len() != cols * cols || cols == 0 {
            return Err(CompressError::Invalid(format!(
                "Hessian of {} entries for rows of {cols}",
                h.len()
            )));
        }
        let importance = (0..cols).map(|i| h[i * cols + i].max(0.0) as f32).collect();
        let h_orig = h.to_vec();
        // Columns no calibration token ever touched carry no information: give them a unit
        // diagonal so H factors; their weights are then rounded without compensation.
        let mut h = h.to_vec();
        for i in 0..cols {
            if h[i * cols + i] <= 0.0 {
                h[i * cols + i] = 1.0;
            }
        }
        let u = linalg::inverse_cholesky_upper(&h, cols, damp).ok_or_else(|| {
            CompressError::Invalid(
                "the calibration Hessian is not positive definite even after damping".into(),
            )
        })?;
        Ok(Factor {
            cols,
            h: h_orig,
            u,
            importance,
        })
    }
}

impl Factor {
    /// Mean square input per column (the Hessian's diagonal).
    pub fn importance(&self) -> &[f32] {
        &self.importance
    }

    /// The upper Cholesky factor U of the damped inverse Hessian (cols x cols, row-major):
    /// what any optimal-brain-surgeon sweep (GPTQ, SparseGPT) compensates with.
    pub fn upper(&self) -> &[f32] {
        &self.u
    }

    pub fn cols(&self) -> usize {
        self.cols
    }
}

/// Quantizes `w` (rows of `cols`) to `ty` with GPTQ against the factor of its input's
/// Hessian.
pub fn quantize_matrix(
    ty: GgmlType,
    w: &[f32],
    cols: usize,
    f: &Factor,
    threads: usize,
) -> Result<Vec<u8>> {
    if !supports(ty) {
        return Err(CompressError::Invalid(format!("GPTQ does not write {ty}")));
    }
    let bs = ty.block_size();
    let bb = ty.row_bytes(bs).unwrap_or(0);
    if cols == 0 || cols % bs != 0 || w.len() % cols != 0 || f.cols != cols {
        return Err(CompressError::Invalid(format!(
            "rows of {cols} are not whole {ty} blocks, {} elements are not whole rows, or the Hessian is for rows of {}",
            w.len(),
            f.cols
        )));
    }
    let (u, importance) = (&f.u, &f.importance[..]);
    let rows = w.len() / cols;
    let rb = bb * (cols / bs);
    let mut out = vec![0u8; rows * rb];
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    let per = rows.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        for (ws, os) in w.chunks(per * cols).zip(out.chunks_mut(per * rb)) {
            s.spawn(move || {
                for (wb, ob) in ws
                    .chunks(ROW_BATCH * cols)
                    .zip(os.chunks_mut(ROW_BATCH * rb))
                {
                    batch(ty, wb, ob, cols, u, importance);
                }
            });
        }
    });
    Ok(out)
}

fn batch(ty: GgmlType, w: &[f32], out: &mut [u8], cols: usize, u: &[f32], imp: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        unsafe { batch_avx2(ty, w, out, cols, u, imp) };
        return;
    }
    batch_plain(ty, w, out, cols, u, imp);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn batch_avx2(ty: GgmlType, w: &[f32], out: &mut [u8], cols: usize, u: &[f32], imp: &[f32]) {
    // Same code, compiled with 256-bit vectors for the error-propagation loop.
    batch_plain(ty, w, out, cols, u, imp)
}

/// GPTQ on a few rows: `w` and `out` hold the same rows (f32 in, blocks out).
#[inline(always)]
fn batch_plain(ty: GgmlType, w: &[f32], out: &mut [u8], cols: usize, u: &[f32], imp: &[f32]) {
    let bs = ty.block_size();
    let bb = ty.row_bytes(bs).unwrap_or(0);
    let rb = bb * (cols / bs);
    let mut ws: Vec<Vec<f32>> = w.chunks_exact(cols).map(|r| r.to_vec()).collect();
    let mut outs: Vec<&mut [u8]> = out.chunks_exact_mut(rb).collect();
    let n = ws.len();
    let mut a = vec![vec![0.0f32; bs]; n];
    let mut b = vec![vec![0.0f32; bs]; n];
    let mut umax = vec![0u32; n];
    for blk in 0..cols / bs {
        let j0 = blk * bs;
        for r in 0..n {
            let dst = &mut outs[r][blk * bb..(blk + 1) * bb];
            let x = &ws[r][j0..j0 + bs];
            if weighted::supports(ty) {
                weighted::quantize_row(ty, x, &imp[j0..j0 + bs], dst);
            } else {
                crate::rtn::quantize_row(ty, x, dst);
            }
            umax[r] = grid::levels(ty, dst, &mut a[r], &mut b[r]);
        }
        for j in j0..j0 + bs {
            let k = j - j0;
            let urow = &u[j * cols..(j + 1) * cols];
            let d = urow[j];
            for r in 0..n {
                let x = ws[r][j];
                let (ak, bk) = (a[r][k], b[r][k]);
                let code = if ak != 0.0 {
                    ((x - bk) / ak).round().clamp(0.0, umax[r] as f32) as u32
                } else {
                    0
                };
                grid::set_code(ty, &mut outs[r][blk * bb..(blk + 1) * bb], k, code);
                let e = (x - (ak * code as f32 + bk)) / d;
                if e != 0.0 {
                    for (v, c) in ws[r][j + 1..].iter_mut().zip(&urow[j + 1..]) {
                        *v -= e * c;
                    }
                }
            }
        }
    }
}

/// Squared output error on the calibration inputs, sum_r (w_r - q_r)^T H (w_r - q_r), over
/// up to `max_rows` rows spread evenly through the matrix (a cheap check of what GPTQ
/// minimizes). `w` and `q` hold the same rows of `cols`; `h` is the factor's Hessian.
pub fn output_error(w: &[f32], q: &[f32], h: &[f64], cols: usize, max_rows: usize) -> f64 {
    let rows = w.len() / cols.max(1);
    let step = rows.div_ceil(max_rows.max(1)).max(1);
    let mut total = 0.0;
    let mut hd = vec![0.0f64; cols];
    for r in (0..rows).step_by(step) {
        let d: Vec<f64> = w[r * cols..(r + 1) * cols]
            .iter()
            .zip(&q[r * cols..(r + 1) * cols])
            .map(|(a, b)| (a - b) as f64)
            .collect();
        hd.fill(0.0);
        for (i, &di) in d.iter().enumerate() {
            if di != 0.0 {
                for (v, hv) in hd.iter_mut().zip(&h[i * cols..(i + 1) * cols]) {
                    *v += di * hv;
                }
            }
        }
        total += hd.iter().zip(&d).map(|(a, b)| a * b).sum::<f64>();
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % 1_000_001) as f32 / 500_000.0 - 1.0
        }
    }

    /// tr((W - Q) H (W - Q)^T): the squared output error on the calibration inputs.
    fn output_error(w: &[f32], q: &[f32], h: &[f64], cols: usize) -> f64 {
        let mut total = 0.0;
        for (wr, qr) in w.chunks_exact(cols).zip(q.chunks_exact(cols)) {
            let d: Vec<f64> = wr.iter().zip(qr).map(|(a, b)| (a - b) as f64).collect();
            for i in 0..cols {
                let hi = &h[i * cols..(i + 1) * cols];
                total += d[i] * hi.iter().zip(&d).map(|(a, b)| a * b).sum::<f64>();
            }
        }
        total
    }

    /// On correlated synthetic inputs GPTQ's output error is below round-to-nearest's and
    /// below the importance-weighted quantizer's, for every type it writes.
    #[test]
    fn gptq_beats_rtn_on_output_error() {
        let (rows, cols, tokens) = (16, 512, 2048);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // Inputs with a few strong shared directions plus noise of varying size per column,
        // as real activations have.
        let basis: Vec<f32> = (0..8 * cols).map(|_| rng.next()).collect();
        let col_scale: Vec<f32> = (0..cols).map(|j| 0.2 + (j % 7) as f32 * 0.5).collect();
        let mut x = vec![0.0f32; tokens * cols];
        for t in 0..tokens {
            let c: Vec<f32> = (0..8).map(|_| 2.0 * rng.next()).collect();
            for j in 0..cols {
                let s: f32 = (0..8).map(|k| c[k] * basis[k * cols + j]).sum();
                x[t * cols + j] = (s + rng.next()) * col_scale[j];
            }
        }
        let mut h = vec![0.0f64; cols * cols];
        for t in 0..tokens {
            let xr = &x[t * cols..(t + 1) * cols];
            for i in 0..cols {
                for j in 0..cols {
                    h[i * cols + j] += (xr[i] * xr[j]) as f64 / tokens as f64;
                }
            }
        }
        let imp: Vec<f32> = (0..cols).map(|i| h[i * cols + i] as f32).collect();
        let w: Vec<f32> = (0..rows * cols).map(|_| rng.next() * 0.05).collect();
        use GgmlType::*;
        for ty in [Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K] {
            let deq = |bytes: &[u8]| {
                let mut y = vec![0.0f32; rows * cols];
                let rb = ty.row_bytes(cols).unwrap();
                for (src, dst) in bytes.chunks_exact(rb).zip(y.chunks_exact_mut(cols)) {
                    kestrel_kernels::dequantize_row(ty, src, dst);
                }
                y
            };
            let rtn = crate::quantize::quantize_rows(ty, &w, cols, None, 1).unwrap();
            let wtd = crate::quantize::quantize_rows(ty, &w, cols, Some(&imp), 1).unwrap();
            let f = Factor::new(&h, cols, DEFAULT_DAMP).unwrap();
            let g = quantize_matrix(ty, &w, cols, &f, 2).unwrap();
            let e_rtn = output_error(&w, &deq(&rtn), &h, cols);
            let e_wtd = output_error(&w, &deq(&wtd), &h, cols);
            let e_g = output_error(&w, &deq(&g), &h, cols);
            eprintln!("{ty}: rtn {e_rtn:.4e} imatrix {e_wtd:.4e} gptq {e_g:.4e}");
            assert!(e_g < 0.8 * e_rtn, "{ty}: gptq {e_g} vs rtn {e_rtn}");
            assert!(e_g < e_wtd, "{ty}: gptq {e_g} vs weighted {e_wtd}");
        }
    }
}
