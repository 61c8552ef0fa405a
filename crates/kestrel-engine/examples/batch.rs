//! Continuous batching in an application, without HTTP (the engine's `Scheduler`, the loop
//! the server runs): several prompts admitted together (their prompts share passes), then
//! decoded in batched steps, each answer streamed to its own client and equal to what
//! `Engine::generate` gives it alone.
//!
//!     cargo run --release -p kestrel-engine --example batch -- [MODEL.gguf]
//!
//! MODEL defaults to the SmolLM2 file `scripts/fetch-models.sh` puts in the cache.

use kestrel_engine::batch::{Client, Failure, Plain, Request, Scheduler};
use kestrel_engine::decode::primed_sampler;
use kestrel_engine::decoding::{Decoding, Sink};
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
    fn failed(&mut self, why: Failure) {
        eprintln!("[{}] failed: {why:?}", self.n);
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
    // The engine's generation loop with plain batched steps (a `Speculative` strategy would
    // draft and verify instead).
    let mut sched = Scheduler::new(&engine, prompts.len(), Box::new(Plain));
    for (n, text) in prompts.iter().enumerate() {
        let prompt = engine.tokenize_prompt(text)?;
        let sampler = primed_sampler(&SamplerConfig::greedy(), &prompt);
        let client = Printer {
            n,
            text: text.to_string(),
        };
        let req = Request {
            prompt,
            session: None,
            prompt_logprobs: None,
            dec: Decoding::new(sampler, &[], 24, false),
            client,
        };
        sched
            .admit(req, Instant::now())
            .map_err(|_| "no free slot")?;
    }
    // The admitted prompts in as few shared passes as fit a micro-batch, then one token for
    // every active sequence per step, through one batched forward pass. A server would admit
    // new requests between steps.
    sched.run_all(&engine);
    Ok(())
}
