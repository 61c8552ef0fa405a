//! The output side of a generation loop: end-of-generation, stop strings, the token limit,
//! and streaming each piece of text exactly once. One copy: [`TextStream`] holds the state and
//! the rules; [`crate::decoding::Decoding`] drives it for every loop that samples one token
//! per step (`Engine::generate`, the split device, each of the server's batched sequences),
//! and [`Output`] for the loops that emit tokens chosen elsewhere through a callback
//! (speculative generation, the remote-verify device loop in kestrel-collab).

use crate::stop::{StopMatcher, StopStep};
use crate::{GenParams, StopReason, StreamDecoder, Tokenizer};
use kestrel_model::Sampler;

/// One sequence's text state, owned and callback-free: the streaming detokenizer, the stop
/// strings, the tokens emitted and the limit on them.
pub struct TextStream {
    decoder: StreamDecoder,
    stops: StopMatcher,
    tokens: Vec<u32>,
    max_tokens: usize,
    ignore_eos: bool,
}

impl TextStream {
    pub fn new(stop: &[String], max_tokens: usize, ignore_eos: bool) -> TextStream {
        TextStream {
            decoder: StreamDecoder::new(),
            stops: StopMatcher::new(stop),
            tokens: Vec::new(),
            max_tokens,
            ignore_eos,
        }
    }

    /// The tokens emitted so far (an end-of-generation token that ended the text is not one).
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Tokens still allowed.
    pub fn left(&self) -> usize {
        self.max_tokens.saturating_sub(self.tokens.len())
    }

    /// `piece` through the stop strings: the text now final (possibly empty: it may start a
    /// stop string), and whether a stop string ended the generation.
    pub fn text(&mut self, piece: &str) -> (String, bool) {
        match self.stops.push(piece) {
            StopStep::Emit(t) => (t, false),
            StopStep::Stop(t) => (t, true),
        }
    }

    /// Emit the chosen token `tok`: the text that became final with it, and Some(reason) when
    /// generation must end: end-of-generation (`tok` is then not emitted), a stop string, or
    /// the token limit.
    pub fn token(&mut self, tokenizer: &Tokenizer, tok: u32) -> (String, Option<StopReason>) {
        if tokenizer.is_eog(tok) && !self.ignore_eos {
            return (String::new(), Some(StopReason::Eos));
        }
        self.tokens.push(tok);
        let piece = self.decoder.push(tokenizer, tok);
        let (emit, stopped) = self.text(&piece);
        let stop = if stopped {
            Some(StopReason::StopString)
        } else {
            (self.tokens.len() >= self.max_tokens).then_some(StopReason::MaxTokens)
        };
        (emit, stop)
    }

    /// Tokens another loop emitted, whose text already went through [`TextStream::text`].
    pub fn push_tokens(&mut self, tokens: &[u32]) {
        self.tokens.extend_from_slice(tokens);
    }

    /// Text held back for an unfinished UTF-8 character, through the stop strings, for when
    /// another model takes the text over.
    pub fn flush_partial(&mut self) -> (String, bool) {
        let held = self.decoder.finish();
        self.text(&held)
    }

    /// Generation ended for `reason`: the held-back text to pass on last (an unfinished
    /// character, a partial stop-string match), none when a stop string or the caller ended it.
    pub fn finish(&mut self, reason: StopReason) -> String {
        if matches!(reason, StopReason::StopString | StopReason::Cancelled) {
            return String::new();
        }
        self.rest()
    }

    /// Everything held back (an unfinished character, a partial stop-string match), for a
    /// generation cut short from outside (a deadline).
    pub fn rest(&mut self) -> String {
        let mut rest = self.decoder.finish();
        rest.push_str(&self.stops.finish());
        rest
    }
}

/// A [`TextStream`] whose text goes to a callback and is kept whole.
pub struct Output<'a> {
    stream: TextStream,
    /// The text passed on so far.
    pub text: String,
    on_text: &'a mut dyn FnMut(&str) -> bool,
}

impl<'a> Output<'a> {
    /// `on_text` gets each piece of text once and returns false to stop.
    pub fn new(params: &GenParams, on_text: &'a mut dyn FnMut(&str) -> bool) -> Output<'a> {
        Output {
            stream: TextStream::new(&params.stop, params.max_tokens, params.ignore_eos),
            text: String::new(),
            on_text,
        }
    }

    /// The tokens emitted so far (an end-of-generation token that ended the text is not one).
    pub fn tokens(&self) -> &[u32] {
        self.stream.tokens()
    }

    /// Pass final text on; Some(Cancelled) when the callback asks to stop.
    fn pass(&mut self, emit: &str) -> Option<StopReason> {
        self.text.push_str(emit);
        (!emit.is_empty() && !(self.on_text)(emit)).then_some(StopReason::Cancelled)
    }

    /// Pass on text that came through the stop strings (`stopped`: one ended the text).
    fn pass_checked(&mut self, (emit, stopped): (String, bool)) -> Option<StopReason> {
        self.pass(&emit)
            .or(stopped.then_some(StopReason::StopString))
    }

    /// Pass `piece` on through the stop strings; Some(reason) when generation must end.
    pub fn text(&mut self, piece: &str) -> Option<StopReason> {
        let step = self.stream.text(piece);
        self.pass_checked(step)
    }

    /// Emit the chosen token `tok`; `sampler`, when the loop samples locally, accepts it (for
    /// the repetition penalty). Some(reason) when generation must end: end-of-generation
    /// (`tok` is then not emitted), the caller cancelled, a stop string, or the token limit.
    pub fn token(
        &mut self,
        tokenizer: &Tokenizer,
        tok: u32,
        sampler: Option<&mut Sampler>,
    ) -> Option<StopReason> {
        let (emit, stop) = self.stream.token(tokenizer, tok);
        if matches!(stop, Some(StopReason::Eos)) {
            return stop;
        }
        if let Some(s) = sampler {
            s.accept(tok);
        }
        self.pass(&emit).or(stop)
    }

    /// Tokens another loop emitted, whose text already went through [`Output::text`].
    pub fn push_tokens(&mut self, tokens: &[u32]) {
        self.stream.push_tokens(tokens);
    }

    /// Write out text held back for an unfinished UTF-8 character (through the stop strings),
    /// for when another model takes the text over.
    pub fn flush_partial(&mut self) -> Option<StopReason> {
        let step = self.stream.flush_partial();
        self.pass_checked(step)
    }

    /// Generation ended for `reason`: unless a stop string or the caller ended it, pass on
    /// what was held back (an unfinished character, a partial stop-string match). Returns the
    /// whole text and the tokens.
    pub fn finish(mut self, reason: StopReason) -> (String, Vec<u32>) {
        let rest = self.stream.finish(reason);
        if !rest.is_empty() {
            self.text.push_str(&rest);
            (self.on_text)(&rest);
        }
        (self.text, self.stream.tokens)
    }
}
