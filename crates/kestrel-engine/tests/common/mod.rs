//! The reference models' files and the default model as an engine, for the tests of this
//! crate (each test binary uses part of it).
#![allow(dead_code)]

use kestrel_engine::{Engine, EngineConfig};
use std::path::PathBuf;

/// A reference model's file (`scripts/fetch-models.sh` puts them in the cache); None
/// (skipped) when it is absent and KESTREL_SKIP_MODEL_TESTS=1.
pub fn model_path(file: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("KESTREL_MODELS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/kestrel/models"),
    };
    let p = dir.join(file);
    if !p.exists() {
        if std::env::var("KESTREL_SKIP_MODEL_TESTS").as_deref() == Ok("1") {
            eprintln!("skipping: {} absent", p.display());
            return None;
        }
        panic!("{} is missing: run scripts/fetch-models.sh", p.display());
    }
    Some(p)
}

pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// SmolLM2 with a context of `n_ctx`, 64-token micro-batches and 2 threads.
pub fn engine(n_ctx: usize) -> Option<Engine> {
    let cfg = EngineConfig {
        n_ctx,
        n_batch: 64,
        n_threads: 2,
    };
    Some(Engine::load(model_path(SMOLLM2)?, &cfg).unwrap())
}
