//! SparseGPT (Frantar & Alistarh, 2023, "SparseGPT: Massive Language Models Can Be Accurately
//! Pruned in One-Shot"): prune with the calibration Hessian H = X^T X, compensating each
//! removed weight on the row's later columns (optimal brain surgeon), the sweep GPTQ makes
//! for rounding. With U the upper Cholesky factor of H^-1 (from `gptq::Factor`), removing
//! w_j costs w_j^2 / U_jj^2 and moves the later weights by -(w_j / U_jj) U_j,k.
//!
//! The mask is chosen per row in blocks of `MASK_BLOCK` columns (per group of M for N:M) from
//! the already-compensated weights, as the paper's adaptive mask selection does, so every row
//! ends with the requested sparsity.

use crate::gptq::{self, Factor, Hessians};
use crate::prune::{open_for_pruning, prune_row, prune_tensors, Pattern, PruneReport};
use crate::{CompressError, Result};
use std::path::Path;

/// Columns whose mask is chosen together (the paper's B_s = 128).
pub const MASK_BLOCK: usize = 128;

/// Prunes the rows of `w` (rows of `f.cols()`) in place.
pub fn prune_matrix(w: &mut [f32], f: &Factor, pattern: Pattern, threads: usize) {
    let cols = f.cols();
    let u = f.upper();
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    let rows = w.len() / cols.max(1);
    let per = rows.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        for ws in w.chunks_mut(per * cols) {
            s.spawn(move || {
                for row in ws.chunks_exact_mut(cols) {
                    prune_one(row, u, pattern);
                }
            });
        }
    });
}

fn prune_one(row: &mut [f32], u: &[f32], pattern: Pattern) {
    let cols = row.len();
    let block = match pattern {
        Pattern::Unstructured(_) => MASK_BLOCK,
        Pattern::NM(_, m) => m,
    };
    let mut keep = vec![0.0f32; block];
    let mut score = vec![0.0f32; block];
    let mut j0 = 0;
    while j0 < cols {
        let b = block.min(cols - j0);
        // Mask for this block from the compensated weights: 1 = kept.
        for k in 0..b {
            let j = j0 + k;
            let d = u[j * cols + j];
            score[k] = row[j] * row[j] / (d * d);
            keep[k] = 1.0;
        }
        prune_row(&mut keep[..b], &score[..b], pattern);
        for k in 0..b {
            if keep[k] != 0.0 {
                continue;
            }
            let j = j0 + k;
            let urow = &u[j * cols..(j + 1) * cols];
            let e = row[j] / urow[j];
            row[j] = 0.0;
            if e != 0.0 {
                for (v, c) in row[j + 1..].iter_mut().zip(&urow[j + 1..]) {
                    *v -= e * c;
                }
            }
        }
        j0 += b;
    }
}

/// Writes `input` with its block matrices pruned by SparseGPT against `hessians` (from
/// `gptq::collect` on calibration text). Input must be float, as for `prune`.
pub fn sparsegpt_file(
    input: &Path,
    output: &Path,
    pattern: Pattern,
    hessians: &Hessians,
    damp: f64,
    threads: usize,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<PruneReport> {
    let g = open_for_pruning(input, output, pattern)?;
    let mut factors = gptq::FactorCache::default();
    prune_tensors(&g, output, progress, &mut |t, x| {
        let h = hessians
            .get(&t.name)
            .filter(|h| h.n == t.row_len())
            .ok_or_else(|| CompressError::Tensor {
                tensor: t.name.clone(),
                why: "no calibration Hessian for its input".into(),
            })?;
        prune_matrix(x, factors.get(&t.name, h, damp)?, pattern, threads);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Correlated synthetic inputs: x_t = a random mix of a few shared factors plus noise.
    fn inputs(n: usize, cols: usize) -> Vec<f32> {
        let mut s = 12345u64;
        let mut r = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let basis: Vec<f32> = (0..4 * cols).map(|_| r()).collect();
        let mut x = vec![0.0f32; n * cols];
        for t in 0..n {
            let c: Vec<f32> = (0..4).map(|_| r() * 4.0).collect();
            for j in 0..cols {
                x[t * cols + j] =
                    (0..4).map(|k| c[k] * basis[k * cols + j]).sum::<f32>() + 0.1 * r();
            }
        }
        x
    }

    fn out_err(w: &[f32], q: &[f32], x: &[f32], cols: usize) -> f64 {
        let mut e = 0.0f64;
        for xr in x.chunks_exact(cols) {
            for (wr, qr) in w.chunks_exact(cols).zip(q.chunks_exact(cols)) {
                let d: f64 = (0..cols).map(|j| ((wr[j] - qr[j]) * xr[j]) as f64).sum();
                e += d * d;
            }
        }
        e
    }

    #[test]
    fn sparsegpt_beats_wanda_on_output_error() {
        let (cols, rows, n) = (64, 8, 256);
        let x = inputs(n, cols);
        let mut h = vec![0.0f64; cols * cols];
        for xr in x.chunks_exact(cols) {
            for i in 0..cols {
                for j in 0..cols {
                    h[i * cols + j] += (xr[i] * xr[j]) as f64 / n as f64;
                }
            }
        }
        let f = Factor::new(&h, cols, 0.01).unwrap();
        let w: Vec<f32> = inputs(rows, cols).iter().map(|v| v * 0.3).collect();
        for pattern in [Pattern::Unstructured(0.5), Pattern::NM(2, 4)] {
            let mut sg = w.clone();
            prune_matrix(&mut sg, &f, pattern, 1);
            let mut wanda = w.clone();
            for row in wanda.chunks_exact_mut(cols) {
                let score: Vec<f32> = (0..cols)
                    .map(|j| row[j].abs() * (h[j * cols + j] as f32).sqrt())
                    .collect();
                prune_row(row, &score, pattern);
            }
            for q in [&sg, &wanda] {
                let zeros = q.iter().filter(|v| **v == 0.0).count();
                assert_eq!(zeros, w.len() / 2, "{pattern:?}");
            }
            let (e_sg, e_w) = (out_err(&w, &sg, &x, cols), out_err(&w, &wanda, &x, cols));
            assert!(
                e_sg < 0.8 * e_w,
                "{pattern:?}: sparsegpt {e_sg} vs wanda {e_w}"
            );
        }
    }
}
