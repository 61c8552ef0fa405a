//! The OpenAI request fuzz target's corpus (fuzz/corpus/openai_request) replayed through the
//! target's own run (fuzz/bodies): every body parses to a request or an API error.

#[path = "../../../fuzz/bodies/openai_request.rs"]
mod openai_request;
#[path = "../../../fuzz/bodies/replay.rs"]
mod replay;

#[test]
fn openai_request_corpus() {
    replay::replay("openai_request", openai_request::run);
}
