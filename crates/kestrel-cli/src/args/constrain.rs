//! Constrained output for `kestrel run`: the answer must match a JSON schema, be any JSON
//! object, match a regular expression or a Lark grammar (kestrel-grammar, llguidance).

use clap::Args;
use kestrel_engine::decoding::ConstraintSpec;
use kestrel_engine::Engine;
use kestrel_grammar::{Grammars, MaskStats, Spec};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Clone, Debug)]
#[group(multiple = false)]
pub struct ConstrainArgs {
    /// The output must be JSON valid under this JSON schema (a file)
    #[arg(long = "json-schema", value_name = "FILE")]
    json_schema: Option<PathBuf>,
    /// The output must be a JSON object
    #[arg(long = "json-object")]
    json_object: bool,
    /// The output must match this regular expression
    #[arg(long = "regex", value_name = "REGEX")]
    regex: Option<String>,
    /// The output must match this Lark grammar (a file; llguidance's dialect, `start` rule first)
    #[arg(long = "grammar", value_name = "FILE")]
    grammar: Option<PathBuf>,
}

impl ConstrainArgs {
    fn wanted(&self) -> anyhow::Result<Option<Spec>> {
        let read = |p: &PathBuf| {
            std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))
        };
        Ok(if let Some(p) = &self.json_schema {
            let v = serde_json::from_str(&read(p)?)
                .map_err(|e| anyhow::anyhow!("{}: not JSON: {e}", p.display()))?;
            Some(Spec::JsonSchema(v))
        } else if self.json_object {
            Some(Spec::JsonObject)
        } else if let Some(r) = &self.regex {
            Some(Spec::Regex(r.clone()))
        } else if let Some(p) = &self.grammar {
            Some(Spec::Lark(read(p)?))
        } else {
            None
        })
    }

    /// The constraint for `engine`'s vocabulary, and where its mask timings accumulate; None
    /// when no constraint was asked for.
    pub fn load(
        &self,
        engine: &Engine,
    ) -> anyhow::Result<Option<(ConstraintSpec, Arc<MaskStats>)>> {
        let Some(spec) = self.wanted()? else {
            return Ok(None);
        };
        let g = Arc::new(Grammars::new(engine.tokenizer.clone())?);
        let stats = g.stats.clone();
        Ok(Some((g.spec(spec)?, stats)))
    }
}
