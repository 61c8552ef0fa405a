//! Unstructured and N:M pruning of the transformer blocks' weight matrices.
//!
//! - magnitude: drop the weights of smallest |w| in each output row;
//! - wanda (Sun et al., 2023, "A Simple and Effective Pruning Approach for LLMs"): drop the
//!   smallest |w_ij| * ||x_j||, where ||x_j|| is the L2 norm of input column j over calibration
//!   tokens. That norm is the square root of an importance matrix's sum of squares, so wanda
//!   reads a `kestrel imatrix` file. Also per output row, as in the paper.
//!
//! Pruned weights are stored as zeros in the tensor's own (float) type: the file does not get
//! smaller, the point is to measure what sparsity costs (and to feed sparse kernels or a
//! following quantization). Embeddings, the output head and norms are never pruned.

use crate::imatrix::Imatrix;
use crate::io::{check_output, copy_tensor, finish_as, tensor_f32, writer_with_metadata};
use crate::policy::should_quantize;
use crate::quantize::quantize_rows;
use crate::{CompressError, Result};
use kestrel_gguf::{GgufFile, TensorInfo};
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneMethod {
    Magnitude,
    Wanda,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pattern {
    /// Drop this fraction (0..1) of every row.
    Unstructured(f32),
    /// Keep `n` of every `m` consecutive weights of a row (2:4 is what sparse tensor cores use).
    NM(usize, usize),
}

impl Pattern {
    /// Parses "N:M".
    pub fn parse_nm(s: &str) -> Result<Pattern> {
        let bad = || {
            CompressError::Invalid(format!(
                "--pattern {s}: expected N:M with 0 < N < M, e.g. 2:4"
            ))
        };
        let (n, m) = s.split_once(':').ok_or_else(bad)?;
        let (n, m): (usize, usize) = (
            n.trim().parse().map_err(|_| bad())?,
            m.trim().parse().map_err(|_| bad())?,
        );
        if n == 0 || n >= m || m > 256 {
            return Err(bad());
        }
        Ok(Pattern::NM(n, m))
    }

    /// Fraction of weights dropped.
    pub fn sparsity(self) -> f32 {
        match self {
            Pattern::Unstructured(s) => s,
            Pattern::NM(n, m) => 1.0 - n as f32 / m as f32,
        }
    }
}

/// The block matrices pruning applies to.
pub fn prunable(t: &TensorInfo) -> bool {
    const MATS: [&str; 7] = [
        "attn_q.weight",
        "attn_k.weight",
        "attn_v.weight",
        "attn_output.weight",
        "ffn_gate.weight",
        "ffn_up.weight",
        "ffn_down.weight",
    ];
    t.name.starts_with("blk.") && should_quantize(t) && MATS.iter().any(|m| t.name.ends_with(m))
}

/// Zeroes the entries of `row` with the lowest `score` (same length) per `pattern`.
pub fn prune_row(row: &mut [f32], score: &[f32], pattern: Pattern) {
    let mut idx: Vec<usize> = Vec::new();
    let mut drop_lowest = |r: &mut [f32], s: &[f32], k: usize| {
        idx.clear();
        idx.extend(0..r.len());
        // Ties are broken by position so results do not depend on the sort.
        idx.sort_by(|&a, &b| s[a].total_cmp(&s[b]).then(a.cmp(&b)));
        for &i in &idx[..k] {
            r[i] = 0.0;
        }
    };
    match pattern {
        Pattern::Unstructured(frac) => {
            let k = ((row.len() as f64) * frac as f64).round() as usize;
            drop_lowest(row, score, k.min(row.len()));
        }
        Pattern::NM(n, m) => {
            for (r, s) in row.chunks_mut(m).zip(score.chunks(m)) {
                let k = r.len().saturating_sub(n);
                drop_lowest(r, s, k);
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct PruneReport {
    pub pruned_tensors: usize,
    /// Weights in the pruned tensors, and how many are now zero.
    pub weights: u64,
    pub zeros: u64,
}

pub fn prune_file(
    input: &Path,
    output: &Path,
    method: PruneMethod,
    pattern: Pattern,
    imatrix: Option<&Imatrix>,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<PruneReport> {
    let g = open_for_pruning(input, output, pattern)?;
    if method == PruneMethod::Wanda {
        match imatrix {
            None => {
                return Err(CompressError::Invalid(
                    "wanda needs activation norms: pass --imatrix FILE (from kestrel imatrix)"
                        .into(),
                ))
            }
            Some(im) => im.check_against(&g)?,
        }
    }
    let mut score = Vec::new();
    prune_tensors(&g, output, progress, &mut |t, x| {
        let cols = t.row_len();
        let norms: Option<Vec<f32>> = match method {
            PruneMethod::Magnitude => None,
            PruneMethod::Wanda => {
                let e = imatrix
                    .and_then(|im| im.entries.get(&t.name))
                    .ok_or_else(|| {
                        CompressError::Invalid(format!(
                            "the importance matrix has no entry for {}",
                            t.name
                        ))
                    })?;
                Some(e.sum2.iter().map(|v| v.max(0.0).sqrt()).collect())
            }
        };
        score.resize(cols, 0.0);
        for row in x.chunks_exact_mut(cols) {
            for (j, s) in score.iter_mut().enumerate() {
                *s = row[j].abs() * norms.as_ref().map_or(1.0, |n| n[j]);
            }
            prune_row(row, &score, pattern);
        }
        Ok(())
    })
}

/// The checks every pruning method makes before its work: a sparsity in [0, 1), an output
/// path that does not exist yet; then the input, opened.
pub(crate) fn open_for_pruning(input: &Path, output: &Path, pattern: Pattern) -> Result<GgufFile> {
    if let Pattern::Unstructured(s) = pattern {
        if !(0.0..1.0).contains(&s) {
            return Err(CompressError::Invalid(format!(
                "sparsity must be in [0, 1), got {s}"
            )));
        }
    }
    check_output(input, output)?;
    Ok(GgufFile::open(input)?)
}

/// Writes `g` to `output` with every prunable block matrix passed through `prune` as f32
/// rows (the other tensors are copied as they are); counts the zeros. The matrices must be
/// float: pruning comes before quantization.
pub(crate) fn prune_tensors(
    g: &GgufFile,
    output: &Path,
    progress: &mut dyn FnMut(usize, usize, &str),
    prune: &mut dyn FnMut(&TensorInfo, &mut [f32]) -> Result<()>,
) -> Result<PruneReport> {
    let mut w = writer_with_metadata(g);
    let mut rep = PruneReport {
        pruned_tensors: 0,
        weights: 0,
        zeros: 0,
    };
    let total = g.tensors().len();
    for (i, t) in g.tensors().iter().enumerate() {
        if !prunable(t) {
            copy_tensor(&mut w, &g, t)?;
            progress(i + 1, total, &t.name);
            continue;
        }
        if t.ty.block_size() != 1 {
            return Err(CompressError::Tensor {
                tensor: t.name.clone(),
                why: format!(
                    "stored as {}: prune a float model (kestrel convert --type f32 first), then quantize",
                    t.ty
                ),
            });
        }
        let mut x = tensor_f32(g, t)?;
        prune(t, &mut x)?;
        rep.pruned_tensors += 1;
        rep.weights += x.len() as u64;
        rep.zeros += x.iter().filter(|v| **v == 0.0).count() as u64;
        let data = quantize_rows(t.ty, &x, t.row_len(), None, 1)?;
        w.add_tensor(t.name.clone(), t.dims.clone(), t.ty, data)?;
        progress(i + 1, total, &t.name);
    }
    finish_as(w, &g, output)?;
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_four_keeps_the_two_largest_of_each_group() {
        let mut r = vec![1.0, -4.0, 3.0, 0.5, 9.0, 8.0, -7.0, 6.0];
        let s: Vec<f32> = r.iter().map(|v: &f32| v.abs()).collect();
        prune_row(&mut r, &s, Pattern::parse_nm("2:4").unwrap());
        assert_eq!(r, vec![0.0, -4.0, 3.0, 0.0, 9.0, 8.0, 0.0, 0.0]);
    }

    #[test]
    fn unstructured_uses_the_score_not_the_value() {
        let mut r = vec![1.0, 2.0, 3.0, 4.0];
        // Column 3 has tiny activations: wanda drops it first despite its large weight.
        let s = [1.0, 2.0, 3.0, 0.1];
        prune_row(&mut r, &s, Pattern::Unstructured(0.5));
        assert_eq!(r, vec![0.0, 2.0, 3.0, 0.0]);
        assert!(Pattern::parse_nm("4:2").is_err() && Pattern::parse_nm("x").is_err());
        assert_eq!(Pattern::NM(2, 4).sparsity(), 0.5);
    }
}
