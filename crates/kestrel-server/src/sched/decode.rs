//! One request's side of a batched sequence: the engine's sampling step
//! (`kestrel_engine::decoding::Decoding`, the one `Engine::generate` takes too) with the
//! request's events as its sink (tokens with logprobs, confidence for routing, held-back text,
//! `Done`), driven one step at a time by the scheduler so many sequences share a forward pass.

use super::{Event, FinishReason, GenJob};
use crate::metrics::Metrics;
use kestrel_engine::decoding::{Next, Sink};
use kestrel_engine::{StopReason, Tokenizer};
use std::sync::atomic::Ordering::Relaxed;
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

pub(crate) enum Outcome {
    /// Feed this token to the model for the next step.
    Feed(u32),
    /// The sequence ended (its `Done` event is sent).
    Finished,
    /// The client went away.
    Gone,
}

pub(crate) struct Decoding {
    /// The engine's sampling step (sampler, stop strings, token limit, streamed text).
    dec: kestrel_engine::decoding::Decoding,
    logprobs: Option<usize>,
    /// Tokens whose confidence is still to be reported.
    confidence: usize,
    /// The split report to send with `Done` (kept current by the scheduler).
    pub split: Option<serde_json::Value>,
    /// When the last token came (metrics: time to first token, then per-token latency).
    last_token: Option<Instant>,
}

/// A request's events as the engine's `Sink`: tokens with their logprobs, confidence reports
/// and the timing metrics.
struct Events<'a> {
    job: &'a GenJob,
    tok: &'a Tokenizer,
    metrics: Option<&'a Metrics>,
    logprobs: Option<usize>,
    confidence: &'a mut usize,
    last_token: &'a mut Option<Instant>,
}

impl Sink for Events<'_> {
    fn before(&mut self, logits: &[f32]) -> bool {
        if *self.confidence == 0 {
            return true;
        }
        *self.confidence -= 1;
        let c = kestrel_collab::route::TokenConfidence::of_logits(logits);
        self.job.events.send(Event::Confidence(c)).is_ok()
    }

    fn token(&mut self, id: u32, text: String, logits: &[f32]) -> bool {
        if let Some(m) = self.metrics {
            let now = Instant::now();
            match *self.last_token {
                None => m.ttft.observe((now - self.job.arrived).as_secs_f64()),
                Some(t) => m.token_latency.observe((now - t).as_secs_f64()),
            }
            *self.last_token = Some(now);
            m.generated_tokens.fetch_add(1, Relaxed);
        }
        let logprob = self.logprobs.map(|n| logprob_of(self.tok, logits, id, n));
        self.job.events.send(Event::Token { text, logprob }).is_ok()
    }

    fn text(&mut self, text: String) -> bool {
        self.job.events.send(Event::Text(text)).is_ok()
    }
}

impl Decoding {
    pub fn new(job: &GenJob) -> Decoding {
        let sampler = kestrel_engine::decode::primed_sampler(&job.sampler, &job.prompt)
            .with_bias(job.bias.clone());
        Decoding {
            dec: kestrel_engine::decoding::Decoding::new(sampler, &job.stop, job.max_tokens, false),
            logprobs: job.logprobs,
            confidence: job.confidence,
            split: None,
            last_token: None,
        }
    }

    /// The sequence's next token, after the checks every kind of step makes first: none when
    /// its client left (`Gone`) or its time ran out (finished at `Length`), else the token
    /// verification already chose (`pending`), else one sampled from `logits` (`room`: the
    /// context has a position for it). Generated tokens are counted in `metrics`.
    #[allow(clippy::too_many_arguments)]
    pub fn advance(
        &mut self,
        job: &GenJob,
        pending: &mut Option<u32>,
        now: Instant,
        tok: &Tokenizer,
        metrics: &Metrics,
        logits: &[f32],
        room: bool,
    ) -> Outcome {
        if job.events.is_closed() {
            Outcome::Gone
        } else if now >= job.deadline {
            self.finish(FinishReason::Length, job, tok)
        } else if let Some(t) = pending.take() {
            Outcome::Feed(t)
        } else {
            self.sample(job, tok, metrics, logits, room)
        }
    }

    /// The engine's sampling step from `logits`, streamed as `job`'s events (a generated token
    /// counted in `metrics` when given). `room`: the context has a position left for it.
    pub fn sample(
        &mut self,
        job: &GenJob,
        tok: &Tokenizer,
        metrics: &Metrics,
        logits: &[f32],
        room: bool,
    ) -> Outcome {
        let mut sink = Events {
            job,
            tok,
            metrics: Some(metrics),
            logprobs: self.logprobs,
            confidence: &mut self.confidence,
            last_token: &mut self.last_token,
        };
        let next = self.dec.step(tok, logits, room, &mut sink);
        self.outcome(next, job)
    }

    /// What the engine's step means for the request: a token to feed, or its end (with the
    /// `Done` event sent), or a client that left.
    fn outcome(&mut self, next: Next, job: &GenJob) -> Outcome {
        let reason = match next {
            Next::Feed(t) => return Outcome::Feed(t),
            Next::End(StopReason::Cancelled) => return Outcome::Gone,
            Next::End(StopReason::Eos | StopReason::StopString) => FinishReason::Stop,
            Next::End(_) => FinishReason::Length,
        };
        let _ = job.events.send(Event::Done {
            reason,
            completion_tokens: self.generated(),
            split: self.split.take(),
        });
        Outcome::Finished
    }

    /// Tokens generated so far.
    pub fn generated(&self) -> usize {
        self.dec.tokens().len()
    }

    /// Tokens still allowed.
    pub fn left(&self) -> usize {
        self.dec.left()
    }

    /// End now (`Length`: a time limit; `Stop`): flush held-back text, then `Done`.
    pub fn finish(&mut self, reason: FinishReason, job: &GenJob, tok: &Tokenizer) -> Outcome {
        let why = match reason {
            FinishReason::Stop => StopReason::Eos,
            FinishReason::Length => StopReason::MaxTokens,
        };
        let mut sink = Events {
            job,
            tok,
            metrics: None,
            logprobs: None,
            confidence: &mut 0,
            last_token: &mut None,
        };
        let next = self.dec.finish(why, &mut sink);
        self.outcome(next, job)
    }
}
