//! The token-by-token tail of generation for the loops that run one sequence on its own:
//! `Engine::generate` over a local session, and kestrel-collab's split device over a split
//! model. Each step is a [`Decoding::step`] (the one sampling step the server's batched
//! sequences take too); the generation timings live here.

use crate::decoding::{Decoding, Next, Sink};
use crate::{EngineError, GenParams, Generation, Timings, Tokenizer};
use kestrel_model::{Sampler, SamplerConfig};
use std::time::Instant;

/// What the loop steps: something that holds the logits after the last token it was fed.
pub trait Stepper {
    type Error: From<EngineError>;
    /// The logits after the last token fed (the prompt's last token at first).
    fn logits(&self) -> &[f32];
    /// True when the context has no room for another token.
    fn is_full(&self) -> bool;
    /// Append one token and compute the logits after it.
    fn feed(&mut self, token: u32) -> Result<(), Self::Error>;
}

/// The checks every generation makes before it evaluates a prompt.
pub fn check_request(params: &GenParams, prompt: &[u32], n_ctx: usize) -> crate::Result<()> {
    params.sampler.validate().map_err(EngineError::Sampling)?;
    if prompt.is_empty() {
        return Err(EngineError::EmptyPrompt);
    }
    if prompt.len() >= n_ctx {
        return Err(EngineError::PromptTooLong {
            prompt: prompt.len(),
            n_ctx,
        });
    }
    Ok(())
}

/// A sampler primed with the prompt's last tokens (for the repetition penalty).
pub fn primed_sampler(cfg: &SamplerConfig, prompt: &[u32]) -> Sampler {
    let mut sampler = Sampler::new(cfg.clone());
    let window = cfg.repeat_last_n.min(prompt.len());
    for &t in &prompt[prompt.len() - window..] {
        sampler.accept(t);
    }
    sampler
}

/// Generate after an evaluated `prompt`: `t0` is when the request started and `timings`
/// holds the prompt's part. `on_text` gets each piece of text once and returns false to stop.
pub fn decode<S: Stepper>(
    tokenizer: &Tokenizer,
    s: &mut S,
    prompt: &[u32],
    params: &GenParams,
    t0: Instant,
    mut timings: Timings,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<Generation, S::Error> {
    let sampler = primed_sampler(&params.sampler, prompt);
    let mut dec = Decoding::new(sampler, &params.stop, params.max_tokens, params.ignore_eos);
    if let Some(c) = &params.constraint {
        dec = dec.with_constraint((c.make)().map_err(EngineError::Invalid)?);
    }
    let mut sink = TextSink {
        text: String::new(),
        on_text,
        first: None,
    };
    let reason = loop {
        match dec.step(tokenizer, s.logits(), !s.is_full(), &mut sink) {
            Next::Feed(t) => s.feed(t)?,
            Next::End(r) => break r,
        }
    };
    timings.n_gen = dec.tokens().len();
    if let Some(t1) = sink.first {
        timings.ttft_ms = (t1 - t0).as_secs_f64() * 1e3;
        timings.gen_ms = t1.elapsed().as_secs_f64() * 1e3;
    }
    Ok(Generation {
        text: sink.text,
        tokens: dec.tokens().to_vec(),
        stop_reason: reason,
        timings,
    })
}

/// The text of a generation: passed to the callback piece by piece and kept whole; the time
/// of the first draw.
struct TextSink<'a> {
    text: String,
    on_text: &'a mut dyn FnMut(&str) -> bool,
    first: Option<Instant>,
}

impl TextSink<'_> {
    fn pass(&mut self, t: &str) -> bool {
        self.text.push_str(t);
        t.is_empty() || (self.on_text)(t)
    }
}

impl Sink for TextSink<'_> {
    fn before(&mut self, _logits: &[f32]) -> bool {
        self.first.get_or_insert_with(Instant::now);
        true
    }

    fn token(&mut self, _id: u32, text: String, _logits: &[f32]) -> bool {
        self.pass(&text)
    }

    fn text(&mut self, text: String) -> bool {
        // The last text of a generation that already ended for its own reason.
        self.pass(&text);
        true
    }
}
