//! The generation loop of a split run: the engine's token loop (`kestrel_engine::decode`:
//! sampling, end-of-generation, stop strings, streamed text, timings) stepping a
//! [`SplitDevice`] instead of a local session. Sampling is local, so the server never sees
//! which token was chosen, only hidden states.

use crate::error::{CollabError, Result};
use crate::split::device::SplitDevice;
use kestrel_engine::decode::{self, Stepper};
use kestrel_engine::{Engine, GenParams, Generation, Timings};
use std::time::Instant;

impl Stepper for SplitDevice<'_> {
    type Error = CollabError;

    fn logits(&self) -> &[f32] {
        self.last_logits()
    }

    fn is_full(&self) -> bool {
        self.n_past() >= self.session.n_ctx()
    }

    fn feed(&mut self, token: u32) -> Result<()> {
        SplitDevice::feed(self, &[token]).map(|_| ())
    }
}

/// Generate a continuation of `prompt`. `on_text` gets each piece of text once, whether the
/// server or the device (after a fall-back) produced it; it returns false to stop.
pub fn generate(
    engine: &Engine,
    dev: &mut SplitDevice,
    prompt: &[u32],
    params: &GenParams,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<Generation> {
    decode::check_request(params, prompt, dev.session.n_ctx())?;
    let t0 = Instant::now();
    dev.feed(prompt)?;
    let timings = Timings {
        n_prompt_eval: prompt.len(),
        prompt_ms: t0.elapsed().as_secs_f64() * 1e3,
        ..Default::default()
    };
    decode::decode(&engine.tokenizer, dev, prompt, params, t0, timings, on_text)
}
