//! Byte-level BPE (tokenizer.ggml.model = "gpt2") as llama.cpp does it: regex pre-tokenizer
//! chosen by `tokenizer.ggml.pre`, GPT-2 byte-to-unicode encoding, merges by rank.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use fancy_regex::Regex;

use crate::TokenizerError;

const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// What a pre-tokenizer name means: its regexes, applied in turn (each splits the pieces the
/// previous one left, keeping unmatched text as pieces of its own), plus llama.cpp's flags.
pub(crate) struct PreSpec {
    pub regexes: Vec<&'static str>,
    pub ignore_merges: bool,
    /// llama.cpp turns add_bos on for these before reading tokenizer.ggml.add_bos_token.
    pub default_add_bos: bool,
}

pub(crate) fn pre_spec(pre: &str) -> Result<PreSpec, TokenizerError> {
    let spec = |regexes: Vec<&'static str>, ignore_merges: bool, default_add_bos: bool| PreSpec {
        regexes,
        ignore_merges,
        default_add_bos,
    };
    Ok(match pre {
        "" | "default" => spec(
            vec![r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"],
            false,
            false,
        ),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" => spec(vec![LLAMA3], true, true),
        "dbrx" | "smaug-bpe" | "glm4" | "chatglm-bpe" => spec(vec![LLAMA3], false, false),
        "gpt2" | "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
        | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert" | "mpt" | "olmo" | "jais"
        | "trillion" | "granite-docling" | "exaone4" | "jina-v1-en" | "jina-v2-code"
        | "roberta-bpe" => spec(vec![GPT2], false, false),
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b"
        | "mellum2" => spec(vec![r"\p{N}", GPT2], false, false),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" | "stablelm2" | "hunyuan"
        | "solar-open" => spec(vec![QWEN2], false, false),
        "qwen35" => spec(vec![QWEN35], false, false),
        "tekken" => spec(vec![TEKKEN], true, true),
        "falcon" => spec(
            vec![r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]"],
            false,
            false,
        ),
        other => return Err(TokenizerError::UnknownPre(other.to_string())),
    })
}

/// GPT-2's byte <-> unicode mapping.
pub(crate) struct ByteMap {
    pub byte_to_char: [char; 256],
    pub char_to_byte: HashMap<char, u8>,
}

impl ByteMap {
    pub fn new() -> ByteMap {
        let mut byte_to_char = ['\0'; 256];
        let mut assigned = [false; 256];
        for b in (0x21..=0x7Eu32).chain(0xA1..=0xAC).chain(0xAE..=0xFF) {
            byte_to_char[b as usize] = char::from_u32(b).unwrap();
            assigned[b as usize] = true;
        }
        let mut n = 0u32;
        for b in 0..256usize {
            if !assigned[b] {
                byte_to_char[b] = char::from_u32(256 + n).unwrap();
                n += 1;
            }
        }
        let char_to_byte = byte_to_char
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        ByteMap {
            byte_to_char,
            char_to_byte,
        }
    }
}

pub(crate) struct Bpe {
    regexes: Vec<Regex>,
    ignore_merges: bool,
    /// "left right" -> rank
    ranks: HashMap<String, u32>,
    bytes: ByteMap,
}

impl Bpe {
    pub fn new(spec: &PreSpec, merges: &[String]) -> Result<Bpe, TokenizerError> {
        let regexes = spec
            .regexes
            .iter()
            .map(|r| Regex::new(r).map_err(|e| TokenizerError::Regex(format!("{r}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let mut ranks = HashMap::with_capacity(merges.len());
        for (i, m) in merges.iter().enumerate() {
            // llama.cpp splits at the first space after the first byte.
            let pos = m.bytes().skip(1).position(|b| b == b' ');
            match pos {
                Some(_) => {
                    ranks.entry(m.clone()).or_insert(i as u32);
                }
                None => {
                    return Err(TokenizerError::Invalid(format!(
                        "tokenizer.ggml.merges[{i}] = {m:?} has no space separating the pair"
                    )))
                }
            }
        }
        Ok(Bpe {
            regexes,
            ignore_merges: spec.ignore_merges,
            ranks,
            bytes: ByteMap::new(),
        })
    }

    pub fn byte_map(&self) -> &ByteMap {
        &self.bytes
    }

    /// Split `text` into words (byte ranges) with the pre-tokenizer regexes.
    fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut pieces: Vec<(usize, usize)> = vec![(0, text.len())];
        if text.is_empty() {
            return Vec::new();
        }
        for re in &self.regexes {
            let mut next = Vec::with_capacity(pieces.len() * 2);
            for &(s, e) in &pieces {
                let sub = &text[s..e];
                let mut last = 0usize;
                let mut pos = 0usize;
                while pos <= sub.len() {
                    let m = match re.find_from_pos(sub, pos) {
                        Ok(Some(m)) => m,
                        // no match, or the backtracking limit: keep the rest whole
                        _ => break,
                    };
                    if m.start() == m.end() {
                        // empty match: step over one char
                        pos = m.end() + sub[m.end()..].chars().next().map_or(1, |c| c.len_utf8());
                        continue;
                    }
                    if m.start() > last {
                        next.push((s + last, s + m.start()));
                    }
                    next.push((s + m.start(), s + m.end()));
                    last = m.end();
                    pos = m.end();
                }
                if last < sub.len() {
                    next.push((s + last, e));
                }
            }
            pieces = next;
        }
        pieces.into_iter().map(|(s, e)| &text[s..e]).collect()
    }

    pub fn tokenize(&self, text: &str, vocab: &HashMap<String, u32>, out: &mut Vec<u32>) {
        let mut word = String::new();
        let mut key = String::new();
        let mut syms: Vec<Sym> = Vec::new();
        let mut heap: BinaryHeap<Reverse<(u32, usize, usize, usize)>> = BinaryHeap::new();
        for raw in self.split(text) {
            word.clear();
            for b in raw.bytes() {
                word.push(self.bytes.byte_to_char[b as usize]);
            }
            if self.ignore_merges {
                if let Some(&id) = vocab.get(word.as_str()) {
                    out.push(id);
                    continue;
                }
            }
            syms.clear();
            heap.clear();
            for (i, c) in word.char_indices() {
                syms.push(Sym {
                    start: i,
                    len: c.len_utf8(),
                    prev: syms.len() as isize - 1,
                    next: syms.len() as isize + 1,
                });
            }
            if let Some(last) = syms.last_mut() {
                last.next = -1;
            }
            let add =
                |l: isize, r: isize, syms: &[Sym], key: &mut String, heap: &mut BinaryHeap<_>| {
                    if l < 0 || r < 0 {
                        return;
                    }
                    let (ls, rs) = (&syms[l as usize], &syms[r as usize]);
                    key.clear();
                    key.push_str(&word[ls.start..ls.start + ls.len]);
                    key.push(' ');
                    key.push_str(&word[rs.start..rs.start + rs.len]);
                    if let Some(&rank) = self.ranks.get(key.as_str()) {
                        heap.push(Reverse((rank, l as usize, ls.len, rs.len)));
                    }
                };
            for i in 1..syms.len() {
                add(i as isize - 1, i as isize, &syms, &mut key, &mut heap);
            }
            while let Some(Reverse((_rank, l, llen, rlen))) = heap.pop() {
                let r = syms[l].next;
                if r < 0 {
                    continue;
                }
                let r = r as usize;
                if syms[l].len != llen
                    || syms[l].len == 0
                    || syms[r].len != rlen
                    || syms[r].len == 0
                {
                    continue;
                }
                syms[l].len += syms[r].len;
                syms[r].len = 0;
                let rn = syms[r].next;
                syms[l].next = rn;
                if rn >= 0 {
                    syms[rn as usize].prev = l as isize;
                }
                let lp = syms[l].prev;
                add(lp, l as isize, &syms, &mut key, &mut heap);
                add(l as isize, rn, &syms, &mut key, &mut heap);
            }
            let mut i: isize = if syms.is_empty() { -1 } else { 0 };
            while i >= 0 {
                let s = &syms[i as usize];
                let piece = &word[s.start..s.start + s.len];
                match vocab.get(piece) {
                    Some(&id) => out.push(id),
                    None => {
                        // llama.cpp: look each byte of the (encoded) piece up as a 1-byte token
                        for b in piece.bytes() {
                            let one = [b];
                            if let Ok(s1) = std::str::from_utf8(&one) {
                                if let Some(&id) = vocab.get(s1) {
                                    out.push(id);
                                }
                            }
                        }
                    }
                }
                i = s.next;
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Sym {
    start: usize,
    len: usize,
    prev: isize,
    next: isize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_roundtrip() {
        let m = ByteMap::new();
        assert_eq!(m.byte_to_char[b' ' as usize], 'Ġ');
        assert_eq!(m.byte_to_char[b'\n' as usize], 'Ċ');
        for b in 0..256usize {
            assert_eq!(m.char_to_byte[&m.byte_to_char[b]] as usize, b);
        }
    }

    #[test]
    fn smollm_split() {
        let spec = pre_spec("smollm").unwrap();
        let bpe = Bpe::new(&spec, &[]).unwrap();
        let w = bpe.split("Numbers: 0 42  x\n\ty");
        assert_eq!(
            w,
            vec!["Numbers", ":", " ", "0", " ", "4", "2", " ", " x", "\n", "\t", "y"]
        );
    }

    #[test]
    fn simple_merges() {
        let spec = pre_spec("gpt2").unwrap();
        let merges: Vec<String> = vec!["a b".into(), "ab c".into(), "Ġ abc".into()];
        let bpe = Bpe::new(&spec, &merges).unwrap();
        let vocab: HashMap<String, u32> = [
            ("a", 0),
            ("b", 1),
            ("c", 2),
            ("ab", 3),
            ("abc", 4),
            ("Ġ", 5),
            ("Ġabc", 6),
        ]
        .into_iter()
        .map(|(s, i)| (s.to_string(), i))
        .collect();
        let mut out = vec![];
        bpe.tokenize("abc abc", &vocab, &mut out);
        assert_eq!(out, vec![4, 6]);
    }

    #[test]
    fn bad_merge_is_error() {
        let spec = pre_spec("gpt2").unwrap();
        assert!(Bpe::new(&spec, &["nospace".to_string()]).is_err());
        assert!(matches!(
            pre_spec("nope"),
            Err(TokenizerError::UnknownPre(_))
        ));
    }
}
