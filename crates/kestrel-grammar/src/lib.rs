//! Constrained output: a JSON schema, any JSON object, a regular expression or a Lark grammar,
//! enforced at every sampling step with a token mask computed by llguidance (its Earley parser
//! over the model's own vocabulary, as mistral.rs and llama.cpp use it). [`Grammars`] is built
//! once per tokenizer; each generation gets a fresh [`Grammars::constraint`], an
//! `kestrel_engine::decoding::Constraint` the engine's sampling step applies, so constraints work
//! wherever that step runs (`kestrel run`, speculative decoding: a draft token holds only if
//! the constrained step draws it).

use kestrel_engine::decoding::{Constraint, ConstraintSpec};
use kestrel_tokenizer::{attr, Tokenizer};
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum GrammarError {
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
    #[error("the tokenizer cannot be used for constrained output: {0}")]
    Tokenizer(String),
}

/// What the output must match.
#[derive(Clone, Debug)]
pub enum Spec {
    /// A JSON schema (draft 2020-12 as llguidance reads it).
    JsonSchema(serde_json::Value),
    /// Any JSON object (OpenAI's `json_object`).
    JsonObject,
    /// A regular expression the whole output matches.
    Regex(String),
    /// A Lark grammar (llguidance's dialect: `start: ...`, `%json {...}` and regex terminals).
    Lark(String),
}

impl Spec {
    fn grammar(&self) -> TopLevelGrammar {
        match self {
            Spec::JsonSchema(v) => TopLevelGrammar::from_json_schema(compact(v.clone())),
            Spec::JsonObject => {
                TopLevelGrammar::from_json_schema(compact(serde_json::json!({"type": "object"})))
            }
            Spec::Regex(r) => TopLevelGrammar::from_regex(r),
            Spec::Lark(g) => TopLevelGrammar::from_lark(g.clone()),
        }
    }

    fn what(&self) -> &'static str {
        match self {
            Spec::JsonSchema(_) => "JSON schema",
            Spec::JsonObject => "JSON object",
            Spec::Regex(_) => "regular expression",
            Spec::Lark(_) => "Lark grammar",
        }
    }
}

/// JSON written as `{"a": 1, "b": [2, 3]}`, with no other whitespace, unless the schema says
/// otherwise in its own `x-guidance` options: free whitespace lets a small model loop on
/// blanks until its token limit instead of finishing the object.
fn compact(mut schema: serde_json::Value) -> serde_json::Value {
    if let Some(o) = schema.as_object_mut() {
        o.entry("x-guidance").or_insert_with(|| {
            serde_json::json!({
                "whitespace_flexible": false, "item_separator": ", ", "key_separator": ": ",
            })
        });
    }
    schema
}

/// Time spent computing masks, over every constraint made by one [`Grammars`].
#[derive(Default, Debug)]
pub struct MaskStats {
    pub masks: AtomicU64,
    pub nanos: AtomicU64,
}

impl MaskStats {
    /// Mean milliseconds per mask so far.
    pub fn mean_ms(&self) -> f64 {
        let n = self.masks.load(Relaxed).max(1);
        self.nanos.load(Relaxed) as f64 / n as f64 / 1e6
    }
}

/// The parser factory for one tokenizer (its vocabulary as a token trie).
pub struct Grammars {
    factory: Arc<ParserFactory>,
    eog: Arc<[u32]>,
    /// The token the parser takes as its end of generation.
    eos: u32,
    pub stats: Arc<MaskStats>,
}

/// The tokenizer as llguidance sees it: each token's bytes (special tokens behind the 0xFF
/// marker, so no text can spell them) and the tokenizer itself for re-tokenizing.
struct Env {
    trie: TokTrie,
    tok: Arc<Tokenizer>,
}

impl TokenizerEnv for Env {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.tok
            .encode(&String::from_utf8_lossy(s), false, false)
            .unwrap_or_default()
    }
}

impl Grammars {
    pub fn new(tok: Arc<Tokenizer>) -> Result<Grammars, GrammarError> {
        let n = tok.vocab_size();
        let words: Vec<Vec<u8>> = (0..n as u32)
            .map(|id| {
                if tok.token_attr(id) & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0
                    && tok.token_attr(id) & attr::NORMAL == 0
                {
                    let mut w = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    w.extend_from_slice(tok.token_text(id).unwrap_or_default().as_bytes());
                    w
                } else {
                    tok.token_to_piece(id, true).to_vec()
                }
            })
            .collect();
        let eos = tok
            .eog_ids()
            .first()
            .copied()
            .or(tok.eos())
            .ok_or_else(|| GrammarError::Tokenizer("no end-of-generation token".into()))?;
        let info = TokRxInfo::new(n as u32, eos);
        let trie = TokTrie::from(&info, &words);
        let eog: Arc<[u32]> = tok.eog_ids().into();
        let env: TokEnv = Arc::new(Env { trie, tok });
        let factory =
            ParserFactory::new_simple(&env).map_err(|e| GrammarError::Tokenizer(e.to_string()))?;
        Ok(Grammars {
            factory: Arc::new(factory),
            eog,
            eos,
            stats: Arc::default(),
        })
    }

    /// A fresh constraint for one generation; an invalid schema, regex or grammar is an error
    /// naming it.
    pub fn constraint(&self, spec: &Spec) -> Result<Box<dyn Constraint>, GrammarError> {
        let invalid = |why: String| GrammarError::Invalid {
            what: spec.what(),
            why,
        };
        let parser = self
            .factory
            .create_parser(spec.grammar())
            .map_err(|e| invalid(e.to_string()))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(invalid(e));
        }
        Ok(Box::new(Llg {
            matcher,
            eog: self.eog.clone(),
            eos: self.eos,
            stats: self.stats.clone(),
        }))
    }

    /// `spec` as what `GenParams::constraint` takes: checked now, made fresh per generation.
    pub fn spec(self: &Arc<Self>, spec: Spec) -> Result<ConstraintSpec, GrammarError> {
        self.constraint(&spec)?;
        let g = self.clone();
        let what = spec.what().to_string();
        Ok(ConstraintSpec {
            make: Arc::new(move || g.constraint(&spec).map_err(|e| e.to_string())),
            what,
        })
    }
}

struct Llg {
    matcher: Matcher,
    eog: Arc<[u32]>,
    eos: u32,
    stats: Arc<MaskStats>,
}

impl Constraint for Llg {
    fn mask(&mut self, logits: &mut [f32]) -> Result<(), String> {
        let t0 = Instant::now();
        let allowed = self.matcher.compute_mask().map_err(|e| e.to_string())?;
        let end = allowed.is_allowed(self.eos);
        for (i, l) in logits.iter_mut().enumerate() {
            let id = i as u32;
            let ok = if self.eog.binary_search(&id).is_ok() {
                end
            } else {
                (i < allowed.len()) && allowed.is_allowed(id)
            };
            if !ok {
                *l = f32::NEG_INFINITY;
            }
        }
        self.stats.masks.fetch_add(1, Relaxed);
        self.stats
            .nanos
            .fetch_add(t0.elapsed().as_nanos() as u64, Relaxed);
        Ok(())
    }

    fn commit(&mut self, token: u32) -> Result<(), String> {
        // Any end-of-generation token is the parser's own.
        let t = if self.eog.binary_search(&token).is_ok() {
            self.eos
        } else {
            token
        };
        self.matcher.consume_token(t).map_err(|e| e.to_string())
    }

    fn finished(&self) -> bool {
        self.matcher.is_stopped()
    }
}
