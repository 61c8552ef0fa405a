//! Golden tests against llama.cpp's token ids for the two reference models.

use std::path::PathBuf;

use kestrel_gguf::GgufFile;
use kestrel_tokenizer::{ChatMessage, ChatTemplate, StreamDecoder, Tokenizer};
use serde_json::Value;

const SMOL: (&str, &str) = (
    "SmolLM2-135M-Instruct.Q4_1.gguf",
    "smollm2-135m-instruct-q4_1",
);
const GEMMA: (&str, &str) = ("gemma-3-270m-q4_k_m.gguf", "gemma3-270m-q4_k_m");

fn models_dir() -> PathBuf {
    if let Ok(d) = std::env::var("KESTREL_MODELS") {
        return PathBuf::from(d);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    PathBuf::from(home).join(".cache/kestrel/models")
}

fn golden_dir() -> PathBuf {
    if let Ok(d) = std::env::var("KESTREL_GOLDEN") {
        return PathBuf::from(d);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let local = manifest.join("../../shared/golden");
    if local.exists() {
        return local;
    }
    PathBuf::from("/work/shared/golden")
}

fn skip() -> bool {
    std::env::var("KESTREL_SKIP_MODEL_TESTS").is_ok_and(|v| v == "1")
}

/// Load the model's tokenizer, or None when model tests are skipped. Panics (fails the test)
/// when the file is absent.
fn load(model: (&str, &str)) -> Option<(Tokenizer, GgufFile, Value, Value)> {
    if skip() {
        return None;
    }
    let path = models_dir().join(model.0);
    if !path.exists() {
        panic!(
            "model file {} not found: run scripts/fetch-models.sh first (or set KESTREL_MODELS, \
             or KESTREL_SKIP_MODEL_TESTS=1 to skip)",
            path.display()
        );
    }
    let g = GgufFile::open(&path).expect("open gguf");
    let tok = Tokenizer::from_gguf(&g).expect("tokenizer from gguf");
    let read = |f: &str| -> Value {
        let p = golden_dir().join(model.1).join(f);
        let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        serde_json::from_str(&s).unwrap()
    };
    Some((tok, g, read("tokenize.json"), read("logits.json")))
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn check_model(model: (&str, &str)) {
    let Some((tok, _g, tokenize, logits)) = load(model) else {
        return;
    };
    let mut failures = Vec::new();
    let mut n = 0;
    let mut cases: Vec<(String, bool, bool, Vec<u32>)> = Vec::new();
    for c in tokenize["cases"].as_array().unwrap() {
        cases.push((
            c["text"].as_str().unwrap().to_string(),
            c["add_special"].as_bool().unwrap(),
            c["parse_special"].as_bool().unwrap(),
            ids(&c["ids"]),
        ));
    }
    for c in logits["cases"].as_array().unwrap() {
        cases.push((
            c["prompt"].as_str().unwrap().to_string(),
            c["add_special"].as_bool().unwrap(),
            c["parse_special"].as_bool().unwrap(),
            ids(&c["ids"]),
        ));
    }
    for (text, add, parse, want) in &cases {
        n += 1;
        let got = tok.encode(text, *add, *parse).unwrap();
        if &got != want {
            failures.push(format!(
                "{text:?} add={add} parse={parse}\n   want {want:?}\n    got {got:?}"
            ));
            continue;
        }
        // round trip for plain text
        if !*parse {
            let back = tok.decode(&got, false);
            if &back != text {
                failures.push(format!("round trip of {text:?} gave {back:?}"));
            }
        }
    }
    for c in logits["cases"].as_array().unwrap() {
        let g = &c["greedy"];
        let gids = ids(&g["ids"]);
        let want = g["text"].as_str().unwrap();
        let got = tok.decode(&gids, false);
        if got != want {
            failures.push(format!("decode greedy: want {want:?}\n got {got:?}"));
        }
        let mut sd = StreamDecoder::new();
        let mut acc = String::new();
        for &id in &gids {
            acc.push_str(&sd.push(&tok, id));
        }
        acc.push_str(&sd.finish());
        if acc != want {
            failures.push(format!("stream greedy: want {want:?}\n got {acc:?}"));
        }
    }
    let bad = failures.iter().filter(|f| f.contains("   want ")).count();
    eprintln!("{}: {}/{} tokenize cases pass", model.1, n - bad, n);
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn smollm2_golden() {
    check_model(SMOL);
}

#[test]
fn gemma3_golden() {
    check_model(GEMMA);
}

#[test]
fn smollm2_metadata() {
    let Some((tok, g, _, logits)) = load(SMOL) else {
        return;
    };
    assert_eq!(tok.model_kind(), "gpt2");
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(
        (tok.bos(), tok.eos(), tok.add_bos()),
        (Some(1), Some(2), false)
    );
    assert!(tok.is_eog(2) && tok.is_eog(0) && !tok.is_eog(1));
    assert_eq!(tok.token_text(1), Some("<|im_start|>"));
    assert!(tok.token_to_piece(2, false).is_empty());
    assert_eq!(tok.token_to_piece(2, true), b"<|im_end|>");
    // chat template reproduces the chat prompt of the golden
    let t = ChatTemplate::from_gguf(&g).unwrap();
    assert_eq!(t.name(), "gguf");
    let last = logits["cases"].as_array().unwrap().last().unwrap();
    let prompt = last["prompt"].as_str().unwrap();
    let q = prompt
        .split("<|im_start|>user\n")
        .nth(1)
        .unwrap()
        .split("<|im_end|>")
        .next()
        .unwrap();
    let msgs = [
        ChatMessage::new(
            "system",
            "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
        ),
        ChatMessage::new("user", q),
    ];
    assert_eq!(t.render(&msgs, true).unwrap(), prompt);
}

#[test]
fn gemma3_metadata() {
    let Some((tok, g, _, _)) = load(GEMMA) else {
        return;
    };
    assert_eq!(tok.model_kind(), "llama");
    assert_eq!(tok.vocab_size(), 262144);
    assert_eq!(
        (tok.bos(), tok.eos(), tok.add_bos()),
        (Some(2), Some(1), true)
    );
    assert!(tok.is_eog(1) && tok.is_eog(106) && !tok.is_eog(105));
    let t = ChatTemplate::from_gguf(&g).unwrap();
    assert_eq!(t.name(), "gemma (built-in)");
    let s = t
        .render(
            &[
                ChatMessage::new("user", "Hi there"),
                ChatMessage::new("assistant", "Hello!"),
                ChatMessage::new("user", "Bye"),
            ],
            true,
        )
        .unwrap();
    assert_eq!(
        s,
        "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n\
         <start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
    );
    // the rendered prompt tokenizes to the turn markers
    let ids = tok.encode(&s, true, true).unwrap();
    assert_eq!(&ids[..3], &[2, 105, 2364]);
}

#[test]
fn stream_emoji_split_over_byte_tokens() {
    let Some((tok, _, _, _)) = load(GEMMA) else {
        return;
    };
    // an emoji with no vocab token of its own comes out as <0xXX> byte tokens
    let text = "🫠🦩x";
    let ids = tok.encode(text, false, false).unwrap();
    let n_bytes = ids
        .iter()
        .filter(|&&i| tok.token_text(i).is_some_and(|t| t.starts_with("<0x")))
        .count();
    assert!(n_bytes >= 4, "expected byte-fallback tokens in {ids:?}");
    let mut sd = StreamDecoder::new();
    let mut chunks = Vec::new();
    for &id in &ids {
        chunks.push(sd.push(&tok, id));
    }
    chunks.push(sd.finish());
    assert_eq!(chunks.concat(), text);
    for c in &chunks {
        assert!(c.chars().all(|ch| ch != '\u{FFFD}'), "chunk {c:?}");
    }
    // byte tokens by hand: F0 9F 99 82 (🙂)
    let bt: Vec<u32> = ["<0xF0>", "<0x9F>", "<0x99>", "<0x82>"]
        .iter()
        .map(|t| tok.token_id(t).unwrap())
        .collect();
    let mut sd = StreamDecoder::new();
    let outs: Vec<String> = bt.iter().map(|&id| sd.push(&tok, id)).collect();
    assert_eq!(outs, vec!["", "", "", "🙂"]);
    assert_eq!(sd.finish(), "");
    let mut sd = StreamDecoder::new();
    sd.push(&tok, bt[0]);
    assert_eq!(sd.finish(), "\u{FFFD}");
}
