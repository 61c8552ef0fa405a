//! One request's side of a batched sequence (`kestrel_engine::batch`): the engine's sampling
//! step (`kestrel_engine::decoding::Decoding`, the one `Engine::generate` takes too) with the
//! request's events as its sink (tokens with logprobs, confidence for routing, held-back text,
//! `Done`), driven one step at a time by the scheduler so many sequences share a forward pass.

use super::{Event, FinishReason, GenJob};
use crate::metrics::Metrics;
use kestrel_engine::batch::{Client, Seq};
use kestrel_engine::decoding::{Decoding, Sink};
use kestrel_engine::{Engine, StopReason, Tokenizer};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct TopLogprob {
    pub token: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
}

/// A token's log-probability under the model's distribution (log-softmax of the raw logits,
/// before temperature and top-p), with the most likely alternatives.
#[derive(Clone, Debug)]
pub struct TokenLogprob {
    pub token: String,
    pub bytes: Vec<u8>,
    /// None for the first prompt token (nothing predicts it).
    pub logprob: Option<f32>,
    pub top: Vec<TopLogprob>,
}

pub(crate) fn piece(tok: &Tokenizer, id: u32) -> (String, Vec<u8>) {
    let b = tok.token_to_piece(id, true).to_vec();
    (String::from_utf8_lossy(&b).into_owned(), b)
}

/// Logprob of `id` in `logits`, and the `top` most likely tokens (`kestrel_engine::logprobs`),
/// with their text.
pub(crate) fn logprob_of(tok: &Tokenizer, logits: &[f32], id: u32, top: usize) -> TokenLogprob {
    let (lp, best) = kestrel_engine::logprobs::logprobs(logits, id, top);
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

/// A request's side of its batched sequence (`kestrel_engine::batch::Seq`'s client): its
/// events as the sink of the engine's sampling step (confidence before the draw for routing,
/// each token with its logprobs after it, held-back text, `Done`), the timing metrics, and the
/// state of the speculative and split steps.
pub(crate) struct Req {
    pub job: GenJob,
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    /// Tokens whose confidence is still to be reported.
    confidence: usize,
    /// When the last token came (metrics: time to first token, then per-token latency).
    last_token: Option<Instant>,
    /// The split report to send with `Done` (kept current by the split step).
    pub report: Option<serde_json::Value>,
    /// Draft length for this sequence (speculation only).
    pub length: kestrel_engine::speculative::DraftLength,
    /// The split server link (`--split-remote` only).
    pub split: Option<kestrel_collab::split::SplitLink>,
}

/// An active sequence of the scheduler.
pub(crate) type Active = Seq<Req>;

/// `job` as an active sequence in slot `slot`.
pub(crate) fn active(
    slot: usize,
    job: GenJob,
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    length: kestrel_engine::speculative::DraftLength,
    split: Option<kestrel_collab::split::SplitLink>,
) -> Active {
    let sampler = kestrel_engine::decode::primed_sampler(&job.sampler, &job.prompt)
        .with_bias(job.bias.clone());
    let dec = Decoding::new(sampler, &job.stop, job.max_tokens, false);
    let client = Req {
        confidence: job.confidence,
        job,
        engine,
        metrics,
        last_token: None,
        report: None,
        length,
        split,
    };
    Seq::new(slot, dec, client)
}

impl Sink for Req {
    fn before(&mut self, logits: &[f32]) -> bool {
        if self.confidence == 0 {
            return true;
        }
        self.confidence -= 1;
        let c = kestrel_collab::route::TokenConfidence::of_logits(logits);
        self.job.events.send(Event::Confidence(c)).is_ok()
    }

    fn token(&mut self, id: u32, text: String, logits: &[f32]) -> bool {
        let now = Instant::now();
        let m = &self.metrics;
        match self.last_token {
            None => m.ttft.observe((now - self.job.arrived).as_secs_f64()),
            Some(t) => m.token_latency.observe((now - t).as_secs_f64()),
        }
        self.last_token = Some(now);
        m.generated_tokens.fetch_add(1, Relaxed);
        let tok = &self.engine.tokenizer;
        let logprob = self.job.logprobs.map(|n| logprob_of(tok, logits, id, n));
        self.job.events.send(Event::Token { text, logprob }).is_ok()
    }

    fn text(&mut self, text: String) -> bool {
        self.job.events.send(Event::Text(text)).is_ok()
    }
}

impl Client for Req {
    fn gone(&self) -> bool {
        self.job.events.is_closed()
    }

    fn expired(&self, now: Instant) -> bool {
        now >= self.job.deadline
    }

    fn done(&mut self, reason: StopReason, generated: usize) {
        let reason = match reason {
            StopReason::Eos | StopReason::StopString => FinishReason::Stop,
            _ => FinishReason::Length,
        };
        let _ = self.job.events.send(Event::Done {
            reason,
            completion_tokens: generated,
            split: self.report.take(),
        });
    }
}
