//! Log-probabilities under the model's distribution (log-softmax of the raw logits, before
//! temperature, top-k or top-p), as OpenAI's `logprobs` reports them: of generated tokens
//! and of a prompt's own tokens.

use crate::{Engine, EngineError, Result, Sequence, Tokenizer};
use kestrel_kernels::ops;

/// The log-probability of `id` in `logits`, and the `top` most likely tokens with theirs,
/// most likely first (ties: lower id first).
pub fn logprobs(logits: &[f32], id: u32, top: usize) -> (f32, Vec<(u32, f32)>) {
    let lse = ops::logsumexp(logits);
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(top + 1);
    if top > 0 {
        for (i, &l) in logits.iter().enumerate() {
            if best.len() < top || l > best[best.len() - 1].1 {
                let at = best.partition_point(|&(_, b)| b >= l);
                best.insert(at, (i as u32, l));
                best.truncate(top);
            }
        }
    }
    for b in best.iter_mut() {
        b.1 -= lse;
    }
    (logits[id as usize] - lse, best)
}

/// One of a token's most likely alternatives.
#[derive(Clone, Debug)]
pub struct TopLogprob {
    pub token: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
}

/// A token's log-probability ([`logprobs`]) with its text and the most likely alternatives.
#[derive(Clone, Debug)]
pub struct TokenLogprob {
    pub token: String,
    pub bytes: Vec<u8>,
    /// None for the first prompt token (nothing predicts it).
    pub logprob: Option<f32>,
    pub top: Vec<TopLogprob>,
}

/// A token's text (lossy where it is part of a UTF-8 character) and its bytes.
pub fn piece(tok: &Tokenizer, id: u32) -> (String, Vec<u8>) {
    let b = tok.token_to_piece(id, true).to_vec();
    (String::from_utf8_lossy(&b).into_owned(), b)
}

/// Logprob of `id` in `logits` and the `top` most likely tokens, with their text.
pub fn logprob_of(tok: &Tokenizer, logits: &[f32], id: u32, top: usize) -> TokenLogprob {
    let (lp, best) = logprobs(logits, id, top);
    let (token, bytes) = piece(tok, id);
    TokenLogprob {
        token,
        bytes,
        logprob: Some(lp),
        top: best
            .into_iter()
            .map(|(i, logprob)| {
                let (token, bytes) = piece(tok, i);
                TopLogprob {
                    token,
                    bytes,
                    logprob,
                }
            })
            .collect(),
    }
}

/// Prompt tokens evaluated per forward pass when every position's logits are kept (each row
/// is a vocabulary of floats).
const CHUNK: usize = 64;

/// Evaluate all of `prompt` into the emptied `seq`, keeping each position's logits just long
/// enough to score the next token: every prompt token's logprob (the first has none), with
/// `top` alternatives each. No chunk has a single token (a lone token takes the one-token
/// attention path), so the cache matches a one-pass prefill; it is all exact afterwards.
pub fn prompt_logprobs(
    engine: &Engine,
    seq: &mut Sequence,
    prompt: &[u32],
    top: usize,
) -> Result<Vec<TokenLogprob>> {
    let Some(&first) = prompt.first() else {
        return Err(EngineError::EmptyPrompt);
    };
    seq.clear();
    let (token, bytes) = piece(&engine.tokenizer, first);
    let mut out = vec![TokenLogprob {
        token,
        bytes,
        logprob: None,
        top: Vec::new(),
    }];
    let mut start = 0;
    while start < prompt.len() {
        let mut end = (start + CHUNK).min(prompt.len());
        if prompt.len() - end == 1 {
            end += 1;
        }
        let chunk = &prompt[start..end];
        engine
            .model
            .forward(&mut seq.session, &engine.pool, chunk, 0)?;
        seq.tokens.extend_from_slice(chunk);
        for (r, j) in (start + 1..=end).enumerate() {
            if j < prompt.len() {
                let lp = logprob_of(&engine.tokenizer, seq.session.logits(r), prompt[j], top);
                out.push(lp);
            }
        }
        start = end;
    }
    seq.set_exact(prompt.len());
    Ok(out)
}
