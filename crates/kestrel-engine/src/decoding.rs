//! One sequence's next token, the step every sampling loop takes (`Engine::generate` and the
//! split device through [`crate::decode::decode`], each of the server's batched sequences):
//! draw from the logits with the sequence's sampler, pass the token through the
//! [`TextStream`] (end-of-generation, stop strings, the token limit, streamed text) and hand
//! what became final to a [`Sink`]. The loop around it decides where the logits come from and
//! feeds the chosen token on.

use crate::output::TextStream;
use crate::{StopReason, Tokenizer};
use kestrel_model::Sampler;

/// Where a sequence's output goes; each method returns false when its receiver is gone, which
/// ends the sequence (`StopReason::Cancelled`).
pub trait Sink {
    /// The logits the next token is about to be drawn from.
    fn before(&mut self, _logits: &[f32]) -> bool {
        true
    }
    /// Token `id`, drawn from `logits`, and the text that became final with it (possibly
    /// empty: a stop string or a UTF-8 character may be pending).
    fn token(&mut self, id: u32, text: String, logits: &[f32]) -> bool;
    /// Text held back until the end, with no token of its own.
    fn text(&mut self, text: String) -> bool;
}

/// What a step leaves the loop to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Feed this token to the model and step again on the logits after it.
    Feed(u32),
    /// The sequence ended (its last text is sent).
    End(StopReason),
}

/// Constrained output (kestrel-grammar implements it with llguidance): which tokens may come
/// next, and the tokens chosen. The sampling step draws only from the allowed tokens.
pub trait Constraint: Send {
    /// Set the logit of every token not allowed next to minus infinity (end-of-generation
    /// tokens are allowed only where the grammar may end).
    fn mask(&mut self, logits: &mut [f32]) -> Result<(), String>;
    /// `token` was chosen.
    fn commit(&mut self, token: u32) -> Result<(), String>;
    /// The grammar is complete and allows no more tokens.
    fn finished(&self) -> bool;
}

/// Makes a fresh [`Constraint`] for each generation; `what` describes it for logs.
#[derive(Clone)]
pub struct ConstraintSpec {
    pub make: std::sync::Arc<dyn Fn() -> Result<Box<dyn Constraint>, String> + Send + Sync>,
    pub what: String,
}

impl std::fmt::Debug for ConstraintSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConstraintSpec({})", self.what)
    }
}

pub struct Decoding {
    sampler: Sampler,
    stream: TextStream,
    constraint: Option<Box<dyn Constraint>>,
    /// The logits with the constraint's mask applied (reused across steps).
    masked: Vec<f32>,
}

impl Decoding {
    /// `sampler` as the request configures it (primed with the prompt, biased); the text rules
    /// of the request.
    pub fn new(sampler: Sampler, stop: &[String], max_tokens: usize, ignore_eos: bool) -> Self {
        Decoding {
            sampler,
            stream: TextStream::new(stop, max_tokens, ignore_eos),
            constraint: None,
            masked: Vec::new(),
        }
    }

    /// Draw every token from those `c` allows.
    pub fn with_constraint(mut self, c: Box<dyn Constraint>) -> Self {
        self.constraint = Some(c);
        self
    }

    /// The tokens generated so far.
    pub fn tokens(&self) -> &[u32] {
        self.stream.tokens()
    }

    /// Tokens still allowed.
    pub fn left(&self) -> usize {
        self.stream.left()
    }

    /// Choose the next token from `logits` and stream it to `sink`. `room`: the context has a
    /// position for the token after it.
    pub fn step(
        &mut self,
        tok: &Tokenizer,
        logits: &[f32],
        room: bool,
        sink: &mut dyn Sink,
    ) -> Next {
        if self.stream.left() == 0 {
            return self.finish(StopReason::MaxTokens, sink);
        }
        if !sink.before(logits) {
            return Next::End(StopReason::Cancelled);
        }
        let id = match &mut self.constraint {
            None => self.sampler.sample(logits),
            Some(c) => {
                self.masked.clear();
                self.masked.extend_from_slice(logits);
                if let Err(e) = c.mask(&mut self.masked) {
                    eprintln!("kestrel: constrained output stopped: {e}");
                    return self.finish(StopReason::Eos, sink);
                }
                self.sampler.sample(&self.masked)
            }
        };
        let (emit, stop) = self.stream.token(tok, id);
        if stop == Some(StopReason::Eos) {
            return self.finish(StopReason::Eos, sink);
        }
        self.sampler.accept(id);
        let mut complete = false;
        if let Some(c) = &mut self.constraint {
            if let Err(e) = c.commit(id) {
                eprintln!("kestrel: constrained output stopped: {e}");
                return self.finish(StopReason::Eos, sink);
            }
            complete = c.finished();
        }
        // Logprobs are of the model's own distribution, before the mask.
        if !sink.token(id, emit, logits) {
            return Next::End(StopReason::Cancelled);
        }
        if complete {
            return self.finish(StopReason::Eos, sink);
        }
        match stop {
            Some(r) => self.finish(r, sink),
            None if !room => self.finish(StopReason::ContextFull, sink),
            None => Next::Feed(id),
        }
    }

    /// End now for `reason` (also from outside: a deadline): send what was held back (an
    /// unfinished character, a partial stop-string match) unless a stop string or the
    /// receiver ended it.
    pub fn finish(&mut self, reason: StopReason, sink: &mut dyn Sink) -> Next {
        let rest = self.stream.finish(reason);
        if !rest.is_empty() && !sink.text(rest) {
            return Next::End(StopReason::Cancelled);
        }
        Next::End(reason)
    }
}
