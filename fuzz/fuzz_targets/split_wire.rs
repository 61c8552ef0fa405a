//! Fuzz target: see bodies/split_wire.rs.
#![no_main]

#[path = "../bodies/split_wire.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
