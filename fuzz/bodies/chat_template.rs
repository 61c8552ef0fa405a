//! The chat-template renderer on arbitrary templates and messages (a template is code from
//! a model file): input is the template, then NUL-separated messages (role, then content,
//! alternately). Compiling and rendering must end with a result or an error, in bounded time
//! and memory (fuel, recursion and output limits).
//!
//! One input's run, shared by the fuzz target (fuzz/fuzz_targets) and the replay of the
//! corpus in the workspace's tests.

use kestrel_tokenizer::{ChatMessage, ChatTemplate};

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let src = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    let msgs: Vec<ChatMessage> = rest
        .chunks(2)
        .map(|p| ChatMessage::new(p[0], p.get(1).copied().unwrap_or_default()))
        .collect();
    if let Ok(t) = ChatTemplate::from_source(src, "<s>", "</s>") {
        let _ = t.render(&msgs, true);
        let _ = t.render(&msgs, false);
    }
}
