//! Malformed tokenizer metadata gives an error naming the problem, never a panic.

use kestrel_gguf::{Array, GgufFile, GgufWriter, Value};
use kestrel_tokenizer::{ChatTemplate, Tokenizer, TokenizerError};

fn file(edit: impl FnOnce(&mut GgufWriter)) -> GgufFile {
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String("llama".into()));
    w.set("tokenizer.ggml.model", Value::String("gpt2".into()));
    w.set("tokenizer.ggml.pre", Value::String("smollm".into()));
    let toks = ["<|endoftext|>", "a", "b", "ab", "Ġ", "Ġab"];
    w.set(
        "tokenizer.ggml.tokens",
        Value::Array(Array::String(toks.iter().map(|s| s.to_string()).collect())),
    );
    w.set(
        "tokenizer.ggml.token_type",
        Value::Array(Array::I32(vec![3, 1, 1, 1, 1, 1])),
    );
    w.set(
        "tokenizer.ggml.merges",
        Value::Array(Array::String(vec!["a b".into(), "Ġ ab".into()])),
    );
    w.set("tokenizer.ggml.bos_token_id", Value::U32(0));
    w.set("tokenizer.ggml.eos_token_id", Value::U32(0));
    edit(&mut w);
    let mut buf = Vec::new();
    w.write_to(&mut buf).unwrap();
    GgufFile::from_bytes(buf).unwrap()
}

#[test]
fn good_file_works() {
    let g = file(|_| {});
    let t = Tokenizer::from_gguf(&g).unwrap();
    assert_eq!(t.encode("ab ab", false, false).unwrap(), vec![3, 5]);
    assert!(t.is_eog(0));
    // no template in the file, no markers in the vocab: chatml fallback
    assert_eq!(
        ChatTemplate::from_gguf(&g).unwrap().name(),
        "chatml (built-in)"
    );
}

#[test]
fn missing_tokens() {
    let g = file(|w| {
        w.remove("tokenizer.ggml.tokens");
    });
    let e = Tokenizer::from_gguf(&g).err().unwrap();
    assert!(matches!(e, TokenizerError::Missing(_)), "{e}");
    assert!(e.to_string().contains("tokenizer.ggml.tokens"));
}

#[test]
fn missing_model_and_merges() {
    let g = file(|w| {
        w.remove("tokenizer.ggml.model");
    });
    assert!(Tokenizer::from_gguf(&g).is_err());
    let g = file(|w| {
        w.remove("tokenizer.ggml.merges");
    });
    assert!(Tokenizer::from_gguf(&g)
        .err()
        .unwrap()
        .to_string()
        .contains("merges"));
}

#[test]
fn merges_without_space() {
    let g = file(|w| {
        w.set(
            "tokenizer.ggml.merges",
            Value::Array(Array::String(vec!["ab".into()])),
        )
    });
    assert!(Tokenizer::from_gguf(&g)
        .err()
        .unwrap()
        .to_string()
        .contains("no space"));
}

#[test]
fn unknown_model_and_pre() {
    let g = file(|w| w.set("tokenizer.ggml.model", Value::String("bert-ish".into())));
    let e = Tokenizer::from_gguf(&g).err().unwrap();
    assert!(
        matches!(e, TokenizerError::UnknownModel(ref m) if m == "bert-ish"),
        "{e}"
    );
    let g = file(|w| w.set("tokenizer.ggml.pre", Value::String("who-knows".into())));
    let e = Tokenizer::from_gguf(&g).err().unwrap();
    assert!(e.to_string().contains("who-knows"), "{e}");
}

#[test]
fn wrong_types_and_ranges() {
    let g = file(|w| w.set("tokenizer.ggml.tokens", Value::U32(3)));
    assert!(Tokenizer::from_gguf(&g).is_err());
    let g = file(|w| {
        w.set(
            "tokenizer.ggml.token_type",
            Value::Array(Array::I32(vec![1])),
        )
    });
    assert!(Tokenizer::from_gguf(&g).is_err());
    let g = file(|w| w.set("tokenizer.ggml.scores", Value::Array(Array::F32(vec![0.0]))));
    assert!(Tokenizer::from_gguf(&g).is_err());
    // out-of-range ids are ignored as llama.cpp does, not a crash
    let g = file(|w| w.set("tokenizer.ggml.eos_token_id", Value::U32(999)));
    let t = Tokenizer::from_gguf(&g).unwrap();
    assert_eq!(t.eos(), None);
    assert!(t.token_to_piece(12345, true).is_empty());
    assert_eq!(t.token_text(12345), None);
    assert_eq!(t.decode(&[12345, 1], false), "a");
    // add_bos without a bos id
    let g = file(|w| {
        w.remove("tokenizer.ggml.bos_token_id");
        w.set("tokenizer.ggml.add_bos_token", Value::Bool(true));
        w.set("tokenizer.ggml.model", Value::String("gpt2".into()));
    });
    // gpt2 default bos is 11, out of range here
    assert!(Tokenizer::from_gguf(&g).is_err());
}
