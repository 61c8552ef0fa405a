//! A vocabulary's fingerprint: FNV-1a (64 bit) over every token's text, each followed by a 0
//! byte, and the vocabulary size. Two tokenizers with the same fingerprint give every id the
//! same text, which is what a drafter and its verifier must share.

use kestrel_tokenizer::Tokenizer;

pub fn vocab_fingerprint(tok: &Tokenizer) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(PRIME);
        }
    };
    let n = tok.vocab_size();
    eat(&(n as u64).to_le_bytes());
    for id in 0..n as u32 {
        eat(tok.token_text(id).unwrap_or("").as_bytes());
        eat(&[0]);
    }
    format!("{h:016x}")
}
