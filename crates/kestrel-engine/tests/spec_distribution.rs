//! Speculative sampling keeps the target's distribution: drafts drawn from q and judged by the
//! acceptance rule (accept with min(1, p/q), else draw from norm(max(0, p - q))) must yield
//! tokens distributed as p. Chi-square goodness of fit over many seeded draws, on a small
//! synthetic vocabulary and on a real next-token distribution (SmolLM2 as target, its own
//! first 12 layers as drafter); the same test must reject the rule with its correction step
//! removed (on rejection, draw from p), so it has the power to catch a broken rule.

use kestrel_engine::speculative::{judge, Verdict};
use kestrel_engine::{Engine, EngineConfig, SamplerConfig};
use kestrel_model::sampler::Rng;
use kestrel_model::{Sampler, StageInput, StageOutput};
use std::collections::HashMap;
use std::path::PathBuf;

fn draw(d: &[(u32, f64)], rng: &mut Rng) -> u32 {
    let r = rng.next_f64();
    let mut cum = 0.0;
    for &(t, w) in d {
        cum += w;
        if r < cum {
            return t;
        }
    }
    d.last().unwrap().0
}

/// One speculative step with a one-token draft: the token it ends with.
fn spec_step(p: &[(u32, f64)], q: &[(u32, f64)], rng: &mut Rng, scratch: &mut Vec<f64>) -> u32 {
    let x = draw(q, rng);
    match judge(x, p, q, rng, scratch) {
        Verdict::Accept => x,
        Verdict::Reject(t) => t,
    }
}

/// The rule without its correction: a rejected draft is replaced by a fresh draw from p.
fn uncorrected_step(p: &[(u32, f64)], q: &[(u32, f64)], rng: &mut Rng) -> u32 {
    let x = draw(q, rng);
    let px = p.iter().find(|e| e.0 == x).map_or(0.0, |e| e.1);
    let qx = q.iter().find(|e| e.0 == x).map_or(0.0, |e| e.1);
    if rng.next_f64() < (px / qx).min(1.0) {
        x
    } else {
        draw(p, rng)
    }
}

/// Chi-square statistic of `counts` against `p` over `n` draws (tokens expected fewer than 5
/// times pooled into one bin), with its degrees of freedom.
fn chi_square(counts: &HashMap<u32, usize>, p: &[(u32, f64)], n: usize) -> (f64, usize) {
    let mut stat = 0.0;
    let mut bins = 0;
    let (mut pool_e, mut pool_o) = (0.0, 0usize);
    for &(t, pt) in p {
        let e = pt * n as f64;
        let o = counts.get(&t).copied().unwrap_or(0);
        if e < 5.0 {
            pool_e += e;
            pool_o += o;
        } else {
            stat += (o as f64 - e).powi(2) / e;
            bins += 1;
        }
    }
    // Tokens outside p's support count in the pooled bin.
    let outside: usize = counts
        .iter()
        .filter(|(t, _)| !p.iter().any(|e| e.0 == **t))
        .map(|(_, c)| *c)
        .sum();
    pool_o += outside;
    if pool_e > 0.0 {
        stat += (pool_o as f64 - pool_e).powi(2) / pool_e;
        bins += 1;
    } else if pool_o > 0 {
        return (f64::INFINITY, bins.max(2) - 1);
    }
    (stat, bins - 1)
}

/// The chi-square quantile at 1 - 1e-4 (Wilson-Hilferty; z = 3.719).
fn critical(df: usize) -> f64 {
    let k = df as f64;
    let a = 2.0 / (9.0 * k);
    k * (1.0 - a + 3.719 * a.sqrt()).powi(3)
}

fn histogram(n: usize, mut f: impl FnMut() -> u32) -> HashMap<u32, usize> {
    let mut h = HashMap::new();
    for _ in 0..n {
        *h.entry(f()).or_insert(0) += 1;
    }
    h
}

/// Both checks: the rule fits p, the uncorrected rule does not.
fn check(p: &[(u32, f64)], q: &[(u32, f64)], n: usize, what: &str) {
    let mut rng = Rng::new(2024);
    let mut scratch = Vec::new();
    let h = histogram(n, || spec_step(p, q, &mut rng, &mut scratch));
    let (stat, df) = chi_square(&h, p, n);
    eprintln!(
        "{what}: chi2 {stat:.1} on {df} df (critical {:.1})",
        critical(df)
    );
    assert!(stat < critical(df), "{what}: chi2 {stat:.1} on {df} df");

    let mut rng = Rng::new(2024);
    let h = histogram(n, || uncorrected_step(p, q, &mut rng));
    let (bad, df) = chi_square(&h, p, n);
    eprintln!("{what} without correction: chi2 {bad:.1} on {df} df");
    assert!(
        bad > critical(df),
        "{what}: the uncorrected rule passed (chi2 {bad:.1})"
    );
}

#[test]
fn synthetic_vocabulary_keeps_target_distribution() {
    let p = [
        (0u32, 0.40),
        (1, 0.25),
        (2, 0.15),
        (3, 0.10),
        (4, 0.07),
        (5, 0.03),
    ];
    // q favours the tail and misses token 1: both directions of p/q occur.
    let q = [
        (0u32, 0.10),
        (2, 0.30),
        (3, 0.05),
        (4, 0.25),
        (5, 0.20),
        (6, 0.10),
    ];
    check(&p, &q, 200_000, "synthetic");
    // A deterministic drafter (q a point mass, as n-gram lookup) on a token p gives 0.15.
    let mut rng = Rng::new(9);
    let mut scratch = Vec::new();
    let n = 100_000;
    let h = histogram(n, || match judge(2, &p, &[], &mut rng, &mut scratch) {
        Verdict::Accept => 2,
        Verdict::Reject(t) => t,
    });
    let (stat, df) = chi_square(&h, &p, n);
    assert!(
        stat < critical(df),
        "point-mass draft: chi2 {stat:.1} on {df} df"
    );
}

fn model_path(file: &str) -> Option<PathBuf> {
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

#[test]
fn real_next_token_distribution_is_kept() {
    let Some(path) = model_path("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let cfg = EngineConfig {
        n_ctx: 128,
        n_batch: 64,
        n_threads: 2,
    };
    let e = Engine::load(&path, &cfg).unwrap();
    let prompt = e
        .tokenize_prompt("My favourite thing to do on a rainy day is")
        .unwrap();
    // Sampling at temperature 1 with a wide top-k, so p has many tokens.
    let sc = SamplerConfig {
        temperature: 1.0,
        top_k: 100,
        top_p: 1.0,
        min_p: 0.0,
        ..SamplerConfig::default()
    };
    let mut s = e.model.new_session(128, 64);
    e.model
        .forward(&mut s, &e.pool, &prompt, prompt.len() - 1)
        .unwrap();
    let mut p = Vec::new();
    Sampler::new(sc.clone()).distribution(s.last_logits(), &mut p);

    let mut d = e.model.new_session(128, 64);
    let out = StageOutput::Logits {
        from: prompt.len() - 1,
    };
    e.model
        .forward_stage(&mut d, &e.pool, StageInput::Tokens(&prompt), 0..12, out)
        .unwrap();
    let mut q = Vec::new();
    Sampler::new(sc).distribution(d.last_logits(), &mut q);
    let tv: f64 = {
        let mut all: HashMap<u32, (f64, f64)> = HashMap::new();
        p.iter().for_each(|&(t, w)| all.entry(t).or_default().0 = w);
        q.iter().for_each(|&(t, w)| all.entry(t).or_default().1 = w);
        all.values().map(|(a, b)| (a - b).abs()).sum::<f64>() / 2.0
    };
    eprintln!("total variation between target and drafter: {tv:.3}");
    assert!(tv > 0.2, "the distributions are too close to test anything");
    check(&p, &q, 200_000, "smollm2 layers 12/30");
}
