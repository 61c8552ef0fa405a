//! A split run against the unsplit model, over HTTP on loopback, for every split layer of both
//! reference models: with f32 on the wire the logits must agree to 1e-4 (they are bit-identical
//! when both sides use the same micro-batches) and greedy decoding must pick the same tokens;
//! with f16 and q8 the KL-divergence from the unsplit logits is measured and printed.

mod common;

use common::*;
use kestrel_collab::split::{ReplyMode, SplitConfig, SplitDevice, WireFormat};
use kestrel_engine::Engine;
use std::time::Duration;

const STEPS: usize = 3;

/// The unsplit logits after the prompt and after each of `STEPS` greedy tokens, and the tokens.
fn reference(e: &Engine, prompt: &[u32]) -> (Vec<Vec<f32>>, Vec<u32>) {
    let mut s = e.model.new_session(256, 16);
    e.model
        .forward(&mut s, &e.pool, prompt, prompt.len() - 1)
        .unwrap();
    let mut logits = vec![s.last_logits().to_vec()];
    let mut toks = Vec::new();
    for _ in 0..STEPS {
        let t = argmax(logits.last().unwrap());
        toks.push(t);
        e.model.forward(&mut s, &e.pool, &[t], 0).unwrap();
        logits.push(s.last_logits().to_vec());
    }
    (logits, toks)
}

fn cfg(url: &str, k: usize, wire: WireFormat) -> SplitConfig {
    SplitConfig {
        remote: url.to_string(),
        k,
        wire,
        reply: ReplyMode::Full,
        timeout: Duration::from_secs(30),
        api_key: None,
        on_event: None,
    }
}

/// The split run's logits at each step, feeding the reference's tokens.
fn split_logits(
    e: &Engine,
    url: &str,
    k: usize,
    w: WireFormat,
    prompt: &[u32],
    toks: &[u32],
) -> Vec<Vec<f32>> {
    let mut d = SplitDevice::open(&e.model, &e.pool, 256, 16, cfg(url, k, w)).unwrap();
    assert!(d.is_remote(), "k={k}: {:?}", d.stats().fallback);
    let mut out = vec![d.feed(prompt).unwrap().to_vec()];
    for &t in toks {
        out.push(d.feed(&[t]).unwrap().to_vec());
    }
    assert!(
        d.stats().fallback.is_none(),
        "k={k}: {:?}",
        d.stats().fallback
    );
    assert_eq!(
        d.stats().steps_remote,
        prompt.len().div_ceil(16) + toks.len()
    );
    d.close();
    out
}

fn check(file: &str) {
    let Some(e) = engine(file, 1) else { return };
    let srv = server(&e, 1);
    let url = srv.url();
    let n = e.model.hparams().n_layer;
    // 37 tokens: steps of 16, 16 and 5 rows.
    let text = "The kestrel is a small falcon. It hovers over fields and roadsides, looking for voles, mice and large insects. When it sees one it drops onto it, and then it carries the prey to a post, where it";
    let mut prompt = e.tokenize_prompt(text).unwrap();
    prompt.truncate(37);
    assert!(prompt.len() > 32, "prompt too short: {}", prompt.len());
    let (want, toks) = reference(&e, &prompt);
    let mut identical = 0;
    for k in 1..n {
        let got = split_logits(&e, &url, k, WireFormat::F32, &prompt, &toks);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let diff = g.iter().zip(w).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                diff <= 1e-4,
                "{file} k={k} step {i}: max |logit diff| {diff}"
            );
            identical += (g == w) as usize;
            // Greedy decoding picks what the unsplit run picked.
            if i < toks.len() {
                assert_eq!(argmax(g), toks[i], "{file} k={k} step {i}");
            }
        }
    }
    eprintln!(
        "{file}: f32 split at every k in 1..{n}: {identical} of {} logit rows bit-identical, all within 1e-4",
        (n - 1) * (STEPS + 1)
    );
    assert_eq!(
        identical,
        (n - 1) * (STEPS + 1),
        "f32 split should be bit-exact"
    );
    for w in [WireFormat::F16, WireFormat::Q8] {
        for k in [1, n / 2, n - 1] {
            let got = split_logits(&e, &url, k, w, &prompt, &toks);
            let klds: Vec<f64> = got.iter().zip(&want).map(|(g, w)| kld(w, g)).collect();
            let mean = klds.iter().sum::<f64>() / klds.len() as f64;
            let max = klds.iter().fold(0f64, |m, &v| m.max(v));
            let top1 = got
                .iter()
                .zip(&want)
                .filter(|(g, w)| argmax(g) == argmax(w))
                .count();
            eprintln!(
                "{file}: wire {} k={k}: KLD mean {mean:.2e} max {max:.2e}, top-1 agreement {top1}/{}",
                w.as_str(),
                got.len()
            );
            // f16 once cost gemma-3 a KLD of 0.3 at k=9 (a value past 65504 became
            // infinity); with the row scale it is below 1e-2 everywhere.
            let bound = if w == WireFormat::F16 { 0.05 } else { 0.2 };
            assert!(
                mean.is_finite() && mean < bound,
                "{} k={k}: KLD {mean}",
                w.as_str()
            );
        }
    }
}

#[test]
fn smollm2_split_is_exact_at_every_layer() {
    check(SMOLLM2);
}

#[test]
fn gemma3_split_is_exact_at_every_layer() {
    check(GEMMA3);
}
