//! One sequence's token-by-token state: the sampler, the streaming detokenizer and the stop
//! strings, as in `Engine::generate`, but driven one step at a time by the scheduler so many
//! sequences can share a forward pass.

use super::{Event, FinishReason, GenJob};
use kestrel_engine::stop::{StopMatcher, StopStep};
use kestrel_engine::{StreamDecoder, Tokenizer};
use kestrel_kernels::ops;
use kestrel_model::Sampler;
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
    decoder: StreamDecoder,
    stops: StopMatcher,
    pub generated: usize,
    max_tokens: usize,
    logprobs: Option<usize>,
    /// Tokens whose confidence is still to be reported.
    confidence: usize,
    /// The split report to send with `Done` (kept current by the scheduler).
    pub split: Option<serde_json::Value>,
}

impl Decoding {
    pub fn new(job: &GenJob) -> Decoding {
        let sampler = kestrel_engine::decode::primed_sampler(&job.sampler, &job.prompt)
            .with_bias(job.bias.clone());
        Decoding {
            sampler,
            decoder: StreamDecoder::new(),
            stops: StopMatcher::new(&job.stop),
            generated: 0,
            max_tokens: job.max_tokens,
            logprobs: job.logprobs,
            confidence: job.confidence,
            split: None,
        }
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
            let c = kestrel_route::TokenConfidence::of_logits(logits);
            if events.send(Event::Confidence(c)).is_err() {
                return Outcome::Gone;
            }
        }
        let id = self.sampler.sample(logits);
        if tok.is_eog(id) {
            return self.finish(FinishReason::Stop, events);
        }
        self.sampler.accept(id);
        self.generated += 1;
        let logprob = self.logprobs.map(|n| logprob_of(tok, logits, id, n));
        let text = self.decoder.push(tok, id);
        let (emit, stopped) = match self.stops.push(&text) {
            StopStep::Emit(t) => (t, false),
            StopStep::Stop(t) => (t, true),
        };
        if events
            .send(Event::Token {
                text: emit,
                logprob,
            })
            .is_err()
        {
            return Outcome::Gone;
        }
        if stopped {
            return self.done(FinishReason::Stop, events);
        }
        if self.generated >= self.max_tokens || !room {
            return self.finish(FinishReason::Length, events);
        }
        Outcome::Feed(id)
    }

    /// Tokens still allowed.
    pub fn left(&self) -> usize {
        self.max_tokens.saturating_sub(self.generated)
    }

    /// End now: flush held-back text, then `Done`.
    pub fn finish(&mut self, reason: FinishReason, events: &UnboundedSender<Event>) -> Outcome {
        let mut rest = self.decoder.finish();
        rest.push_str(&self.stops.finish());
        if !rest.is_empty() && events.send(Event::Text(rest)).is_err() {
            return Outcome::Gone;
        }
        self.done(reason, events)
    }

    fn done(&mut self, reason: FinishReason, events: &UnboundedSender<Event>) -> Outcome {
        let _ = events.send(Event::Done {
            reason,
            completion_tokens: self.generated,
            split: self.split.take(),
        });
        Outcome::Finished
    }
}
