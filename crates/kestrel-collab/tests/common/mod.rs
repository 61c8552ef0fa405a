//! Shared by the split tests: model paths, engines, an in-process split server, a
//! delaying/stalling TCP proxy, and the unsplit reference.
#![allow(dead_code)]

pub mod proxy;

use kestrel_collab::split::{SplitServerConfig, StandaloneServer};
use kestrel_engine::{Engine, EngineConfig};
use std::path::PathBuf;
use std::time::Duration;

pub fn model_path(file: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("KESTREL_MODELS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/kestrel/models"),
    };
    let p = dir.join(file);
    if p.exists() {
        return Some(p);
    }
    if std::env::var("KESTREL_SKIP_MODEL_TESTS").as_deref() == Ok("1") {
        eprintln!("skipping: {} absent", p.display());
        return None;
    }
    panic!("{} is missing: run scripts/fetch-models.sh", p.display());
}

pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";

/// An engine with a small context and micro-batches of 16, so prompts span several steps.
pub fn engine(file: &str, threads: usize) -> Option<Engine> {
    let p = model_path(file)?;
    let cfg = EngineConfig {
        n_ctx: 256,
        n_batch: 16,
        n_threads: threads,
    };
    Some(Engine::load(p, &cfg).unwrap())
}

pub fn server(e: &Engine, threads: usize) -> StandaloneServer {
    let cfg = SplitServerConfig {
        max_sessions: 4,
        idle: Duration::from_secs(60),
        max_ctx: 256,
        max_batch: 512,
        threads,
        api_key: None,
    };
    StandaloneServer::start(e.model.clone(), cfg, "127.0.0.1:0").unwrap()
}

/// KL(p || q) of the softmaxes of two logit rows, in nats.
pub fn kld(p: &[f32], q: &[f32]) -> f64 {
    let lse = |x: &[f32]| {
        let m = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        m + x.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln()
    };
    let (lp, lq) = (lse(p), lse(q));
    p.iter()
        .zip(q)
        .map(|(&a, &b)| {
            let la = a as f64 - lp;
            la.exp() * (la - (b as f64 - lq))
        })
        .sum()
}

pub fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best as u32
}
