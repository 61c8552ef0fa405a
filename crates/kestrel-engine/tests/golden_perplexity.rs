//! Perplexity on WikiText-2 against llama-perplexity. CI scores the first 4 chunks (the golden
//! README allows stopping early) and compares the running estimate after each chunk with two
//! llama.cpp references:
//! - tests/fixtures/llama_perplexity_fa_off.json: llama-perplexity with flash attention off,
//!   the attention path kestrel reproduces (SmolLM2 to the printed digits, Gemma3 within 0.5%);
//! - ../shared/golden/*/perplexity.json, made with llama.cpp's default flash attention, whose
//!   different rounding moves Gemma3's single chunks by up to 2% (11.091 vs 11.334 after one
//!   chunk): within 1% for SmolLM2 and 2% for Gemma3 after 4 chunks. The 100-chunk figures,
//!   where the golden README's 1% applies, are in docs/correctness.md.

use kestrel_engine::{eval, Engine, EngineConfig};
use std::path::PathBuf;

const CHUNKS: usize = 4;

fn shared() -> PathBuf {
    match std::env::var_os("KESTREL_SHARED") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

mod common;
use common::model_path as model;

fn check(dir: &str, file: &str, tol_fa_off: f64, tol_golden: f64) {
    let Some(path) = model(file) else { return };
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(shared().join("golden").join(dir).join("perplexity.json"))
            .unwrap(),
    )
    .unwrap();
    let ctx = golden["ctx"].as_u64().unwrap() as usize;
    let want = golden["running_ppl_after_chunk"][CHUNKS - 1]
        .as_f64()
        .unwrap();
    let engine = Engine::load(
        &path,
        &EngineConfig {
            n_ctx: ctx,
            n_batch: ctx,
            n_threads: 2,
        },
    )
    .unwrap();
    let text = std::fs::read_to_string(shared().join("data/wiki.test.raw")).unwrap();
    let tokens = eval::tokenize_for_perplexity(&engine, &text).unwrap();
    let mut running = Vec::new();
    let r = eval::perplexity(&engine, &tokens, ctx, CHUNKS, &mut |_, _, ppl| {
        running.push(ppl)
    })
    .unwrap();
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/llama_perplexity_fa_off.json")).unwrap();
    for (i, (&ours, want)) in running
        .iter()
        .zip(fixture[dir].as_array().unwrap())
        .enumerate()
    {
        let want = want.as_f64().unwrap();
        let rel = ours / want - 1.0;
        eprintln!(
            "{dir}: after chunk {}: {ours:.4}, llama.cpp -fa off {want:.4} ({:+.3}%)",
            i + 1,
            rel * 100.0
        );
        assert!(
            rel.abs() <= tol_fa_off,
            "{dir}: chunk {}: {ours:.4} vs {want:.4}",
            i + 1
        );
    }
    assert_eq!(running.len(), CHUNKS);
    let rel = r.ppl / want - 1.0;
    eprintln!(
        "{dir}: perplexity after {CHUNKS} chunks {:.4}, golden (flash attention) {want:.4} ({:+.3}%)",
        r.ppl,
        rel * 100.0
    );
    assert_eq!(r.chunks, CHUNKS);
    assert_eq!(r.scored, CHUNKS * (ctx / 2 - 1));
    assert!(
        rel.abs() <= tol_golden,
        "{dir}: {:.4} vs llama.cpp {want:.4}",
        r.ppl
    );
}

#[test]
fn smollm2_perplexity_matches_llama_cpp() {
    check(
        "smollm2-135m-instruct-q4_1",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        1e-4,
        0.01,
    );
}

#[test]
fn gemma3_perplexity_matches_llama_cpp() {
    check(
        "gemma3-270m-q4_k_m",
        "gemma-3-270m-q4_k_m.gguf",
        0.005,
        0.02,
    );
}
