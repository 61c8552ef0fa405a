//! Continuous batching in an application, without HTTP: several prompts admitted together
//! (their prompts share passes), then decoded in batched steps, each answer streamed to its
//! own client and equal to what `Engine::generate` gives it alone.
//!
//!     cargo run --release -p kestrel-engine --example batch -- [MODEL.gguf]
//!
//! MODEL defaults to the SmolLM2 file `scripts/fetch-models.sh` puts in the cache.

use kestrel_engine::batch::{self, Client, Seq};
use kestrel_engine::decode::primed_sampler;
use kestrel_engine::decoding::{Decoding, Sink};
use kestrel_engine::slots::Slots;
use kestrel_engine::{Engine, EngineConfig, SamplerConfig, StopReason};
use std::path::PathBuf;
use std::time::Instant;

/// One request's output: printed as it comes, tagged with the request's number.
struct Printer {
    n: usize,
    text: String,
}

impl Sink for Printer {
    fn token(&mut self, _id: u32, text: String, _logits: &[f32]) -> bool {
        self.text.push_str(&text);
        true
    }
    fn text(&mut self, text: String) -> bool {
        self.text.push_str(&text);
        true
    }
}

impl Client for Printer {
    fn gone(&self) -> bool {
        false
    }
    fn done(&mut self, reason: StopReason, generated: usize) {
        println!("[{}] {generated} tokens ({reason:?}):{}", self.n, self.text);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var("HOME").unwrap_or_default();
            PathBuf::from(home).join(".cache/kestrel/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    let engine = Engine::load(&model, &EngineConfig::default())?;
    let prompts = [
        "The three primary colours are",
        "Once upon a time, in a small village,",
        "The capital of France is",
    ];
    let mut slots = Slots::new(&engine, prompts.len());
    let mut active = Vec::new();
    let mut admitted = Vec::new();
    for (n, text) in prompts.iter().enumerate() {
        let prompt = engine.tokenize_prompt(text)?;
        let slot = slots.claim(&prompt, None).ok_or("no free slot")?;
        let sampler = primed_sampler(&SamplerConfig::greedy(), &prompt);
        let dec = Decoding::new(sampler, &[], 24, false);
        let client = Printer {
            n,
            text: text.to_string(),
        };
        admitted.push((slot, prompt));
        active.push(Seq::new(slot, dec, client));
    }
    // Every admitted prompt in as few shared passes as fit a micro-batch.
    let views: Vec<(usize, &[u32])> = admitted.iter().map(|(s, p)| (*s, p.as_slice())).collect();
    for r in slots.prefill(&engine, &views).reused {
        r?;
    }
    // One token for every active sequence per step, through one batched forward pass.
    while !active.is_empty() {
        let (ended, r) = batch::step(&engine, &mut slots, &mut active, Instant::now());
        r?;
        for s in ended {
            slots.release(s.slot);
        }
    }
    Ok(())
}
