//! Incremental detokenization that never splits a UTF-8 character.

use crate::Tokenizer;

/// Per-session streaming detokenizer: `push` returns the newly complete UTF-8 text and holds
/// back an incomplete multi-byte sequence (also one split across byte-fallback tokens).
#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    pending: Vec<u8>,
    render_special: bool,
}

impl StreamDecoder {
    /// Control tokens are not rendered.
    pub fn new() -> StreamDecoder {
        StreamDecoder::default()
    }

    /// Render control tokens (`<|im_end|>`) as their text.
    pub fn with_render_special(render_special: bool) -> StreamDecoder {
        StreamDecoder {
            pending: Vec::new(),
            render_special,
        }
    }

    /// Add one token; return the text that became complete.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        self.pending
            .extend_from_slice(tok.token_to_piece(id, self.render_special));
        self.drain(false)
    }

    /// Flush what is held back (lossily: an incomplete sequence becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        self.drain(true)
    }

    /// Bytes held back, waiting for the rest of a character.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    fn drain(&mut self, flush: bool) -> String {
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(err) => {
                    let valid = err.valid_up_to();
                    out.push_str(std::str::from_utf8(&rest[..valid]).unwrap());
                    match err.error_len() {
                        Some(n) => {
                            // invalid bytes: replace, as a lossy decode of the whole would
                            out.push('\u{FFFD}');
                            rest = &rest[valid + n..];
                        }
                        None => {
                            // incomplete sequence at the end
                            rest = &rest[valid..];
                            if flush {
                                out.push('\u{FFFD}');
                                rest = &[];
                            }
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.to_vec();
        self.pending = keep;
        out
    }
}
