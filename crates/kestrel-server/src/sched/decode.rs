//! One sequence's token-by-token state: its sampler and the engine's `TextStream` (the
//! detokenizer, stop strings and token limit `Engine::generate` uses), driven one step at a
//! time by the scheduler so many sequences can share a forward pass.

use super::{Event, FinishReason, GenJob};
use crate::metrics::Metrics;
use kestrel_engine::output::TextStream;
use kestrel_engine::{StopReason, Tokenizer};
use kestrel_kernels::ops;
use kestrel_model::Sampler;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

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

/// Logprob of `id` in `logits`, and the `top` most likely tokens.
pub(crate) fn logprob_of(tok: &Tokenizer, logits: &[f32], id: u32, top: usize) -> TokenLogprob {
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
    let (token, bytes) = piece(tok, id);
    TokenLogprob {
        token,
        bytes,
        logprob: Some(logits[id as usize] - lse),
        top: best
            .into_iter()
            .map(|(i, l)| {
                let (token, bytes) = piece(tok, i);
                TopLogprob {
                    token,
                    bytes,
                    logprob: l - lse,
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
    sampler: Sampler,
    stream: TextStream,
    logprobs: Option<usize>,
    /// Tokens whose confidence is still to be reported.
    confidence: usize,
    /// The split report to send with `Done` (kept current by the scheduler).
    pub split: Option<serde_json::Value>,
    /// When the last token came (metrics: time to first token, then per-token latency).
    last_token: Option<Instant>,
}

impl Decoding {
    pub fn new(job: &GenJob) -> Decoding {
        let sampler = kestrel_engine::decode::primed_sampler(&job.sampler, &job.prompt)
            .with_bias(job.bias.clone());
        Decoding {
            sampler,
            stream: TextStream::new(&job.stop, job.max_tokens, false),
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
            self.finish(FinishReason::Length, &job.events)
        } else if let Some(t) = pending.take() {
            Outcome::Feed(t)
        } else {
            self.sample(job, tok, metrics, logits, room)
        }
    }

    /// [`Decoding::step`], with a generated token counted in `metrics`.
    pub fn sample(
        &mut self,
        job: &GenJob,
        tok: &Tokenizer,
        metrics: &Metrics,
        logits: &[f32],
        room: bool,
    ) -> Outcome {
        let before = self.generated();
        let outcome = self.step(tok, logits, room, &job.events);
        if self.generated() > before {
            let now = Instant::now();
            match self.last_token {
                None => metrics.ttft.observe((now - job.arrived).as_secs_f64()),
                Some(t) => metrics.token_latency.observe((now - t).as_secs_f64()),
            }
            self.last_token = Some(now);
            metrics.generated_tokens.fetch_add(1, Relaxed);
        }
        outcome
    }

    /// Choose the next token from `logits` and stream it. `room`: whether the context has a
    /// position left for it.
    pub fn step(
        &mut self,
        tok: &Tokenizer,
        logits: &[f32],
        room: bool,
        events: &UnboundedSender<Event>,
    ) -> Outcome {
        if self.confidence > 0 {
            self.confidence -= 1;
            let c = kestrel_collab::route::TokenConfidence::of_logits(logits);
            if events.send(Event::Confidence(c)).is_err() {
                return Outcome::Gone;
            }
        }
        let id = self.sampler.sample(logits);
        let (emit, stop) = self.stream.token(tok, id);
        if stop == Some(StopReason::Eos) {
            return self.finish(FinishReason::Stop, events);
        }
        self.sampler.accept(id);
        let logprob = self.logprobs.map(|n| logprob_of(tok, logits, id, n));
        if events
            .send(Event::Token {
                text: emit,
                logprob,
            })
            .is_err()
        {
            return Outcome::Gone;
        }
        match stop {
            Some(StopReason::StopString) => return self.done(FinishReason::Stop, events),
            Some(_) => return self.finish(FinishReason::Length, events),
            None if !room => return self.finish(FinishReason::Length, events),
            None => {}
        }
        Outcome::Feed(id)
    }

    /// Tokens generated so far.
    pub fn generated(&self) -> usize {
        self.stream.tokens().len()
    }

    /// Tokens still allowed.
    pub fn left(&self) -> usize {
        self.stream.left()
    }

    /// End now: flush held-back text, then `Done`.
    pub fn finish(&mut self, reason: FinishReason, events: &UnboundedSender<Event>) -> Outcome {
        let rest = self.stream.rest();
        if !rest.is_empty() && events.send(Event::Text(rest)).is_err() {
            return Outcome::Gone;
        }
        self.done(reason, events)
    }

    fn done(&mut self, reason: FinishReason, events: &UnboundedSender<Event>) -> Outcome {
        let _ = events.send(Event::Done {
            reason,
            completion_tokens: self.generated(),
            split: self.split.take(),
        });
        Outcome::Finished
    }
}
