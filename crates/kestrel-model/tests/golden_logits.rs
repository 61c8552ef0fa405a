//! The forward pass against llama.cpp's reference logits (../shared/golden/*/logits.json).
//!
//! Golden README tolerances: top-1 agreement >= 99% of positions, mean KL <= 0.01 nats, greedy
//! continuations equal up to a near-tie (top2_gap < 0.1).
//!
//! SmolLM2 meets them exactly and more: kestrel reproduces llama.cpp's arithmetic for it (8-bit
//! activations, FMA-contracted rope, f16 attention in llama.cpp's summation orders, its exp
//! approximation in softmax and SiLU), so every logit at every position equals the reference
//! to the printed digits, and this test holds it to that.
//!
//! Gemma3 meets them too: top-1 agreement 100% (109/109), mean KL 0.00007, and every greedy
//! continuation equal. Its Q6_K matmul follows llama.cpp's tiled K-quant kernel for batches of
//! 8+ tokens and its Q4_K matmul the repacked GEMM (tests/llama_cpp_tensors.rs checks both
//! against llama.cpp's own tensors). Not every logit is bit-identical yet: the largest
//! difference over the reference top-40s is 0.64 at a late position (docs/correctness.md).

use kestrel_kernels::{ops, ThreadPool};
use kestrel_model::Model;
use serde_json::Value;
use std::path::PathBuf;

fn models_dir() -> PathBuf {
    match std::env::var_os("KESTREL_MODELS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/kestrel/models"),
    }
}

fn golden_dir() -> PathBuf {
    match std::env::var_os("KESTREL_GOLDEN") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden"),
    }
}

/// None (with a note) when the model is absent and KESTREL_SKIP_MODEL_TESTS=1; a failure otherwise.
fn model_path(file: &str) -> Option<PathBuf> {
    let p = models_dir().join(file);
    if p.exists() {
        return Some(p);
    }
    if std::env::var("KESTREL_SKIP_MODEL_TESTS").as_deref() == Ok("1") {
        eprintln!("skipping: {} absent", p.display());
        return None;
    }
    panic!("{} is missing: run scripts/fetch-models.sh", p.display());
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// KL(reference || ours) over the reference's top-k tokens plus one bucket for the rest.
fn kl_top_k(top: &[Value], ref_lse: f64, ours: &[f32]) -> f64 {
    let our_lse = ops::logsumexp(ours) as f64;
    let (mut kl, mut p_sum, mut q_sum) = (0.0, 0.0, 0.0);
    for e in top {
        let id = e[0].as_u64().unwrap() as usize;
        let p = (e[1].as_f64().unwrap() - ref_lse).exp();
        let q = (ours[id] as f64 - our_lse).exp();
        kl += p * (p / q.max(1e-30)).ln();
        p_sum += p;
        q_sum += q;
    }
    let (pr, qr) = ((1.0 - p_sum).max(0.0), (1.0 - q_sum).max(1e-30));
    if pr > 0.0 {
        kl += pr * (pr / qr).ln();
    }
    kl
}

struct Bounds {
    min_top1: f64,
    max_greedy_partings: usize,
    /// Largest |logit - reference| allowed over every position's reference top-40, or None
    /// to check position 0 only.
    max_logit_diff_all: Option<f64>,
}

fn check_model(dir: &str, bounds: Bounds) {
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(golden_dir().join(dir).join("logits.json")).unwrap(),
    )
    .unwrap();
    let Some(path) = model_path(golden["model_file"].as_str().unwrap()) else {
        return;
    };
    let model = Model::load(&path).unwrap();
    let pool = ThreadPool::new(2);
    let (mut positions, mut top1_agree, mut kl_sum) = (0usize, 0usize, 0.0f64);
    let mut partings = Vec::new();
    let mut worst_all = 0.0f64;
    for case in golden["cases"].as_array().unwrap() {
        let ids = ids_of(&case["ids"]);
        let mut s = model.new_session(256, 64);
        model.forward(&mut s, &pool, &ids, 0).unwrap();
        for (i, pos) in case["positions"].as_array().unwrap().iter().enumerate() {
            let ours = s.logits(i);
            let top = pos["top"].as_array().unwrap();
            let worst = top
                .iter()
                .map(|e| {
                    (e[1].as_f64().unwrap() - ours[e[0].as_u64().unwrap() as usize] as f64).abs()
                })
                .fold(0.0, f64::max);
            worst_all = worst_all.max(worst);
            if i == 0 {
                // Before any attention mixing, everything (embedding, norms, 8-bit activations,
                // quantized dot products, GELU) reproduces llama.cpp to the printed digits.
                assert!(
                    worst < 1e-4,
                    "{dir}: position 0 of {:?} differs from llama.cpp by {worst}",
                    case["prompt"]
                );
            }
            positions += 1;
            if ops::argmax(ours) == top[0][0].as_u64().unwrap() as usize {
                top1_agree += 1;
            } else {
                let gap = top[0][1].as_f64().unwrap() - top[1][1].as_f64().unwrap();
                eprintln!(
                    "{dir}: top-1 differs at position {i} of {:?} (reference gap {gap:.3})",
                    case["prompt"]
                );
            }
            kl_sum += kl_top_k(top, pos["logsumexp"].as_f64().unwrap(), ours);
        }
        // Greedy continuation, one token at a time through the KV cache.
        let greedy = &case["greedy"];
        let want = ids_of(&greedy["ids"]);
        let gaps: Vec<f64> = greedy["top2_gap"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for step in 0..want.len() {
            let t = ops::argmax(s.last_logits()) as u32;
            if t != want[step] {
                if gaps[..=step].iter().any(|&g| g < 0.1) {
                    eprintln!("{dir}: greedy parts at step {step} after a near-tie (allowed)");
                } else {
                    eprintln!(
                        "{dir}: greedy parts at step {step}, reference gap {:.3}",
                        gaps[step]
                    );
                    partings.push(step);
                }
                break;
            }
            model.forward(&mut s, &pool, &[t], 0).unwrap();
        }
    }
    let agree = top1_agree as f64 / positions as f64;
    let kl = kl_sum / positions as f64;
    eprintln!(
        "{dir}: {positions} positions, top-1 agreement {:.2}%, mean KL {kl:.5}, greedy partings without a near-tie: {partings:?}, largest logit difference {worst_all:.6}",
        agree * 100.0
    );
    if let Some(max) = bounds.max_logit_diff_all {
        assert!(
            worst_all <= max,
            "{dir}: a reference top-40 logit differs by {worst_all} (bound {max})"
        );
    }
    assert!(kl <= 0.01, "{dir}: mean KL {kl} (golden README: <= 0.01)");
    assert!(
        agree >= bounds.min_top1,
        "{dir}: top-1 agreement {agree} < {}",
        bounds.min_top1
    );
    assert!(
        partings.len() <= bounds.max_greedy_partings,
        "{dir}: greedy parted from llama.cpp at {partings:?}"
    );
}

#[test]
fn smollm2_matches_llama_cpp() {
    check_model(
        "smollm2-135m-instruct-q4_1",
        Bounds {
            min_top1: 0.99,
            max_greedy_partings: 0,
            max_logit_diff_all: Some(1e-4),
        },
    );
}

#[test]
fn gemma3_matches_llama_cpp() {
    check_model(
        "gemma3-270m-q4_k_m",
        Bounds {
            min_top1: 0.99,
            max_greedy_partings: 0,
            // Measured 0.64; a regression in any layer moves logits by more.
            max_logit_diff_all: Some(1.0),
        },
    );
}
