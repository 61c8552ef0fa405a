//! A vocabulary's fingerprint: FNV-1a (64 bit) over every token's text, each followed by a 0
//! byte, and the vocabulary size. Two tokenizers with the same fingerprint give every id the
//! same text, which is what a drafter and its verifier must share.

use kestrel_gguf::fingerprint::Fnv1a;
use kestrel_tokenizer::Tokenizer;

pub fn vocab_fingerprint(tok: &Tokenizer) -> String {
    let mut h = Fnv1a::new();
    let n = tok.vocab_size();
    h.write(&(n as u64).to_le_bytes());
    for id in 0..n as u32 {
        h.write(tok.token_text(id).unwrap_or("").as_bytes());
        h.write(&[0]);
    }
    format!("{:016x}", h.finish())
}
