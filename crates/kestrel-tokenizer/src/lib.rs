//! Tokenizers built from GGUF metadata that reproduce llama.cpp's token ids: byte-level BPE
//! (`tokenizer.ggml.model = "gpt2"`) and SentencePiece-style (`"llama"`), a streaming
//! detokenizer, and chat templates.

mod bpe;
mod chat;
mod error;
mod gguf;
mod isolate;
mod spm;
mod stream;
mod template_fns;

use std::collections::HashMap;

pub use chat::{ChatMessage, ChatTemplate};
pub use error::TokenizerError;
pub use stream::StreamDecoder;

/// llama.cpp token attributes (bit flags).
pub mod attr {
    pub const UNDEFINED: u32 = 0;
    pub const UNKNOWN: u32 = 1 << 0;
    pub const UNUSED: u32 = 1 << 1;
    pub const NORMAL: u32 = 1 << 2;
    pub const CONTROL: u32 = 1 << 3;
    pub const USER_DEFINED: u32 = 1 << 4;
    pub const BYTE: u32 = 1 << 5;
    pub const LSTRIP: u32 = 1 << 7;
    pub const RSTRIP: u32 = 1 << 8;
}

/// Everything the tokenizer reads from GGUF metadata, as plain data. `Tokenizer::from_gguf`
/// fills it from `tokenizer.ggml.*`; tests and tools can build one by hand.
#[derive(Debug, Clone, Default)]
pub struct TokenizerConfig {
    /// tokenizer.ggml.model: "gpt2" or "llama".
    pub model: String,
    /// tokenizer.ggml.pre (BPE only); None means llama.cpp's "default".
    pub pre: Option<String>,
    /// tokenizer.ggml.tokens
    pub tokens: Vec<String>,
    /// tokenizer.ggml.scores
    pub scores: Option<Vec<f32>>,
    /// tokenizer.ggml.token_type (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte)
    pub token_types: Option<Vec<i32>>,
    /// tokenizer.ggml.merges ("left right")
    pub merges: Option<Vec<String>>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    pub pad: Option<u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub add_space_prefix: Option<bool>,
    /// general.name (llama.cpp sets per-token strip attributes for some model names)
    pub model_name: Option<String>,
}

enum Kind {
    Bpe(bpe::Bpe),
    Spm {
        byte_tokens: Box<[Option<u32>; 256]>,
    },
}

/// An immutable tokenizer. `Send + Sync`; share it behind an `Arc`.
pub struct Tokenizer {
    model: String,
    kind: Kind,
    tokens: Vec<String>,
    token_to_id: HashMap<String, u32>,
    scores: Vec<f32>,
    attrs: Vec<u32>,
    /// token_to_piece with render_special = true, per id
    pieces: Vec<Vec<u8>>,
    /// ids of control / user-defined / unknown tokens, longest text first
    special: Vec<u32>,
    special_trie: Trie,
    eog: Vec<u32>,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
}

fn check_id(id: Option<u32>, n: usize) -> Option<u32> {
    id.filter(|&i| (i as usize) < n)
}

impl Tokenizer {
    /// Build from GGUF metadata (`tokenizer.ggml.*`).
    pub fn from_gguf(g: &kestrel_gguf::GgufFile) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::from_config(gguf::read_config(g)?)
    }

    /// Build from plain metadata.
    pub fn from_config(cfg: TokenizerConfig) -> Result<Tokenizer, TokenizerError> {
        let n = cfg.tokens.len();
        if n == 0 {
            return Err(TokenizerError::Missing(
                "tokenizer.ggml.tokens (empty or absent)".into(),
            ));
        }
        // llama.cpp defaults by model type; metadata overrides below.
        let (kind_is_bpe, mut bos, mut eos, mut unk, mut add_bos, mut add_space_prefix, pre_spec) =
            match cfg.model.as_str() {
                "llama" => (false, Some(1), Some(2), Some(0), true, true, None),
                "gpt2" => {
                    let spec = bpe::pre_spec(cfg.pre.as_deref().unwrap_or("default"))?;
                    let ab = spec.default_add_bos;
                    (true, Some(11), Some(11), None, ab, false, Some(spec))
                }
                other => return Err(TokenizerError::UnknownModel(other.to_string())),
            };
        if let Some(v) = cfg.add_space_prefix {
            add_space_prefix = v;
        }
        if let Some(s) = &cfg.scores {
            if s.len() < n {
                return Err(TokenizerError::Invalid(format!(
                    "tokenizer.ggml.scores has {} entries for {n} tokens",
                    s.len()
                )));
            }
        }
        if let Some(t) = &cfg.token_types {
            if t.len() < n {
                return Err(TokenizerError::Invalid(format!(
                    "tokenizer.ggml.token_type has {} entries for {n} tokens",
                    t.len()
                )));
            }
        }
        let mut tokens = cfg.tokens;
        let mut token_to_id = HashMap::with_capacity(n);
        for (i, t) in tokens.iter_mut().enumerate() {
            if t.is_empty() {
                *t = format!("[EMPTY_{i}]");
            }
            token_to_id.entry(t.clone()).or_insert(i as u32);
        }
        let scores = cfg.scores.unwrap_or_else(|| vec![0.0; n]);
        let mut attrs: Vec<u32> = match &cfg.token_types {
            None => vec![attr::NORMAL; n],
            Some(tt) => tt[..n]
                .iter()
                .map(|&t| match t {
                    1 => attr::NORMAL,
                    2 => attr::UNKNOWN,
                    3 => attr::CONTROL,
                    4 => attr::USER_DEFINED,
                    5 => attr::UNUSED,
                    6 => attr::BYTE,
                    _ => attr::UNDEFINED,
                })
                .collect(),
        };

        bos = check_id(bos, n);
        eos = check_id(eos, n);
        unk = check_id(unk, n);
        let pick = |meta: Option<u32>, default: Option<u32>| match meta {
            Some(i) if (i as usize) < n => Some(i),
            _ => default,
        };
        bos = pick(cfg.bos, bos);
        eos = pick(cfg.eos, eos);
        unk = pick(cfg.unk, unk);
        let mut eot = pick(cfg.eot, None);
        let eom = pick(cfg.eom, None);
        if let Some(v) = cfg.add_bos {
            add_bos = v;
        }
        let add_eos = cfg.add_eos.unwrap_or(false);
        if add_bos && bos.is_none() {
            return Err(TokenizerError::Invalid(
                "add_bos_token is true, but bos_token_id is not set".into(),
            ));
        }
        if add_eos && eos.is_none() {
            return Err(TokenizerError::Invalid(
                "add_eos_token is true, but eos_token_id is not set".into(),
            ));
        }

        // llama.cpp: find EOT / EOG tokens by their text; force them to CONTROL.
        const EOT_TEXTS: &[&str] = &[
            "<|eot_id|>",
            "<|im_end|>",
            "<|end|>",
            "<end_of_turn>",
            "<|endoftext|>",
            "<|end_of_text|>",
            "<EOT>",
            "_<EOT>",
            "[EOT]",
            "<｜end▁of▁sentence｜>",
            "<end_of_utterance>",
        ];
        const EOG_TEXTS: &[&str] = &[
            "<|eot_id|>",
            "<|im_end|>",
            "<|end|>",
            "<|return|>",
            "<|call|>",
            "<|flush|>",
            "<|calls|>",
            "<end_of_turn>",
            "<|endoftext|>",
            "</s>",
            "<|eom_id|>",
            "<EOT>",
            "_<EOT>",
            "[EOT]",
            "[EOS]",
            "<|end_of_text|>",
            "<end_of_utterance>",
            "<eos>",
            "<turn|>",
            "<|tool_response>",
            "<｜end▁of▁sentence｜>",
            "[e~[",
        ];
        const FIM_EOG_TEXTS: &[&[&str]] = &[
            &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
            &[
                "<|fim_repo|>",
                "<|repo_name|>",
                "<fim-repo>",
                "<REPO>",
                "<reponame>",
            ],
            &["<|file_sep|>"],
        ];
        let find_first = |texts: &[&str]| -> Option<u32> {
            // llama.cpp iterates its (unordered) map; take the lowest id for determinism
            texts
                .iter()
                .filter_map(|t| token_to_id.get(*t).copied())
                .min()
        };
        if eot.is_none() {
            eot = find_first(EOT_TEXTS);
        }
        let mut eog: Vec<u32> = Vec::new();
        for set in FIM_EOG_TEXTS {
            if let Some(id) = find_first(set) {
                attrs[id as usize] |= attr::CONTROL;
                eog.push(id);
            }
        }
        if let Some(id) = eot {
            attrs[id as usize] |= attr::CONTROL;
        }
        if let Some(id) = eom.or_else(|| token_to_id.get("<|eom_id|>").copied()) {
            attrs[id as usize] |= attr::CONTROL;
            eog.push(id);
        }
        for t in EOG_TEXTS {
            if let Some(&id) = token_to_id.get(*t) {
                attrs[id as usize] |= attr::CONTROL;
                eog.push(id);
            }
        }
        for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(&id) = token_to_id.get(t) {
                attrs[id as usize] = attr::USER_DEFINED;
            }
        }
        for (i, t) in tokens.iter().enumerate() {
            if attrs[i] & attr::CONTROL != 0 && t.contains("unused") {
                attrs[i] |= attr::UNUSED;
            }
        }
        eog.extend(eos);
        eog.extend(eot);
        let has = |eog: &[u32], t: &str| eog.iter().any(|&i| tokens[i as usize] == t);
        if (has(&eog, "<|return|>") && has(&eog, "<|call|>") && has(&eog, "<|end|>"))
            || (has(&eog, "<|calls|>") && has(&eog, "<|flush|>") && has(&eog, "<|end|>"))
        {
            if let Some(&end) = token_to_id.get("<|end|>") {
                eog.retain(|&i| i != end);
                attrs[end as usize] = attr::USER_DEFINED;
            }
        }
        if has(&eog, "<|tool_response>") && has(&eog, "</s>") {
            if let Some(&s) = token_to_id.get("</s>") {
                eog.retain(|&i| i != s);
                attrs[s as usize] = attr::NORMAL;
            }
        }
        eog.sort_unstable();
        eog.dedup();

        // special-token cache: control / user-defined / unknown, longest first
        let mut special: Vec<u32> = (0..n as u32)
            .filter(|&i| {
                attrs[i as usize] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0
            })
            .collect();
        special.sort_by(|&a, &b| {
            tokens[b as usize]
                .len()
                .cmp(&tokens[a as usize].len())
                .then(a.cmp(&b))
        });
        if let Some(name) = &cfg.model_name {
            let name = name.to_lowercase();
            if name.contains("phi-3") || name.contains("phi3") {
                for &id in &special {
                    attrs[id as usize] |= attr::RSTRIP;
                }
                if let Some(&id) = token_to_id.get("</s>") {
                    attrs[id as usize] |= attr::RSTRIP;
                }
                for t in ["<unk>", "<s>", "<|endoftext|>"] {
                    if let Some(&id) = token_to_id.get(t) {
                        attrs[id as usize] &= !attr::RSTRIP;
                    }
                }
            }
        }
        let mut special_trie = Trie::default();
        for &id in &special {
            special_trie.insert(tokens[id as usize].as_bytes(), id);
        }

        let kind = if kind_is_bpe {
            let merges = cfg
                .merges
                .as_deref()
                .ok_or_else(|| TokenizerError::Missing("tokenizer.ggml.merges".into()))?;
            Kind::Bpe(bpe::Bpe::new(pre_spec.as_ref().unwrap(), merges)?)
        } else {
            let mut bt = Box::new([None; 256]);
            for b in 0..256usize {
                let hex = format!("<0x{b:02X}>");
                bt[b] = token_to_id.get(&hex).copied().or_else(|| {
                    std::str::from_utf8(&[b as u8])
                        .ok()
                        .and_then(|s| token_to_id.get(s).copied())
                });
            }
            Kind::Spm { byte_tokens: bt }
        };

        let mut tok = Tokenizer {
            model: cfg.model,
            kind,
            tokens,
            token_to_id,
            scores,
            attrs,
            pieces: Vec::new(),
            special,
            special_trie,
            eog,
            bos,
            eos,
            unk,
            add_bos,
            add_eos,
            add_space_prefix,
        };
        tok.pieces = (0..n as u32).map(|i| tok.compute_piece(i)).collect();
        Ok(tok)
    }

    fn compute_piece(&self, id: u32) -> Vec<u8> {
        let a = self.attrs[id as usize];
        let text = &self.tokens[id as usize];
        if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
            return text.as_bytes().to_vec();
        }
        if a & attr::NORMAL != 0 {
            return match &self.kind {
                Kind::Spm { .. } => text.replace('\u{2581}', " ").into_bytes(),
                Kind::Bpe(b) => {
                    let map = &b.byte_map().char_to_byte;
                    let mut out = Vec::with_capacity(text.len());
                    for c in text.chars() {
                        match map.get(&c) {
                            Some(&byte) => out.push(byte),
                            None => {
                                // llama.cpp writes a marker for characters outside the byte map
                                out.extend_from_slice(b"[UNK_BYTE_0x");
                                let mut buf = [0u8; 4];
                                for x in c.encode_utf8(&mut buf).bytes() {
                                    out.extend_from_slice(format!("{x:02x}").as_bytes());
                                }
                                out.extend_from_slice(text.as_bytes());
                                out.push(b']');
                            }
                        }
                    }
                    out
                }
            };
        }
        if a & attr::BYTE != 0 {
            if let Some(hex) = text.strip_prefix("<0x").and_then(|s| s.get(..2)) {
                if let Ok(b) = u8::from_str_radix(hex, 16) {
                    return vec![b];
                }
            }
        }
        Vec::new()
    }

    /// Encode text. `add_special`: add BOS (and EOS) when the metadata asks for it.
    /// `parse_special`: text of control tokens (`<|im_start|>`) becomes those tokens;
    /// user-defined tokens are always matched, as llama.cpp does.
    pub fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let frags = if text.is_empty() {
            Vec::new()
        } else {
            self.partition(text, parse_special)
        };
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        match &self.kind {
            Kind::Bpe(bpe) => {
                for f in frags {
                    match f {
                        Frag::Text(s, e) => bpe.tokenize(&text[s..e], &self.token_to_id, &mut out),
                        Frag::Token(id) => out.push(id),
                    }
                }
            }
            Kind::Spm { byte_tokens } => {
                let mut prev_special = true;
                let mut buf = String::new();
                for f in frags {
                    match f {
                        Frag::Text(s, e) => {
                            buf.clear();
                            if self.add_space_prefix && prev_special {
                                buf.push('\u{2581}');
                            }
                            for c in text[s..e].chars() {
                                buf.push(if c == ' ' { '\u{2581}' } else { c });
                            }
                            spm::tokenize(
                                &buf,
                                &self.token_to_id,
                                &self.scores,
                                byte_tokens,
                                self.unk,
                                &mut out,
                            );
                            prev_special = false;
                        }
                        Frag::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        Ok(out)
    }

    /// llama.cpp's tokenizer_st_partition: for each special token, longest first, split every
    /// remaining text fragment at its occurrences.
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Frag> {
        let present = self.special_trie.occurring(text.as_bytes());
        let mut frags = vec![Frag::Text(0, text.len())];
        if present.is_empty() {
            return frags;
        }
        let bytes = text.as_bytes();
        for &id in &self.special {
            if !present.contains(&id) {
                continue;
            }
            let a = self.attrs[id as usize];
            if !parse_special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
                continue;
            }
            let pat = self.tokens[id as usize].as_str();
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                let (mut s, e) = match f {
                    Frag::Text(s, e) => (s, e),
                    tok => {
                        next.push(tok);
                        continue;
                    }
                };
                while s < e {
                    let Some(m) = text[s..e].find(pat).map(|p| p + s) else {
                        next.push(Frag::Text(s, e));
                        break;
                    };
                    let mut left_end = m;
                    if a & attr::LSTRIP != 0 {
                        while left_end > s && bytes[left_end - 1].is_ascii_whitespace_c() {
                            left_end -= 1;
                        }
                    }
                    if left_end > s {
                        next.push(Frag::Text(s, left_end));
                    }
                    next.push(Frag::Token(id));
                    s = m + pat.len();
                    if a & attr::RSTRIP != 0 {
                        while s < e && bytes[s].is_ascii_whitespace_c() {
                            s += 1;
                        }
                    }
                }
            }
            frags = next;
        }
        frags
    }

    /// The bytes a token stands for. Control and unknown tokens are empty unless
    /// `render_special`.
    pub fn token_to_piece(&self, id: u32, render_special: bool) -> &[u8] {
        let Some(a) = self.attrs.get(id as usize) else {
            return &[];
        };
        if !render_special && a & (attr::UNKNOWN | attr::CONTROL) != 0 {
            return &[];
        }
        &self.pieces[id as usize]
    }

    /// Concatenate the pieces of `ids` (as llama_detokenize without clean-up), then convert to
    /// UTF-8 lossily.
    pub fn decode(&self, ids: &[u32], render_special: bool) -> String {
        let mut out = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            let p = self.token_to_piece(id, render_special);
            if i == 0 && self.add_space_prefix && p.first() == Some(&b' ') {
                out.extend_from_slice(&p[1..]);
            } else {
                out.extend_from_slice(p);
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }
    /// End of generation: eos, eot, and tokens such as `<|im_end|>` or `<end_of_turn>`.
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }
    /// All end-of-generation ids, sorted.
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }
    /// The vocab text of a token.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(|s| s.as_str())
    }
    /// The id of a token by its exact vocab text.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }
    /// llama.cpp token attribute bits (see [`attr`]).
    pub fn token_attr(&self, id: u32) -> u32 {
        self.attrs.get(id as usize).copied().unwrap_or(0)
    }
    /// "gpt2" or "llama".
    pub fn model_kind(&self) -> &str {
        &self.model
    }
}

#[derive(Clone, Copy, Debug)]
enum Frag {
    Text(usize, usize),
    Token(u32),
}

trait CSpace {
    fn is_ascii_whitespace_c(&self) -> bool;
}
impl CSpace for u8 {
    // C isspace: space, \t, \n, \v, \f, \r
    fn is_ascii_whitespace_c(&self) -> bool {
        matches!(*self, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
    }
}

/// Byte trie over special-token texts, to find which of them occur in a text in one pass.
#[derive(Default)]
struct Trie {
    nodes: Vec<TrieNode>,
}

#[derive(Default)]
struct TrieNode {
    children: Vec<(u8, u32)>,
    value: Option<u32>,
}

impl Trie {
    fn insert(&mut self, key: &[u8], id: u32) {
        if self.nodes.is_empty() {
            self.nodes.push(TrieNode::default());
        }
        let mut cur = 0usize;
        for &b in key {
            let found = self.nodes[cur]
                .children
                .iter()
                .find(|c| c.0 == b)
                .map(|c| c.1 as usize);
            cur = match found {
                Some(n) => n,
                None => {
                    self.nodes.push(TrieNode::default());
                    let n = self.nodes.len() - 1;
                    self.nodes[cur].children.push((b, n as u32));
                    n
                }
            };
        }
        if self.nodes[cur].value.is_none() {
            self.nodes[cur].value = Some(id);
        }
    }

    fn occurring(&self, text: &[u8]) -> std::collections::HashSet<u32> {
        let mut found = std::collections::HashSet::new();
        if self.nodes.is_empty() {
            return found;
        }
        for start in 0..text.len() {
            let mut cur = 0usize;
            for &b in &text[start..] {
                match self.nodes[cur].children.iter().find(|c| c.0 == b) {
                    Some(c) => cur = c.1 as usize,
                    None => break,
                }
                if let Some(id) = self.nodes[cur].value {
                    found.insert(id);
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_bpe() -> TokenizerConfig {
        let tokens: Vec<String> = [
            "<|endoftext|>",
            "<|im_start|>",
            "<|im_end|>",
            "h",
            "i",
            "hi",
            "Ġ",
            "Ġhi",
            "<",
            "|",
            "Ċ",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut tt = vec![1; tokens.len()];
        tt[0] = 3;
        tt[1] = 3;
        tt[2] = 3;
        TokenizerConfig {
            model: "gpt2".into(),
            pre: Some("gpt2".into()),
            tokens,
            token_types: Some(tt),
            merges: Some(vec!["h i".into(), "Ġ hi".into()]),
            bos: Some(1),
            eos: Some(2),
            add_bos: Some(false),
            ..Default::default()
        }
    }

    #[test]
    fn special_parsing_and_eog() {
        let t = Tokenizer::from_config(tiny_bpe()).unwrap();
        assert_eq!(
            t.encode("<|im_start|>hi hi<|im_end|>", false, true)
                .unwrap(),
            vec![1, 5, 7, 2]
        );
        assert!(t.is_eog(2) && t.is_eog(0) && !t.is_eog(1));
        assert_eq!(t.decode(&[1, 5, 7, 2], false), "hi hi");
        assert_eq!(t.decode(&[1, 5, 7, 2], true), "<|im_start|>hi hi<|im_end|>");
    }

    #[test]
    fn bad_metadata_is_error() {
        let mut c = tiny_bpe();
        c.tokens.clear();
        assert!(matches!(
            Tokenizer::from_config(c),
            Err(TokenizerError::Missing(_))
        ));
        let mut c = tiny_bpe();
        c.merges = Some(vec!["hi".into()]);
        assert!(Tokenizer::from_config(c).is_err());
        let mut c = tiny_bpe();
        c.merges = None;
        assert!(Tokenizer::from_config(c).is_err());
        let mut c = tiny_bpe();
        c.model = "wordpiece9".into();
        let e = Tokenizer::from_config(c).err().unwrap();
        assert!(e.to_string().contains("wordpiece9"));
        let mut c = tiny_bpe();
        c.pre = Some("mystery-pre".into());
        let e = Tokenizer::from_config(c).err().unwrap();
        assert!(e.to_string().contains("mystery-pre"));
        let mut c = tiny_bpe();
        c.token_types = Some(vec![1]);
        assert!(Tokenizer::from_config(c).is_err());
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<Tokenizer>();
    f::<StreamDecoder>();
}
