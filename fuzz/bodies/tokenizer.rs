//! The tokenizers of both reference models (SmolLM2's BPE, Gemma 3's SentencePiece) on
//! arbitrary input: the first byte picks the model and the mode; the rest is text to encode
//! (lossy UTF-8, special tokens parsed or not), or token ids to decode whole and streamed (the
//! streamed pieces must add up to the whole decode).
//!
//! One input's run, shared by the fuzz target (fuzz/fuzz_targets) and the replay of the
//! corpus in the workspace's tests.

use kestrel_tokenizer::{StreamDecoder, Tokenizer};
use std::sync::OnceLock;

fn load(file: &str) -> Tokenizer {
    let dir = std::env::var_os("KESTREL_MODELS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/kestrel/models")
        });
    let g = kestrel_gguf::GgufFile::open(dir.join(file))
        .unwrap_or_else(|e| panic!("{file}: {e} (run scripts/fetch-models.sh)"));
    Tokenizer::from_gguf(&g).expect("the reference tokenizer loads")
}

fn tokenizers() -> &'static [Tokenizer; 2] {
    static T: OnceLock<[Tokenizer; 2]> = OnceLock::new();
    T.get_or_init(|| {
        [
            load("SmolLM2-135M-Instruct.Q4_1.gguf"),
            load("gemma-3-270m-q4_k_m.gguf"),
        ]
    })
}

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let tok = &tokenizers()[(mode & 1) as usize];
    if mode & 2 == 0 {
        let text = String::from_utf8_lossy(rest);
        if let Ok(ids) = tok.encode(&text, mode & 4 != 0, mode & 8 != 0) {
            assert!(ids.iter().all(|&i| (i as usize) < tok.vocab_size()));
            let _ = tok.decode(&ids, false);
        }
        return;
    }
    // Ids anywhere in u32, out-of-vocabulary ones included.
    let ids: Vec<u32> = rest
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) % (tok.vocab_size() as u32 + 8))
        .collect();
    let special = mode & 4 != 0;
    let whole = tok.decode(&ids, special);
    let mut s = StreamDecoder::with_render_special(special);
    let mut streamed = String::new();
    for &id in &ids {
        if (id as usize) < tok.vocab_size() {
            streamed.push_str(&s.push(tok, id));
        }
        let _ = tok.token_to_piece(id, special);
    }
    streamed.push_str(&s.finish());
    if ids.iter().all(|&i| (i as usize) < tok.vocab_size()) {
        assert_eq!(
            streamed, whole,
            "streamed pieces differ from the whole decode"
        );
    }
}
