//! Fuzz target: see bodies/openai_request.rs.
#![no_main]

#[path = "../bodies/openai_request.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
