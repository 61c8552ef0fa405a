//! The chat-template and tokenizer fuzz targets' corpora (fuzz/corpus/chat_template: templates
//! and messages libFuzzer kept; fuzz/corpus/tokenizer: texts and token ids for both reference
//! tokenizers) replayed through the targets' own runs (fuzz/bodies): every template renders or
//! fails cleanly within its bounds, every text encodes, every id sequence decodes the same
//! streamed as whole.

#[path = "../../../fuzz/bodies/chat_template.rs"]
mod chat_template;
#[path = "../../../fuzz/bodies/replay.rs"]
mod replay;
#[path = "../../../fuzz/bodies/tokenizer.rs"]
mod tokenizer;

#[test]
fn chat_template_corpus() {
    replay::replay("chat_template", chat_template::run);
}

#[test]
fn tokenizer_corpus() {
    let dir = match std::env::var_os("KESTREL_MODELS") {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/kestrel/models")
        }
    };
    let skip = std::env::var("KESTREL_SKIP_MODEL_TESTS").as_deref() == Ok("1");
    if skip && !dir.join("gemma-3-270m-q4_k_m.gguf").exists() {
        eprintln!("skipping: the reference models are absent");
        return;
    }
    replay::replay("tokenizer", tokenizer::run);
}
