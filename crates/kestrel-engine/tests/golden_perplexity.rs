//! Perplexity on WikiText-2 against llama-perplexity's figures in ../shared/golden/*/perplexity.json.
//! CI scores the first 4 chunks and compares with llama.cpp's running estimate after chunk 4
//! (the golden README allows stopping early this way); the full 100-chunk figures are in
//! docs/correctness.md with the command that reproduces them. Tolerance: 1%.

use kestrel_engine::{eval, Engine, EngineConfig};
use std::path::PathBuf;

const CHUNKS: usize = 4;

fn shared() -> PathBuf {
    match std::env::var_os("KESTREL_SHARED") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

fn model(file: &str) -> Option<PathBuf> {
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

fn check(dir: &str, file: &str) {
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
    let r = eval::perplexity(&engine, &tokens, ctx, CHUNKS, &mut |_, _, _| {}).unwrap();
    let rel = r.ppl / want - 1.0;
    eprintln!(
        "{dir}: perplexity after {CHUNKS} chunks {:.4}, llama.cpp {want:.4} ({:+.3}%)",
        r.ppl,
        rel * 100.0
    );
    assert_eq!(r.chunks, CHUNKS);
    assert_eq!(r.scored, CHUNKS * (ctx / 2 - 1));
    assert!(
        rel.abs() <= 0.01,
        "{dir}: {:.4} vs llama.cpp {want:.4}",
        r.ppl
    );
}

#[test]
fn smollm2_perplexity_matches_llama_cpp() {
    check(
        "smollm2-135m-instruct-q4_1",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
    );
}

#[test]
fn gemma3_perplexity_matches_llama_cpp() {
    check("gemma3-270m-q4_k_m", "gemma-3-270m-q4_k_m.gguf");
}
