//! One request's side of a batched sequence (`kestrel_engine::batch`): the engine's sampling
//! step (`kestrel_engine::decoding::Decoding`, the one `Engine::generate` takes too) with the
//! request's events as its sink (tokens with logprobs, confidence for routing, held-back text,
//! `Done`), driven one step at a time by the scheduler so many sequences share a forward pass.

use super::{Event, FinishReason, GenJob};
use crate::error::ApiError;
use crate::metrics::Metrics;
use kestrel_engine::batch::{Client, Failure, Request};
use kestrel_engine::decoding::{Decoding, Sink};
use kestrel_engine::{Engine, StopReason};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

pub use kestrel_engine::logprobs::{logprob_of, TokenLogprob};

/// A request's side of its batched sequence (`kestrel_engine::batch::Seq`'s client): its
/// events as the sink of the engine's sampling step (confidence before the draw for routing,
/// each token with its logprobs after it, held-back text, `Done`), the timing metrics, and the
/// state of the speculative and split steps.
pub(crate) struct Req {
    /// The request (its prompt moved into the scheduler's `Request`).
    pub job: GenJob,
    pub prompt_tokens: usize,
    engine: Arc<Engine>,
    pub metrics: Arc<Metrics>,
    /// Tokens whose confidence is still to be reported.
    confidence: usize,
    /// When the last token came (metrics: time to first token, then per-token latency).
    last_token: Option<Instant>,
    /// The split report to send with `Done` (kept current by the split step).
    pub report: Option<serde_json::Value>,
    /// The split server link (`--split-remote` only).
    pub split: Option<kestrel_collab::split::SplitLink>,
}

/// `job` as a request for the engine's scheduler.
pub(crate) fn request(mut job: GenJob, engine: Arc<Engine>, metrics: Arc<Metrics>) -> Request<Req> {
    let sampler = kestrel_engine::decode::primed_sampler(&job.sampler, &job.prompt)
        .with_bias(job.bias.clone());
    let mut dec = Decoding::new(sampler, &job.stop, job.max_tokens, false);
    if let Some(c) = &job.constraint {
        // Checked when the request was parsed; a parser that fails now leaves the answer free.
        match (c.make)() {
            Ok(c) => dec = dec.with_constraint(c),
            Err(e) => eprintln!("kestrel serve: structured output dropped: {e}"),
        }
    }
    let prompt = std::mem::take(&mut job.prompt);
    Request {
        session: job.session_id.clone(),
        prompt_logprobs: job.prompt_logprobs.then(|| job.logprobs.unwrap_or(0)),
        dec,
        client: Req {
            prompt_tokens: prompt.len(),
            confidence: job.confidence,
            job,
            engine,
            metrics,
            last_token: None,
            report: None,
            split: None,
        },
        prompt,
    }
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

    fn started(&mut self, reused: usize, prompt_logprobs: Option<Vec<TokenLogprob>>) -> bool {
        let m = &self.metrics;
        m.prompt_tokens
            .fetch_add(self.prompt_tokens as u64, Relaxed);
        m.prompt_tokens_reused.fetch_add(reused as u64, Relaxed);
        let started = Event::Started {
            prompt_tokens: self.prompt_tokens,
            reused,
            prompt_logprobs,
        };
        self.job.events.send(started).is_ok()
    }

    fn failed(&mut self, why: Failure) {
        let e = match why {
            Failure::Expired(why) => ApiError::timeout(why),
            Failure::Error(why) => ApiError::internal(why),
        };
        let _ = self.job.events.send(Event::Error(e));
    }

    fn drafted(&mut self, drafted: usize, accepted: usize) {
        let m = &self.metrics;
        m.spec_drafted.fetch_add(drafted as u64, Relaxed);
        m.spec_accepted.fetch_add(accepted as u64, Relaxed);
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
