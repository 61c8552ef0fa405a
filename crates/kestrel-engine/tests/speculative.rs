//! Speculative decoding against plain decoding: on the golden prompts of both reference
//! models (llama.cpp's prompt ids from ../shared/golden), output with each drafter must equal
//! output without one, token for token: greedy, and sampled with the same settings and seed
//! (every token is drawn by the sequence's own sampler from a row bit-identical to decode's).

use kestrel_engine::speculative::{Drafter, ModelDrafter, NgramDrafter, SpecStats, Speculator};
use kestrel_engine::{Engine, EngineConfig, GenParams, SamplerConfig};
use std::path::PathBuf;

mod common;
use common::model_path;

fn golden_prompts(dir: &str) -> Vec<Vec<u32>> {
    // `$KESTREL_GOLDEN`, else `<workspace>/../shared/golden`, as the other golden tests.
    let root = match std::env::var_os("KESTREL_GOLDEN") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden"),
    };
    let p = root.join(dir).join("logits.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

fn load(file: &str) -> Option<Engine> {
    let p = model_path(file)?;
    let cfg = EngineConfig {
        n_ctx: 256,
        n_batch: 64,
        n_threads: 2,
    };
    Some(Engine::load(&p, &cfg).unwrap())
}

const N_GEN: usize = 48;

fn greedy() -> GenParams {
    GenParams {
        max_tokens: N_GEN,
        sampler: SamplerConfig::greedy(),
        stop: vec![],
        ignore_eos: true,
        constraint: None,
    }
}

/// Sampled: the usual truncations, a repetition penalty (its history must follow the emitted
/// tokens through every round) and `seed`.
fn sampled(seed: u64) -> GenParams {
    GenParams {
        sampler: SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.1,
            repeat_last_n: 64,
            seed,
        },
        ..greedy()
    }
}

/// Plain greedy output for every prompt.
fn plain(e: &Engine, prompts: &[Vec<u32>]) -> Vec<Vec<u32>> {
    plain_with(e, prompts, &greedy())
}

/// Plain output for every prompt with `params`.
fn plain_with(e: &Engine, prompts: &[Vec<u32>], params: &GenParams) -> Vec<Vec<u32>> {
    prompts
        .iter()
        .map(|p| {
            let mut seq = e.new_sequence();
            e.generate(&mut seq, p, params, &mut |_| true)
                .unwrap()
                .tokens
        })
        .collect()
}

/// Speculative greedy output must equal `want` for every prompt; returns the summed stats.
fn check(
    e: &Engine,
    prompts: &[Vec<u32>],
    want: &[Vec<u32>],
    make: &dyn Fn() -> Box<dyn Drafter>,
    max_draft: usize,
) -> SpecStats {
    check_with(e, prompts, want, make, max_draft, &greedy())
}

/// Speculative output with `params` must equal `want` for every prompt.
fn check_with(
    e: &Engine,
    prompts: &[Vec<u32>],
    want: &[Vec<u32>],
    make: &dyn Fn() -> Box<dyn Drafter>,
    max_draft: usize,
    params: &GenParams,
) -> SpecStats {
    let mut total = SpecStats::default();
    for (i, (p, w)) in prompts.iter().zip(want).enumerate() {
        let mut seq = e.new_sequence();
        let mut spec = Speculator::new(make(), max_draft, true);
        let g = e
            .generate_speculative(&mut seq, p, params, &mut spec, &mut |_| true)
            .unwrap();
        let name = spec.drafter.name();
        assert_eq!(&g.generation.tokens, w, "{name}: prompt {i} differs");
        assert_eq!(seq.tokens.len(), seq.session.n_past());
        total.add(&g.stats);
    }
    total
}

fn report(model: &str, name: &str, s: &SpecStats) {
    eprintln!(
        "{model} {name}: drafted {} accepted {} ({:.0}%), {} target passes",
        s.drafted,
        s.accepted,
        100.0 * s.acceptance_rate(),
        s.target_passes,
    );
}

#[test]
fn greedy_speculation_equals_plain_smollm2() {
    let Some(e) = load("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let prompts = golden_prompts("smollm2-135m-instruct-q4_1");
    let want = plain(&e, &prompts);
    let m = e.model.clone();
    let n_ctx = e.n_ctx();
    let s = check(
        &e,
        &prompts,
        &want,
        &|| Box::new(NgramDrafter::default()),
        6,
    );
    report("smollm2", "ngram", &s);
    assert!(s.drafted > 0);
    let s = check(
        &e,
        &prompts,
        &want,
        &|| Box::new(ModelDrafter::early_exit(m.clone(), 20, n_ctx).unwrap()),
        6,
    );
    report("smollm2", "early-exit 20/30", &s);
    assert!(s.accepted > 0 && s.accepted < s.drafted);
    // The model drafting for itself: nearly every draft token is accepted (not all: the
    // drafter catches up on accepted tokens in batched arithmetic, which can flip a near-tie).
    let tok = e.tokenizer.clone();
    let s = check(
        &e,
        &prompts,
        &want,
        &|| Box::new(ModelDrafter::draft_model(m.clone(), &tok, &tok, n_ctx).unwrap()),
        5,
    );
    report("smollm2", "itself as draft model", &s);
    assert!(s.accepted * 10 >= s.drafted * 9, "{s:?}");
}

#[test]
fn greedy_speculation_equals_plain_gemma3() {
    let Some(e) = load("gemma-3-270m-q4_k_m.gguf") else {
        return;
    };
    let prompts = golden_prompts("gemma3-270m-q4_k_m");
    let want = plain(&e, &prompts);
    let m = e.model.clone();
    let n_ctx = e.n_ctx();
    let s = check(
        &e,
        &prompts,
        &want,
        &|| Box::new(NgramDrafter::default()),
        6,
    );
    report("gemma3", "ngram", &s);
    assert!(s.drafted > 0);
    let s = check(
        &e,
        &prompts,
        &want,
        &|| Box::new(ModelDrafter::early_exit(m.clone(), 12, n_ctx).unwrap()),
        6,
    );
    report("gemma3", "early-exit 12/18", &s);
    assert!(s.accepted > 0);
}

#[test]
fn sampled_speculation_equals_plain_sampling() {
    let Some(e) = load("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let mut prompts = golden_prompts("smollm2-135m-instruct-q4_1");
    prompts.truncate(3);
    let m = e.model.clone();
    let n_ctx = e.n_ctx();
    let tok = e.tokenizer.clone();
    let drafters: [(&str, Box<dyn Fn() -> Box<dyn Drafter>>); 3] = [
        ("ngram", Box::new(|| Box::new(NgramDrafter::default()))),
        (
            "early-exit 20/30",
            Box::new(|| Box::new(ModelDrafter::early_exit(m.clone(), 20, n_ctx).unwrap())),
        ),
        (
            "itself as draft model",
            Box::new(|| Box::new(ModelDrafter::draft_model(m.clone(), &tok, &tok, n_ctx).unwrap())),
        ),
    ];
    for seed in [1, 7, 42] {
        let params = sampled(seed);
        let want = plain_with(&e, &prompts, &params);
        // Different seeds draw different texts (the settings really sample).
        if seed == 1 {
            assert_ne!(want, plain_with(&e, &prompts, &sampled(2)));
        }
        for (name, make) in &drafters {
            let s = check_with(&e, &prompts, &want, make.as_ref(), 6, &params);
            report("smollm2 sampled", name, &s);
            assert!(s.accepted > 0, "{name}, seed {seed}: no draft token held");
        }
    }
}

#[test]
fn draft_model_with_another_vocabulary_is_refused() {
    let (Some(a), Some(b)) = (
        load("SmolLM2-135M-Instruct.Q4_1.gguf"),
        load("gemma-3-270m-q4_k_m.gguf"),
    ) else {
        return;
    };
    let err = ModelDrafter::draft_model(b.model.clone(), &b.tokenizer, &a.tokenizer, 256)
        .err()
        .expect("a gemma draft for a smollm2 target must be refused");
    assert!(
        err.to_string().contains("share the target's tokenizer"),
        "{err}"
    );
}
