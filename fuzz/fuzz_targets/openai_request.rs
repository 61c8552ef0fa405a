//! The OpenAI request parser on arbitrary bodies: chat and text completions, then the checks
//! every request's sampling fields go through. Errors must be API errors, never panics.
#![no_main]

use kestrel_server::api::{self, ChatRequest, CompletionRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = api::parse::<ChatRequest>(data) {
        let _ = r.sampling.settings();
    }
    if let Ok(r) = api::parse::<CompletionRequest>(data) {
        let _ = r.sampling.settings();
    }
});
