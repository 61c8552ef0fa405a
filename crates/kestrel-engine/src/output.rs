//! The output side of a generation loop: end-of-generation, stop strings, the token limit,
//! and streaming each piece of text exactly once. One copy, shared by `Engine::generate`
//! (through [`crate::decode::decode`]), speculative generation, the remote-verify device
//! loop (kestrel-verify) and the split device (through `decode`).

use crate::stop::{StopMatcher, StopStep};
use crate::{GenParams, StopReason, StreamDecoder, Tokenizer};
use kestrel_model::Sampler;

pub struct Output<'a> {
    decoder: StreamDecoder,
    stops: StopMatcher,
    /// The text passed on so far.
    pub text: String,
    /// The tokens emitted so far (an end-of-generation token that ended the text is not one).
    pub tokens: Vec<u32>,
    on_text: &'a mut dyn FnMut(&str) -> bool,
}

impl<'a> Output<'a> {
    /// `on_text` gets each piece of text once and returns false to stop.
    pub fn new(params: &GenParams, on_text: &'a mut dyn FnMut(&str) -> bool) -> Output<'a> {
        Output {
            decoder: StreamDecoder::new(),
            stops: StopMatcher::new(&params.stop),
            text: String::new(),
            tokens: Vec::new(),
            on_text,
        }
    }

    /// Pass `piece` on through the stop strings; Some(reason) when generation must end.
    pub fn text(&mut self, piece: &str) -> Option<StopReason> {
        let (emit, stopped) = match self.stops.push(piece) {
            StopStep::Emit(t) => (t, false),
            StopStep::Stop(t) => (t, true),
        };
        self.text.push_str(&emit);
        if !emit.is_empty() && !(self.on_text)(&emit) {
            return Some(StopReason::Cancelled);
        }
        stopped.then_some(StopReason::StopString)
    }

    /// Emit the chosen token `tok`; `sampler`, when the loop samples locally, accepts it (for
    /// the repetition penalty). Some(reason) when generation must end: end-of-generation
    /// (`tok` is then not emitted), the caller cancelled, a stop string, or the token limit.
    pub fn token(
        &mut self,
        tokenizer: &Tokenizer,
        params: &GenParams,
        tok: u32,
        sampler: Option<&mut Sampler>,
    ) -> Option<StopReason> {
        if tokenizer.is_eog(tok) && !params.ignore_eos {
            return Some(StopReason::Eos);
        }
        if let Some(s) = sampler {
            s.accept(tok);
        }
        self.tokens.push(tok);
        let piece = self.decoder.push(tokenizer, tok);
        if let Some(r) = self.text(&piece) {
            return Some(r);
        }
        (self.tokens.len() >= params.max_tokens).then_some(StopReason::MaxTokens)
    }

    /// Write out text held back for an unfinished UTF-8 character (through the stop strings),
    /// for when another model takes the text over.
    pub fn flush_partial(&mut self) -> Option<StopReason> {
        let held = self.decoder.finish();
        self.text(&held)
    }

    /// Generation ended for `reason`: unless a stop string or the caller ended it, pass on
    /// what was held back (an unfinished character, a partial stop-string match). Returns the
    /// whole text and the tokens.
    pub fn finish(mut self, reason: StopReason) -> (String, Vec<u32>) {
        if !matches!(reason, StopReason::StopString | StopReason::Cancelled) {
            let mut rest = self.decoder.finish();
            rest.push_str(&self.stops.finish());
            if !rest.is_empty() {
                self.text.push_str(&rest);
                (self.on_text)(&rest);
            }
        }
        (self.text, self.tokens)
    }
}
