//! The generation loop of a split run: the engine's loop (sampling, end-of-generation, stop
//! strings, streaming text, timings) over a [`SplitDevice`] instead of a local session.
//! Sampling is local, so the server never sees which token was chosen, only hidden states.

use crate::device::SplitDevice;
use crate::error::Result;
use kestrel_engine::stop::{StopMatcher, StopStep};
use kestrel_engine::{
    Engine, EngineError, GenParams, Generation, StopReason, StreamDecoder, Timings,
};
use kestrel_model::Sampler;
use std::time::Instant;

/// Generate a continuation of `prompt`. `on_text` gets each piece of text once, whether the
/// server or the device (after a fall-back) produced it; it returns false to stop.
pub fn generate(
    engine: &Engine,
    dev: &mut SplitDevice,
    prompt: &[u32],
    params: &GenParams,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<Generation> {
    params.sampler.validate().map_err(EngineError::Sampling)?;
    if prompt.is_empty() {
        return Err(EngineError::EmptyPrompt.into());
    }
    let n_ctx = dev.session.n_ctx();
    if prompt.len() >= n_ctx {
        return Err(EngineError::PromptTooLong {
            prompt: prompt.len(),
            n_ctx,
        }
        .into());
    }
    let t0 = Instant::now();
    let mut logits = dev.feed(prompt)?.to_vec();
    let mut timings = Timings {
        n_prompt_eval: prompt.len(),
        prompt_ms: t0.elapsed().as_secs_f64() * 1e3,
        ..Default::default()
    };
    let mut sampler = Sampler::new(params.sampler.clone());
    let window = params.sampler.repeat_last_n.min(prompt.len());
    for &t in &prompt[prompt.len() - window..] {
        sampler.accept(t);
    }
    let tok = &engine.tokenizer;
    let mut decoder = StreamDecoder::new();
    let mut stops = StopMatcher::new(&params.stop);
    let mut text = String::new();
    let mut tokens = Vec::new();
    let mut t_first = None;
    let reason = loop {
        if tokens.len() >= params.max_tokens {
            break StopReason::MaxTokens;
        }
        let t = sampler.sample(&logits);
        if t_first.is_none() {
            t_first = Some(Instant::now());
            timings.ttft_ms = t0.elapsed().as_secs_f64() * 1e3;
        }
        if tok.is_eog(t) && !params.ignore_eos {
            break StopReason::Eos;
        }
        sampler.accept(t);
        tokens.push(t);
        let piece = decoder.push(tok, t);
        let (emit, stopped) = match stops.push(&piece) {
            StopStep::Emit(t) => (t, false),
            StopStep::Stop(t) => (t, true),
        };
        text.push_str(&emit);
        if !emit.is_empty() && !on_text(&emit) {
            break StopReason::Cancelled;
        }
        if stopped {
            break StopReason::StopString;
        }
        if tokens.len() >= params.max_tokens {
            break StopReason::MaxTokens;
        }
        if dev.n_past() >= n_ctx {
            break StopReason::ContextFull;
        }
        logits.clear();
        logits.extend_from_slice(dev.feed(&[t])?);
    };
    if !matches!(reason, StopReason::StopString | StopReason::Cancelled) {
        let mut rest = decoder.finish();
        rest.push_str(&stops.finish());
        if !rest.is_empty() {
            text.push_str(&rest);
            on_text(&rest);
        }
    }
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
