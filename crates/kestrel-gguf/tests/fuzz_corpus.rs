//! Every input the GGUF fuzz target keeps in fuzz/corpus/gguf (the cases libFuzzer found that
//! reach new code: truncated headers, absurd counts and offsets, nested arrays), replayed through
//! the target's own run (fuzz/bodies): each must end with a result or a clean error.

#[path = "../../../fuzz/bodies/gguf.rs"]
mod gguf;
#[path = "../../../fuzz/bodies/replay.rs"]
mod replay;

#[test]
fn gguf_corpus() {
    replay::replay("gguf", gguf::run);
}
