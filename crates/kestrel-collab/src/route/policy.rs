//! The routing policy, a JSON file (`--route-policy FILE`); every field may be left out:
//!
//! ```json
//! {
//!   "confidence": {"tokens": 8, "max_entropy": null, "min_top1": 0.55},
//!   "max_prompt_tokens": null,
//!   "keywords": ["prove", "step by step"],
//!   "models": ["gpt-4o"]
//! }
//! ```
//!
//! A missing field keeps its default (the confidence values shown; no length, keyword or model
//! rules); `null` turns a threshold off. Unknown fields are refused, so a misspelt rule is an
//! error rather than silently ignored.

use crate::error::CollabError;
use crate::route::confidence::Confidence;
use crate::route::decision::{Decision, Reason, Target};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ConfidencePolicy {
    /// Generated tokens whose confidence is averaged before deciding (and held back from a
    /// streaming client until then). 0 turns confidence routing off.
    pub tokens: usize,
    /// Route when the mean entropy (nats) is above this.
    pub max_entropy: Option<f32>,
    /// Route when the mean top-1 probability is below this.
    pub min_top1: Option<f32>,
}

impl Default for ConfidencePolicy {
    fn default() -> Self {
        // On bench/routing/prompts.json with SmolLM2-135M (docs/routing.md), 0.55 keeps about
        // half of the prompts local.
        ConfidencePolicy {
            tokens: 8,
            max_entropy: None,
            min_top1: Some(0.55),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    pub confidence: ConfidencePolicy,
    /// Route prompts longer than this many tokens (below the context limit, which always routes).
    pub max_prompt_tokens: Option<usize>,
    /// Route when the prompt contains one of these (case-insensitive).
    pub keywords: Vec<String>,
    /// Route requests that name one of these models ("*": any model but the local one).
    pub models: Vec<String>,
}

impl Policy {
    pub fn load(path: &Path) -> Result<Policy, CollabError> {
        let err = |reason: String| CollabError::Policy {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let p: Policy = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        p.check().map_err(err)?;
        Ok(p)
    }

    fn check(&self) -> Result<(), String> {
        let c = &self.confidence;
        if let Some(h) = c.max_entropy {
            if !(h.is_finite() && h >= 0.0) {
                return Err(format!("confidence.max_entropy must be >= 0, got {h}"));
            }
        }
        if let Some(p) = c.min_top1 {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("confidence.min_top1 must be in [0, 1], got {p}"));
            }
        }
        if c.tokens > 256 {
            return Err(format!(
                "confidence.tokens must be at most 256, got {}",
                c.tokens
            ));
        }
        if self.keywords.iter().any(|k| k.is_empty()) {
            return Err("keywords must not be empty strings".into());
        }
        Ok(())
    }

    /// Whether a request naming `model` goes to the remote (`local` is the local model's id).
    pub fn model_rule(&self, model: Option<&str>, local: &str) -> Option<Reason> {
        let m = model.filter(|m| !m.is_empty() && *m != local)?;
        self.models
            .iter()
            .any(|r| r == "*" || r == m)
            .then_some(Reason::RuleModel)
    }

    /// The rule, if any, that sends this prompt to the remote before any local work.
    pub fn prompt_rule(&self, text: &str, prompt_tokens: usize) -> Option<Reason> {
        if self.max_prompt_tokens.is_some_and(|n| prompt_tokens > n) {
            return Some(Reason::RuleLength);
        }
        if !self.keywords.is_empty() {
            let lower = text.to_lowercase();
            if self
                .keywords
                .iter()
                .any(|k| lower.contains(&k.to_lowercase()))
            {
                return Some(Reason::RuleKeyword);
            }
        }
        None
    }

    /// Whether confidence is measured at all.
    pub fn measures_confidence(&self) -> bool {
        let c = &self.confidence;
        c.tokens > 0 && (c.max_entropy.is_some() || c.min_top1.is_some())
    }

    /// Whether the local model was too unsure over its first tokens. No tokens measured (an
    /// answer that ended at once) counts as confident: there is nothing to judge.
    pub fn unconfident(&self, c: &Confidence) -> bool {
        if c.tokens == 0 {
            return false;
        }
        let p = &self.confidence;
        p.max_entropy.is_some_and(|h| c.mean_entropy > h)
            || p.min_top1.is_some_and(|t| c.mean_top1 < t)
    }

    /// Routing's first step, before anything runs (the server and `kestrel run` both take it):
    /// a rule already decided (`forced`: the requested model), a prompt rule, or a prompt of
    /// `prompt_tokens` that a local context of `n_ctx` cannot hold sends the request to the
    /// remote; with no confidence to measure (or nothing to measure it on) it stays here. None:
    /// run the local model's first tokens and decide with [`Policy::after_probe`].
    pub fn before_probe(
        &self,
        forced: Option<Reason>,
        text: &str,
        prompt_tokens: usize,
        n_ctx: usize,
    ) -> Option<Decision> {
        let rule = forced
            .or_else(|| self.prompt_rule(text, prompt_tokens))
            .or_else(|| (prompt_tokens >= n_ctx).then_some(Reason::Context));
        match rule {
            Some(r) => Some(Decision::new(Target::Remote, r)),
            None if !self.measures_confidence() || prompt_tokens == 0 => {
                Some(Decision::new(Target::Local, Reason::NoRule))
            }
            None => None,
        }
    }

    /// Routing's second step: the confidence of the local model's first tokens decides.
    pub fn after_probe(&self, conf: Confidence) -> Decision {
        let (target, reason) = if self.unconfident(&conf) {
            (Target::Remote, Reason::LowConfidence)
        } else {
            (Target::Local, Reason::Confident)
        };
        Decision::new(target, reason).with_confidence(conf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_fields() {
        let p: Policy = serde_json::from_str("{}").unwrap();
        assert_eq!(p, Policy::default());
        assert!(serde_json::from_str::<Policy>(r#"{"keyword": ["x"]}"#).is_err());
        // A missing threshold keeps its default; null turns it off.
        let p: Policy = serde_json::from_str(r#"{"confidence": {"max_entropy": 2.5}}"#).unwrap();
        assert_eq!(
            (p.confidence.tokens, p.confidence.min_top1),
            (8, Some(0.55))
        );
        let p: Policy =
            serde_json::from_str(r#"{"confidence": {"max_entropy": 2.5, "min_top1": null}}"#)
                .unwrap();
        assert_eq!(p.confidence.min_top1, None);
    }

    #[test]
    fn rules() {
        let p = Policy {
            max_prompt_tokens: Some(10),
            keywords: vec!["Prove".into()],
            models: vec!["big".into()],
            ..Policy::default()
        };
        assert_eq!(p.prompt_rule("hi", 11), Some(Reason::RuleLength));
        assert_eq!(
            p.prompt_rule("please PROVE it", 3),
            Some(Reason::RuleKeyword)
        );
        assert_eq!(p.prompt_rule("hi", 10), None);
        assert_eq!(p.model_rule(Some("big"), "small"), Some(Reason::RuleModel));
        assert_eq!(p.model_rule(Some("other"), "small"), None);
        assert_eq!(p.model_rule(Some("small"), "small"), None);
        let any = Policy {
            models: vec!["*".into()],
            ..Policy::default()
        };
        assert_eq!(any.model_rule(Some("x"), "small"), Some(Reason::RuleModel));
        assert_eq!(any.model_rule(None, "small"), None);
    }

    #[test]
    fn confidence_thresholds() {
        let p = Policy {
            confidence: ConfidencePolicy {
                tokens: 4,
                max_entropy: Some(2.0),
                min_top1: Some(0.5),
            },
            ..Policy::default()
        };
        let c = |h, t| Confidence {
            tokens: 4,
            mean_entropy: h,
            mean_top1: t,
        };
        assert!(!p.unconfident(&c(1.0, 0.9)));
        assert!(p.unconfident(&c(2.5, 0.9)));
        assert!(p.unconfident(&c(1.0, 0.4)));
        assert!(!p.unconfident(&Confidence::default()));
    }
}
