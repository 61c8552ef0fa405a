//! The token-by-token tail of generation, shared by every loop that samples one token per
//! step: `Engine::generate` over a local session, and kestrel-split's device loop over a
//! split model. Sampling, end-of-generation, stop strings, streamed text (each piece once)
//! and the generation timings live here only.

use crate::output::Output;
use crate::{EngineError, GenParams, Generation, StopReason, Timings, Tokenizer};
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
    let mut sampler = primed_sampler(&params.sampler, prompt);
    let mut out = Output::new(params, on_text);
    let mut t_first = None;
    let reason = loop {
        if out.tokens().len() >= params.max_tokens {
            break StopReason::MaxTokens;
        }
        let tok = sampler.sample(s.logits());
        if t_first.is_none() {
            t_first = Some(Instant::now());
            timings.ttft_ms = t0.elapsed().as_secs_f64() * 1e3;
        }
        if let Some(r) = out.token(tokenizer, tok, Some(&mut sampler)) {
            break r;
        }
        if s.is_full() {
            break StopReason::ContextFull;
        }
        s.feed(tok)?;
    };
    let (text, tokens) = out.finish(reason);
    timings.n_gen = tokens.len();
    if let Some(t1) = t_first {
        timings.gen_ms = t1.elapsed().as_secs_f64() * 1e3;
    }
    Ok(Generation {
        text,
        tokens,
        stop_reason: reason,
        timings,
    })
}
