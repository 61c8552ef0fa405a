//! Streaming an answer that may hold tool calls: text that cannot be part of a call goes out
//! as content at once; from where a call may begin the text is held, and at the end it is
//! parsed into calls (and any content left over). A marker split across tokens is held until
//! it is seen whole, so no part of a call is ever sent as content.

use super::parse::{self, partial_suffix, Parsed, HERMES_OPEN, LLAMA3_TAG};
use super::Format;

pub struct Splitter {
    format: Format,
    /// Text not yet sent.
    held: String,
    /// A call has begun: hold everything to the end.
    in_call: bool,
    /// Llama 3: the answer began as text, so it has no call.
    plain: bool,
}

impl Splitter {
    pub fn new(format: Format) -> Splitter {
        Splitter {
            format,
            held: String::new(),
            // The generic format's answer is one JSON object: nothing can go out before its end.
            in_call: format == Format::Generic,
            plain: false,
        }
    }

    /// Take a piece of the answer; returns the content that can be sent now.
    pub fn push(&mut self, text: &str) -> String {
        self.held.push_str(text);
        if self.in_call {
            return String::new();
        }
        match self.format {
            Format::Generic => String::new(),
            Format::Hermes => {
                if let Some(i) = self.held.find(HERMES_OPEN) {
                    self.in_call = true;
                    let before = self.held[..i].to_string();
                    self.held.drain(..i);
                    return before;
                }
                let keep = partial_suffix(&self.held, HERMES_OPEN);
                let cut = self.held.len() - keep;
                self.held.drain(..cut).collect()
            }
            Format::Llama3 => {
                if self.plain {
                    return std::mem::take(&mut self.held);
                }
                // A call is the whole answer: decided by its first visible characters.
                let t = self.held.trim_start();
                if t.is_empty() || LLAMA3_TAG.starts_with(t) {
                    String::new()
                } else if t.starts_with('{') || t.starts_with(LLAMA3_TAG) {
                    self.in_call = true;
                    String::new()
                } else {
                    self.plain = true;
                    std::mem::take(&mut self.held)
                }
            }
        }
    }

    /// The end of the answer: the held text's content and calls.
    pub fn finish(self) -> Parsed {
        if self.in_call {
            return parse::parse(self.format, &self.held);
        }
        Parsed {
            content: (!self.held.is_empty()).then_some(self.held),
            calls: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer fed a few bytes at a time: what went out as content, and the end's parse.
    fn feed(format: Format, text: &str, step: usize) -> (String, Parsed) {
        let mut s = Splitter::new(format);
        let mut sent = String::new();
        let b: Vec<char> = text.chars().collect();
        for piece in b.chunks(step) {
            sent.push_str(&s.push(&piece.iter().collect::<String>()));
        }
        (sent, s.finish())
    }

    #[test]
    fn a_call_never_leaks_into_content() {
        let text =
            "Checking. <tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>";
        for step in 1..8 {
            let (sent, end) = feed(Format::Hermes, text, step);
            assert_eq!(sent, "Checking. ", "step {step}");
            assert_eq!(end.calls.len(), 1);
            assert_eq!(end.content, None);
        }
        let (sent, end) = feed(Format::Hermes, "a < b, and <tool is a word", 3);
        assert_eq!(
            sent + end.content.as_deref().unwrap_or(""),
            "a < b, and <tool is a word"
        );
    }

    #[test]
    fn llama3_decides_at_the_first_character() {
        let (sent, end) = feed(
            Format::Llama3,
            "<|python_tag|>{\"name\": \"f\", \"parameters\": {}}",
            2,
        );
        assert_eq!(sent, "");
        assert_eq!(end.calls[0].name, "f");
        let (sent, end) = feed(Format::Llama3, "  Paris is sunny.", 2);
        assert_eq!(sent, "  Paris is sunny.");
        assert_eq!(end.content, None);
    }

    #[test]
    fn generic_is_parsed_at_the_end() {
        let (sent, end) = feed(Format::Generic, r#"{"response": "Hi there"}"#, 4);
        assert_eq!(sent, "");
        assert_eq!(end.content.as_deref(), Some("Hi there"));
    }
}
