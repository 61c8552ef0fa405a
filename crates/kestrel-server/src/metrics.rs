//! Counters and histograms for `GET /metrics`, in Prometheus' text exposition format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A histogram with fixed upper bounds in seconds; sums kept in microseconds.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, secs: f64) {
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            if secs <= *b {
                c.fetch_add(1, Relaxed);
            }
        }
        self.sum_us.fetch_add((secs * 1e6) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {}", c.load(Relaxed));
        }
        let n = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_us.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {n}");
    }
}

const TTFT_BOUNDS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
const TOKEN_BOUNDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

pub struct Metrics {
    pub requests: [AtomicU64; 4],
    pub errors: AtomicU64,
    pub rejected_busy: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub prompt_tokens_reused: AtomicU64,
    pub generated_tokens: AtomicU64,
    /// Prompt passes shared by several new requests, and the prompts they evaluated.
    pub prompt_batches: AtomicU64,
    pub prompts_batched: AtomicU64,
    /// Speculative decoding (`--draft...`): draft tokens proposed and kept.
    pub spec_drafted: AtomicU64,
    pub spec_accepted: AtomicU64,
    /// `--split-remote`: sequences that ran layers on the split server, and those that had
    /// to finish on this device because the server failed.
    pub split_sequences: AtomicU64,
    pub split_fallbacks: AtomicU64,
    pub active: AtomicU64,
    pub queued: AtomicU64,
    /// Open `/v1/verify` sessions and `--split-server` sessions (a KV cache each).
    pub verify_sessions: AtomicU64,
    pub split_sessions_open: AtomicU64,
    pub ttft: Histogram,
    pub token_latency: Histogram,
}

/// Indices into `Metrics::requests`.
pub const CHAT: usize = 0;
pub const COMPLETIONS: usize = 1;
pub const EMBEDDINGS: usize = 2;
pub const OTHER: usize = 3;
const ENDPOINTS: [&str; 4] = ["chat_completions", "completions", "embeddings", "other"];

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Default::default(),
            errors: AtomicU64::new(0),
            rejected_busy: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            prompt_tokens_reused: AtomicU64::new(0),
            generated_tokens: AtomicU64::new(0),
            prompt_batches: AtomicU64::new(0),
            prompts_batched: AtomicU64::new(0),
            spec_drafted: AtomicU64::new(0),
            spec_accepted: AtomicU64::new(0),
            split_sequences: AtomicU64::new(0),
            split_fallbacks: AtomicU64::new(0),
            active: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            verify_sessions: AtomicU64::new(0),
            split_sessions_open: AtomicU64::new(0),
            ttft: Histogram::new(TTFT_BOUNDS),
            token_latency: Histogram::new(TOKEN_BOUNDS),
        }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut o = String::new();
        o.push_str("# HELP kestrel_requests_total Requests received, by endpoint.\n# TYPE kestrel_requests_total counter\n");
        for (name, c) in ENDPOINTS.iter().zip(&self.requests) {
            let _ = writeln!(
                o,
                "kestrel_requests_total{{endpoint=\"{name}\"}} {}",
                c.load(Relaxed)
            );
        }
        let counter = |o: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(
                o,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        };
        let gauge = |o: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(
                o,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                v.load(Relaxed)
            );
        };
        counter(
            &mut o,
            "kestrel_request_errors_total",
            "Requests answered with an error status.",
            &self.errors,
        );
        counter(
            &mut o,
            "kestrel_requests_rejected_total",
            "Requests refused with 429 because the queue was full.",
            &self.rejected_busy,
        );
        counter(
            &mut o,
            "kestrel_connections_refused_total",
            "Connections closed at accept because --max-connections were open.",
            &crate::listen::REFUSED_CONNECTIONS,
        );
        counter(
            &mut o,
            "kestrel_prompt_tokens_total",
            "Prompt tokens received.",
            &self.prompt_tokens,
        );
        counter(
            &mut o,
            "kestrel_prompt_tokens_reused_total",
            "Prompt tokens found in a KV cache and not recomputed.",
            &self.prompt_tokens_reused,
        );
        counter(
            &mut o,
            "kestrel_prompt_batches_total",
            "Prompt passes that evaluated several new requests' prompts together.",
            &self.prompt_batches,
        );
        counter(
            &mut o,
            "kestrel_prompts_batched_total",
            "Prompts evaluated in a pass shared with other requests' prompts.",
            &self.prompts_batched,
        );
        counter(
            &mut o,
            "kestrel_generated_tokens_total",
            "Tokens generated.",
            &self.generated_tokens,
        );
        counter(
            &mut o,
            "kestrel_draft_tokens_total",
            "Draft tokens proposed by the speculative drafter.",
            &self.spec_drafted,
        );
        counter(
            &mut o,
            "kestrel_draft_tokens_accepted_total",
            "Draft tokens the model kept.",
            &self.spec_accepted,
        );
        counter(
            &mut o,
            "kestrel_split_sequences_total",
            "Sequences generated with --split-remote (on the split server, or locally after it failed).",
            &self.split_sequences,
        );
        counter(
            &mut o,
            "kestrel_split_fallbacks_total",
            "Split sequences finished on this device because the split server failed.",
            &self.split_fallbacks,
        );
        gauge(
            &mut o,
            "kestrel_active_sequences",
            "Sequences being generated.",
            &self.active,
        );
        gauge(
            &mut o,
            "kestrel_queue_depth",
            "Requests waiting for a slot.",
            &self.queued,
        );
        gauge(
            &mut o,
            "kestrel_verify_sessions",
            "Open POST /v1/verify sessions (idle ones expire).",
            &self.verify_sessions,
        );
        gauge(
            &mut o,
            "kestrel_split_server_sessions",
            "Open split sessions of --split-server (idle ones expire).",
            &self.split_sessions_open,
        );
        if let Some(b) = kestrel_engine::bench::peak_rss_bytes() {
            let name = "kestrel_peak_resident_memory_bytes";
            let _ = writeln!(
                o,
                "# HELP {name} The process's peak resident memory (VmHWM).\n# TYPE {name} gauge\n{name} {b}"
            );
        }
        self.ttft.render(
            &mut o,
            "kestrel_time_to_first_token_seconds",
            "From a request's arrival to its first generated token.",
        );
        self.token_latency.render(
            &mut o,
            "kestrel_token_latency_seconds",
            "Time between consecutive generated tokens of a sequence.",
        );
        o
    }
}
