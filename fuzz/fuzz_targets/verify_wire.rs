//! Fuzz target: see bodies/verify_wire.rs.
#![no_main]

#[path = "../bodies/verify_wire.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
