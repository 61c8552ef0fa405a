//! The device's loop: draft with the local model, send the draft, take the accepted tokens and
//! the server's next token, repeat. When the remote fails (unreachable, too slow, an error, an
//! answer that makes no sense) the device finishes the text with its own model and the result
//! says from which token on it did, and why: the user always gets an answer.

use crate::error::CollabError;
use crate::verify::client::VerifyClient;
use crate::verify::fingerprint::vocab_fingerprint;
use crate::verify::proto::{Prompt, VerifyRequest, VerifyResponse, Vocab};
use kestrel_engine::output::Output;
use kestrel_engine::speculative::{Draft, DraftCtx, DraftLength, Drafter};
use kestrel_engine::{Engine, GenParams, StopReason};
use std::time::Instant;

pub struct RemoteOptions {
    /// Longest draft, in tokens.
    pub draft_max: usize,
    /// Adapt the draft length to the acceptance rate.
    pub adaptive: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RemoteStats {
    /// Verification calls answered.
    pub rounds: usize,
    pub drafted: usize,
    pub accepted: usize,
    /// Tokens that came from the server's verification (accepted drafts and next tokens).
    pub remote_tokens: usize,
    /// When the remote failed: the index of the first generated token the device made alone,
    /// and why.
    pub local_from: Option<usize>,
    pub fallback_reason: Option<String>,
    /// Time spent waiting for the server (network and verification).
    pub wait_ms: f64,
}

impl RemoteStats {
    pub fn acceptance_rate(&self) -> f64 {
        if self.drafted == 0 {
            0.0
        } else {
            self.accepted as f64 / self.drafted as f64
        }
    }
}

#[derive(Clone, Debug)]
pub struct RemoteGeneration {
    pub text: String,
    pub tokens: Vec<u32>,
    pub stop_reason: StopReason,
    pub stats: RemoteStats,
    /// From the call to the last token.
    pub total_ms: f64,
    pub ttft_ms: f64,
}

impl RemoteGeneration {
    /// Generated tokens per second over the whole call.
    pub fn tps(&self) -> f64 {
        if self.total_ms > 0.0 {
            self.tokens.len() as f64 * 1e3 / self.total_ms
        } else {
            0.0
        }
    }
}

/// Generate a continuation of `prompt`: `engine` (the device's model) drafts, the server at
/// `client` verifies. Greedy output (the server's sampling is `params.sampler`) is what the
/// server's model alone would produce.
pub fn remote_generate(
    engine: &Engine,
    drafter: &mut dyn Drafter,
    client: &VerifyClient,
    prompt: &[u32],
    params: &GenParams,
    opts: &RemoteOptions,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<RemoteGeneration, CollabError> {
    params
        .sampler
        .validate()
        .map_err(|e| CollabError::Invalid(e.to_string()))?;
    if prompt.is_empty() {
        return Err(CollabError::Invalid("the prompt is empty".into()));
    }
    let t0 = Instant::now();
    let mut out = Output::new(params, on_text);
    let mut stats = RemoteStats::default();
    let mut ttft_ms = None;
    let mut session: Option<String> = None;
    let mut history = prompt.to_vec();
    let n_vocab = engine.tokenizer.vocab_size();
    let mut length = DraftLength::new(opts.draft_max, opts.adaptive);
    let mut draft = Draft::default();
    let n_ctx = engine.n_ctx();
    let s = &params.sampler;

    let reason = 'gen: loop {
        if params.max_tokens == 0 {
            break StopReason::MaxTokens;
        }
        // The server adds its own token after the draft: leave room for it.
        let left = params.max_tokens - out.tokens().len();
        let room = n_ctx.saturating_sub(history.len() + 1);
        let k = length.next().min(left - 1).min(room);
        if k > 0 {
            let mut cx = DraftCtx { pool: &engine.pool };
            drafter.draft(&history, k, &mut cx, &mut draft)?;
            draft.tokens.truncate(k);
            // Nothing after an end-of-generation token would be used.
            if !params.ignore_eos {
                if let Some(i) = draft
                    .tokens
                    .iter()
                    .position(|&t| engine.tokenizer.is_eog(t))
                {
                    draft.tokens.truncate(i + 1);
                }
            }
        } else {
            draft.clear();
        }
        let req = match &session {
            None => VerifyRequest {
                prompt: Some(Prompt::Tokens(prompt.to_vec())),
                vocab: Some(Vocab {
                    size: n_vocab,
                    fingerprint: vocab_fingerprint(&engine.tokenizer),
                }),
                draft: draft.tokens.clone(),
                temperature: Some(s.temperature),
                top_k: Some(s.top_k),
                top_p: Some(s.top_p),
                seed: Some(s.seed),
                ..Default::default()
            },
            Some(id) => VerifyRequest {
                session: Some(id.clone()),
                draft: draft.tokens.clone(),
                ..Default::default()
            },
        };
        let tw = Instant::now();
        let answer = client
            .verify(&req)
            .and_then(|r| check(&r, session.as_deref(), draft.len(), n_vocab));
        stats.wait_ms += tw.elapsed().as_secs_f64() * 1e3;
        let resp = match answer {
            Ok(r) => r,
            Err(e) => {
                stats.local_from = Some(out.tokens().len());
                stats.fallback_reason = Some(e.to_string());
                if let Some(id) = &session {
                    let _ = client.close(id);
                }
                session = None;
                break 'gen finish_locally(engine, &mut out, &history, params)?;
            }
        };
        session = Some(resp.session.clone());
        stats.rounds += 1;
        stats.drafted += draft.len();
        stats.accepted += resp.accepted;
        length.update(draft.len(), resp.accepted);
        let joined = draft.tokens[..resp.accepted]
            .iter()
            .copied()
            .chain([resp.next]);
        for t in joined {
            ttft_ms.get_or_insert_with(|| t0.elapsed().as_secs_f64() * 1e3);
            stats.remote_tokens += 1;
            if let Some(r) = out.token(&engine.tokenizer, t, None) {
                break 'gen r;
            }
            history.push(t);
        }
        if history.len() >= n_ctx {
            break StopReason::ContextFull;
        }
    };
    if let Some(id) = &session {
        // Best effort: the server expires idle sessions anyway.
        let _ = client.close(id);
    }
    let (text, tokens) = out.finish(reason);
    Ok(RemoteGeneration {
        text,
        tokens,
        stop_reason: reason,
        stats,
        total_ms: t0.elapsed().as_secs_f64() * 1e3,
        ttft_ms: ttft_ms.unwrap_or(0.0),
    })
}

/// An answer that fits the request: the session it continued, no more accepted tokens than
/// were drafted, a next token in the vocabulary.
fn check(
    r: &VerifyResponse,
    session: Option<&str>,
    drafted: usize,
    n_vocab: usize,
) -> Result<VerifyResponse, CollabError> {
    let bad = |why: String| Err(CollabError::verify_remote("malformed answer", why));
    if let Some(s) = session {
        if r.session != s {
            return bad(format!("answered for session '{}', not '{s}'", r.session));
        }
    }
    if r.accepted > drafted {
        return bad(format!("accepted {} of {drafted} draft tokens", r.accepted));
    }
    if r.next as usize >= n_vocab {
        return bad(format!("next token {} is outside the vocabulary", r.next));
    }
    Ok(r.clone())
}

/// The remote failed: the device's model writes the rest of the text.
fn finish_locally(
    engine: &Engine,
    out: &mut Output,
    history: &[u32],
    params: &GenParams,
) -> Result<StopReason, CollabError> {
    let left = params.max_tokens - out.tokens().len();
    if history.len() >= engine.n_ctx() {
        return Ok(StopReason::ContextFull);
    }
    // Text held for an unfinished UTF-8 character is written now; the local model's text
    // follows through the same stop-string check.
    if let Some(r) = out.flush_partial() {
        return Ok(r);
    }
    let local = GenParams {
        max_tokens: left,
        stop: Vec::new(),
        ..params.clone()
    };
    let mut seq = engine.new_sequence();
    let mut stop = None;
    let g = engine.generate(&mut seq, history, &local, &mut |t| {
        stop = out.text(t);
        stop.is_none()
    })?;
    out.push_tokens(&g.tokens);
    Ok(stop.unwrap_or(g.stop_reason))
}
