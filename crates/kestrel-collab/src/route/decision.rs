//! Where a request was answered and why, as reported to the client (a `kestrel` field and
//! `x-kestrel-routed`/`x-kestrel-route-reason` headers), the log and `/metrics`.

use crate::route::confidence::Confidence;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Local,
    Remote,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Local => "local",
            Target::Remote => "remote",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// The local model was confident enough over its first tokens.
    Confident,
    /// It was not.
    LowConfidence,
    /// The prompt does not fit the local context.
    Context,
    RuleLength,
    RuleKeyword,
    RuleModel,
    /// Routing wanted the remote, but it failed; answered locally.
    RemoteFailed,
    /// Confidence is not measured (policy) and no rule applied.
    NoRule,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Confident => "confident",
            Reason::LowConfidence => "low_confidence",
            Reason::Context => "context",
            Reason::RuleLength => "rule_length",
            Reason::RuleKeyword => "rule_keyword",
            Reason::RuleModel => "rule_model",
            Reason::RemoteFailed => "remote_failed",
            Reason::NoRule => "no_rule",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Decision {
    pub target: Target,
    pub reason: Reason,
    /// Measured confidence, when the local model's first tokens were judged.
    pub confidence: Option<Confidence>,
    /// For `RemoteFailed`: why the remote was wanted and how it failed.
    pub wanted: Option<Reason>,
    pub error: Option<String>,
}

impl Decision {
    pub fn new(target: Target, reason: Reason) -> Decision {
        Decision {
            target,
            reason,
            confidence: None,
            wanted: None,
            error: None,
        }
    }

    /// Answered locally because the remote failed.
    pub fn fallback(wanted: &Decision, error: String) -> Decision {
        Decision {
            target: Target::Local,
            reason: Reason::RemoteFailed,
            confidence: wanted.confidence,
            wanted: Some(wanted.reason),
            error: Some(error),
        }
    }

    pub fn with_confidence(mut self, c: Confidence) -> Decision {
        self.confidence = Some(c);
        self
    }

    /// The `kestrel` extension object of a response.
    pub fn json(&self) -> Value {
        let mut v = json!({"routed": self.target.as_str(), "reason": self.reason.as_str()});
        if let Some(c) = &self.confidence {
            v["confidence"] = json!({
                "tokens": c.tokens,
                "mean_entropy": c.mean_entropy,
                "mean_top1": c.mean_top1,
            });
        }
        if let Some(w) = self.wanted {
            v["wanted"] = json!(w.as_str());
        }
        if let Some(e) = &self.error {
            v["error"] = json!(e);
        }
        v
    }

    /// One log line.
    pub fn log_line(&self, what: &str) -> String {
        let mut s = format!(
            "kestrel route: {what} -> {} ({})",
            self.target.as_str(),
            self.reason.as_str()
        );
        if let Some(c) = &self.confidence {
            let _ = write!(
                s,
                " entropy {:.3} top1 {:.3} over {} tokens",
                c.mean_entropy, c.mean_top1, c.tokens
            );
        }
        if let (Some(w), Some(e)) = (self.wanted, &self.error) {
            let _ = write!(s, "; wanted remote for {}, but {e}", w.as_str());
        }
        s
    }
}

/// Decisions counted by target and reason, for `kestrel_route_decisions_total`.
#[derive(Default)]
pub struct Counts(Mutex<BTreeMap<(Target, Reason), u64>>);

impl Counts {
    pub fn add(&self, d: &Decision) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry((d.target, d.reason)).or_default() += 1;
        }
    }

    /// Append the counter in Prometheus' text format.
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP kestrel_route_decisions_total Routing decisions, by where the request was answered and why.\n# TYPE kestrel_route_decisions_total counter\n");
        if let Ok(m) = self.0.lock() {
            for ((t, r), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "kestrel_route_decisions_total{{target=\"{}\",reason=\"{}\"}} {n}",
                    t.as_str(),
                    r.as_str()
                );
            }
        }
    }
}
