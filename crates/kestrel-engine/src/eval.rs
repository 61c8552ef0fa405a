//! Perplexity as llama.cpp's `llama-perplexity` computes it: the text is tokenized once (BOS
//! first where the model asks for it), cut into non-overlapping chunks of `n_ctx` tokens, the
//! first token of each chunk replaced by BOS where the model uses one, and each chunk scored on
//! its second half (positions n_ctx/2 .. n_ctx-2 predicting the next token).

use crate::{Engine, EngineError, Result};
use kestrel_kernels::ops;

#[derive(Clone, Debug)]
pub struct PerplexityResult {
    pub ppl: f64,
    /// Standard error of the mean negative log-likelihood, propagated to perplexity.
    pub ppl_stderr: f64,
    pub chunks: usize,
    pub n_ctx: usize,
    /// Tokens in the text.
    pub tokens: usize,
    /// Tokens scored.
    pub scored: usize,
    /// Perplexity estimate after each chunk.
    pub running: Vec<f64>,
}

/// Tokenize `text` as llama-perplexity does.
pub fn tokenize_for_perplexity(engine: &Engine, text: &str) -> Result<Vec<u32>> {
    Ok(engine.tokenizer.encode(text, true, false)?)
}

/// `max_chunks` = 0 means all. `progress(done, total)` is called after each chunk.
pub fn perplexity(
    engine: &Engine,
    tokens: &[u32],
    n_ctx: usize,
    max_chunks: usize,
    progress: &mut dyn FnMut(usize, usize, f64),
) -> Result<PerplexityResult> {
    if n_ctx < 4 {
        return Err(EngineError::Invalid(format!(
            "perplexity needs chunks of at least 4 tokens, got -c {n_ctx}"
        )));
    }
    let available = tokens.len() / n_ctx;
    if available == 0 {
        return Err(EngineError::TextTooShort {
            tokens: tokens.len(),
            n_ctx,
        });
    }
    let n_chunks = if max_chunks == 0 {
        available
    } else {
        max_chunks.min(available)
    };
    let bos = if engine.tokenizer.add_bos() {
        engine.tokenizer.bos()
    } else {
        None
    };
    let first = n_ctx / 2;
    let mut session = engine.model.new_session(n_ctx, n_ctx);
    let mut chunk = vec![0u32; n_ctx];
    let (mut nll, mut nll2, mut count) = (0.0f64, 0.0f64, 0usize);
    let mut running = Vec::with_capacity(n_chunks);
    for c in 0..n_chunks {
        chunk.copy_from_slice(&tokens[c * n_ctx..(c + 1) * n_ctx]);
        if let Some(b) = bos {
            chunk[0] = b;
        }
        session.reset();
        engine
            .model
            .forward(&mut session, &engine.pool, &chunk, first)?;
        for j in first..n_ctx - 1 {
            let logits = session.logits(j - first);
            let target = tokens[c * n_ctx + j + 1] as usize;
            let lp = (logits[target] - ops::logsumexp(logits)) as f64;
            nll -= lp;
            nll2 += lp * lp;
            count += 1;
        }
        let ppl = (nll / count as f64).exp();
        running.push(ppl);
        progress(c + 1, n_chunks, ppl);
    }
    let mean = nll / count as f64;
    let var = (nll2 / count as f64 - mean * mean).max(0.0);
    let stderr = (var / (count as f64 - 1.0).max(1.0)).sqrt();
    let ppl = mean.exp();
    Ok(PerplexityResult {
        ppl,
        ppl_stderr: stderr * ppl,
        chunks: n_chunks,
        n_ctx,
        tokens: tokens.len(),
        scored: count,
        running,
    })
}
