//! `kestrel bench` with a drafter: greedy decoding of real prompts (a summary, code, a chat
//! answer) with and without speculation, reporting acceptance and effective decode speed.
//! Random-token prompts, as the plain benchmark uses, would leave a drafter nothing to predict.

use crate::args::SpecArgs;
use anyhow::Context;
use kestrel_engine::bench::Stat;
use kestrel_engine::{ChatMessage, Engine, EngineConfig, GenParams, SamplerConfig};
use std::io::Write;
use std::path::Path;

/// The built-in prompt set: (kind, user message).
const PROMPTS: [(&str, &str); 3] = [
    (
        "summary",
        "Summarize this in two sentences: The city council met on Tuesday to discuss the new riverside park. The park will have a playground, a pond, a small cafe and three kilometres of walking trails. Construction starts in May and should end in October, at a cost of 2.4 million euros, paid partly by a regional grant. Residents asked for more trees and for the trails to be lit at night.",
    ),
    (
        "code",
        "Write a Python function that reads a CSV file and returns the average of the column named 'price'. Then write a second function that returns the maximum of the same column.",
    ),
    ("chat", "What are three good ways to spend a rainy afternoon at home?"),
];

pub struct SpecBench<'a> {
    pub spec: &'a SpecArgs,
    pub prompts: &'a [String],
    pub n_gen: usize,
    pub reps: usize,
    pub threads: usize,
    pub json: bool,
}

pub fn run(b: &SpecBench, path: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let cfg = EngineConfig {
        n_ctx: 2048,
        n_batch: 512,
        n_threads: b.threads,
    };
    let engine = Engine::load(path, &cfg).with_context(|| format!("loading {}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut prompts: Vec<(String, String)> = PROMPTS
        .iter()
        .map(|(k, p)| (k.to_string(), p.to_string()))
        .collect();
    if !b.prompts.is_empty() {
        prompts = b
            .prompts
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("prompt{}", i + 1), p.clone()))
            .collect();
    }
    let params = GenParams {
        max_tokens: b.n_gen,
        sampler: SamplerConfig::greedy(),
        stop: vec![],
        ignore_eos: true,
        constraint: None,
    };
    if !b.json {
        writeln!(out, "\n| model | drafter | prompt | plain t/s | speculative t/s | speed-up | accepted | same output |")?;
        writeln!(out, "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |")?;
    }
    for (kind, text) in &prompts {
        let ids = engine.tokenize_chat(&[ChatMessage::new("user", text)])?;
        let mut plain_tps = Vec::new();
        let mut spec_tps = Vec::new();
        let mut plain_tokens = Vec::new();
        let mut stats = Default::default();
        let mut same = true;
        let mut drafter = String::new();
        // One warm-up round, then `reps` timed ones.
        for r in 0..=b.reps {
            let mut seq = engine.new_sequence();
            let g = engine.generate(&mut seq, &ids, &params, &mut |_| true)?;
            let mut sp = b.spec.speculator(&engine)?.context("no drafter chosen")?;
            let mut seq = engine.new_sequence();
            let s = engine.generate_speculative(&mut seq, &ids, &params, &mut sp, &mut |_| true)?;
            drafter = sp.drafter.name().to_string();
            same &= s.generation.tokens == g.tokens;
            if r > 0 {
                plain_tps.push(g.timings.gen_tps());
                spec_tps.push(s.generation.timings.gen_tps());
            }
            plain_tokens = g.tokens;
            stats = s.stats;
        }
        let (p, s) = (Stat::of(&plain_tps), Stat::of(&spec_tps));
        let speedup = if p.median > 0.0 {
            s.median / p.median
        } else {
            0.0
        };
        if b.json {
            let v = serde_json::json!({
                "model": name, "test": "speculative", "prompt": kind, "drafter": drafter,
                "draft_max": b.spec.draft_max, "adaptive": !b.spec.draft_fixed,
                "threads": b.threads, "n_gen": plain_tokens.len(), "repetitions": b.reps,
                "decode_tps": p.median, "spec_decode_tps": s.median, "speedup": speedup,
                "drafted": stats.drafted, "accepted": stats.accepted,
                "acceptance_rate": stats.acceptance_rate(), "target_passes": stats.target_passes,
                "same_output": same,
            });
            writeln!(out, "{v}")?;
        } else {
            writeln!(
                out,
                "| {name} | {drafter} | {kind} | {:.1} | {:.1} | {speedup:.2}x | {:.0}% ({}/{}) | {} |",
                p.median,
                s.median,
                100.0 * stats.acceptance_rate(),
                stats.accepted,
                stats.drafted,
                if same { "yes" } else { "NO" }
            )?;
        }
        out.flush()?;
    }
    Ok(())
}
