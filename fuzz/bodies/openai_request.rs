//! The OpenAI request parser on arbitrary bodies: chat and text completions, then the checks
//! every request's sampling fields go through. Errors must be API errors, never panics.
//!
//! One input's run, shared by the fuzz target (fuzz/fuzz_targets) and the replay of the
//! corpus in the workspace's tests.

use kestrel_server::api::{self, ChatRequest, CompletionRequest};

pub fn run(data: &[u8]) {
    if let Ok(r) = api::parse::<ChatRequest>(data) {
        let _ = r.sampling.settings();
    }
    if let Ok(r) = api::parse::<CompletionRequest>(data) {
        let _ = r.sampling.settings();
    }
}
