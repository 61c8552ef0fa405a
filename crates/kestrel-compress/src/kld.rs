//! KL-divergence of a model from a base model over a text, as llama.cpp's
//! `llama-perplexity --kl-divergence` reports it: per scored token the KL divergence of the
//! model's next-token distribution from the base's, whether their top tokens agree, and both
//! perplexities. Chunking follows `kestrel_engine::eval` (llama-perplexity's): chunks of
//! `n_ctx` tokens, the first replaced by BOS where the model uses one, the second half scored.

use crate::{CompressError, Result};
use kestrel_engine::{eval, Engine};

#[derive(Clone, Debug)]
pub struct KldResult {
    pub chunks: usize,
    pub n_ctx: usize,
    pub scored: usize,
    pub base_ppl: f64,
    pub ppl: f64,
    pub mean_kld: f64,
    pub kld_stderr: f64,
    pub max_kld: f64,
    /// Fraction of scored positions where both models' most likely token is the same.
    pub top1_agreement: f64,
    /// Mean of ln(ppl) differences, i.e. mean NLL(model) - NLL(base).
    pub mean_nll_delta: f64,
}

/// log-softmax helpers on one logits row: (max, log-sum-exp) in f64.
fn lse(row: &[f32]) -> f64 {
    let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let s: f64 = row.iter().map(|&v| ((v as f64) - m).exp()).sum();
    m + s.ln()
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// KL(base || model) for one position.
fn kl_row(base: &[f32], model: &[f32]) -> f64 {
    let (lb, lm) = (lse(base), lse(model));
    let mut kl = 0.0f64;
    for (&b, &m) in base.iter().zip(model) {
        let lpb = b as f64 - lb;
        let lpm = m as f64 - lm;
        kl += lpb.exp() * (lpb - lpm);
    }
    kl.max(0.0)
}

/// Running sums for one compared model.
#[derive(Default)]
struct Acc {
    kl: f64,
    kl2: f64,
    kl_max: f64,
    nll: f64,
    agree: usize,
}

/// Compares each of `models` with `base` on the same chunks (the base runs once per chunk).
/// `progress(done, total, running mean KLD of the first model)` after each chunk;
/// `max_chunks` = 0 means all.
pub fn kl_divergence(
    base: &Engine,
    models: &[&Engine],
    text: &str,
    n_ctx: usize,
    max_chunks: usize,
    progress: &mut dyn FnMut(usize, usize, f64),
) -> Result<Vec<KldResult>> {
    let nv = base.model.hparams().n_vocab;
    for m in models {
        if m.model.hparams().n_vocab != nv {
            return Err(CompressError::Invalid(format!(
                "the models have different vocabularies ({} and {} tokens)",
                nv,
                m.model.hparams().n_vocab
            )));
        }
    }
    if n_ctx < 4 {
        return Err(CompressError::Invalid(format!(
            "chunks need at least 4 tokens, got -c {n_ctx}"
        )));
    }
    let tokens = eval::tokenize_for_perplexity(base, text)?;
    let available = tokens.len() / n_ctx;
    if available == 0 {
        return Err(kestrel_engine::EngineError::TextTooShort {
            tokens: tokens.len(),
            n_ctx,
        }
        .into());
    }
    let n = if max_chunks == 0 {
        available
    } else {
        available.min(max_chunks)
    };
    let bos = base
        .tokenizer
        .add_bos()
        .then(|| base.tokenizer.bos())
        .flatten();
    let first = n_ctx / 2;
    let mut sb = base.model.new_session(n_ctx, n_ctx);
    let mut sessions: Vec<_> = models
        .iter()
        .map(|m| m.model.new_session(n_ctx, n_ctx))
        .collect();
    let mut accs: Vec<Acc> = models.iter().map(|_| Acc::default()).collect();
    let (mut nll_b, mut count) = (0.0f64, 0usize);
    let mut chunk = vec![0u32; n_ctx];
    for c in 0..n {
        chunk.copy_from_slice(&tokens[c * n_ctx..(c + 1) * n_ctx]);
        if let Some(b) = bos {
            chunk[0] = b;
        }
        sb.reset();
        base.model.forward(&mut sb, &base.pool, &chunk, first)?;
        for ((m, sm), a) in models.iter().zip(sessions.iter_mut()).zip(accs.iter_mut()) {
            sm.reset();
            m.model.forward(sm, &m.pool, &chunk, first)?;
            for j in first..n_ctx - 1 {
                let (rb, rm) = (sb.logits(j - first), sm.logits(j - first));
                let target = tokens[c * n_ctx + j + 1] as usize;
                a.nll -= rm[target] as f64 - lse(rm);
                let kl = kl_row(rb, rm);
                a.kl += kl;
                a.kl2 += kl * kl;
                a.kl_max = a.kl_max.max(kl);
                a.agree += (argmax(rb) == argmax(rm)) as usize;
            }
        }
        for j in first..n_ctx - 1 {
            let rb = sb.logits(j - first);
            nll_b -= rb[tokens[c * n_ctx + j + 1] as usize] as f64 - lse(rb);
            count += 1;
        }
        let running = accs.first().map_or(0.0, |a| a.kl / count as f64);
        progress(c + 1, n, running);
    }
    let cnt = count as f64;
    Ok(accs
        .iter()
        .map(|a| {
            let mean = a.kl / cnt;
            let var = (a.kl2 / cnt - mean * mean).max(0.0);
            KldResult {
                chunks: n,
                n_ctx,
                scored: count,
                base_ppl: (nll_b / cnt).exp(),
                ppl: (a.nll / cnt).exp(),
                mean_kld: mean,
                kld_stderr: (var / (cnt - 1.0).max(1.0)).sqrt(),
                max_kld: a.kl_max,
                top1_agreement: a.agree as f64 / cnt,
                mean_nll_delta: (a.nll - nll_b) / cnt,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kl_of_identical_rows_is_zero_and_positive_otherwise() {
        let a = [1.0f32, 2.0, 3.0, -1.0];
        assert!(kl_row(&a, &a).abs() < 1e-12);
        let b = [1.0f32, 2.5, 2.0, -1.0];
        // Closed form for these two distributions.
        let p: Vec<f64> = softmax(&a);
        let q: Vec<f64> = softmax(&b);
        let want: f64 = p.iter().zip(&q).map(|(p, q)| p * (p / q).ln()).sum();
        assert!((kl_row(&a, &b) - want).abs() < 1e-12);
        assert!(want > 0.0);
        assert_eq!(argmax(&a), 2);
    }

    fn softmax(x: &[f32]) -> Vec<f64> {
        let s: f64 = x.iter().map(|&v| (v as f64).exp()).sum();
        x.iter().map(|&v| (v as f64).exp() / s).collect()
    }
}
