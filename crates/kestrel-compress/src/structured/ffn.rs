//! Which FFN channels to keep: channel j of a block's FFN contributes act_j * W_down[:, j] to
//! the residual stream, so its importance is the RMS of act_j over calibration tokens (from an
//! importance matrix of ffn_down's input) times the L2 norm of ffn_down's column j — the
//! structured analogue of wanda's |w| * ||x||.

use crate::imatrix::Imatrix;
use crate::io::tensor_f32;
use crate::{CompressError, Result};
use kestrel_gguf::GgufFile;

/// How many of `n_ff` channels to keep for the fraction `keep`: rounded to the nearest multiple
/// of `multiple` (so ffn_down's rows stay whole quantization blocks), at least one multiple and
/// at most `n_ff`.
pub fn kept_count(n_ff: usize, keep: f32, multiple: usize) -> Result<usize> {
    if !(keep > 0.0 && keep <= 1.0) {
        return Err(CompressError::Invalid(format!(
            "--ffn-keep {keep}: expected a fraction in (0, 1]"
        )));
    }
    if multiple == 0 || multiple > n_ff {
        return Err(CompressError::Invalid(format!(
            "--ffn-multiple {multiple}: must be between 1 and the FFN width {n_ff}"
        )));
    }
    let want = n_ff as f64 * keep as f64;
    let k = ((want / multiple as f64).round() as usize).max(1) * multiple;
    Ok(k.min(n_ff))
}

/// For block `il`, the indices (ascending) of the `k` channels with the highest importance.
pub fn choose_channels(g: &GgufFile, im: &Imatrix, il: usize, k: usize) -> Result<Vec<usize>> {
    let name = format!("blk.{il}.ffn_down.weight");
    let t = g
        .tensor(&name)
        .ok_or_else(|| CompressError::Invalid(format!("the model has no {name}")))?;
    let n_ff = t.row_len();
    let ms = im.get(&name).ok_or_else(|| {
        CompressError::Invalid(format!(
            "no activation statistics were collected for {name}"
        ))
    })?;
    if ms.len() != n_ff {
        return Err(CompressError::Invalid(format!(
            "{name}: {} activation statistics for {n_ff} columns",
            ms.len()
        )));
    }
    let w = tensor_f32(g, t)?;
    let mut col2 = vec![0.0f64; n_ff];
    for row in w.chunks_exact(n_ff) {
        for (c, &v) in col2.iter_mut().zip(row) {
            *c += (v as f64) * (v as f64);
        }
    }
    let score: Vec<f64> = col2
        .iter()
        .zip(ms)
        .map(|(c2, &m2)| c2.sqrt() * (m2.max(0.0) as f64).sqrt())
        .collect();
    Ok(top_k(&score, k))
}

/// Indices of the `k` largest scores, ascending (ties broken by position).
pub fn top_k(score: &[f64], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..score.len()).collect();
    idx.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx.sort_unstable();
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_count_rounds_to_whole_blocks() {
        assert_eq!(kept_count(1536, 0.75, 256).unwrap(), 1280); // 1152 -> 4.5 blocks -> 5
        assert_eq!(kept_count(1536, 0.5, 256).unwrap(), 768);
        assert_eq!(kept_count(1536, 0.01, 256).unwrap(), 256);
        assert_eq!(kept_count(1536, 0.75, 32).unwrap(), 1152);
        assert_eq!(kept_count(2048, 1.0, 256).unwrap(), 2048);
        assert!(kept_count(1536, 0.0, 256).is_err());
        assert!(kept_count(1536, 1.5, 256).is_err());
        assert!(kept_count(100, 0.5, 256).is_err());
    }

    #[test]
    fn top_k_keeps_order() {
        assert_eq!(top_k(&[0.1, 5.0, 3.0, 4.0, 0.2], 3), vec![1, 2, 3]);
    }
}
