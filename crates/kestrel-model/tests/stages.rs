//! `Model::forward_stage` against `Model::forward`: running layers `0..k` to hidden states and
//! then `k..n` from them to logits (two sessions, as a device and a server would) must give
//! bit-identical logits at every split point, for a multi-chunk prompt and for decode steps.

use kestrel_kernels::ThreadPool;
use kestrel_model::{Model, StageInput, StageOutput};
use std::path::PathBuf;

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

fn check(file: &str) {
    let Some(p) = model_path(file) else { return };
    let model = Model::load(&p).unwrap();
    let pool = ThreadPool::new(2);
    let hp = model.hparams().clone();
    let n_vocab = hp.n_vocab as u32;
    // 40 tokens in micro-batches of 16: three chunks of different sizes.
    let prompt: Vec<u32> = (0..40).map(|j| (j * 7919 + 13) % n_vocab).collect();
    let mut whole = model.new_session(128, 16);
    model.forward(&mut whole, &pool, &prompt, 0).unwrap();
    let want: Vec<Vec<f32>> = (0..prompt.len())
        .map(|i| whole.logits(i).to_vec())
        .collect();
    let next = [17u32, 4242 % n_vocab, 99];
    let mut want_steps = Vec::new();
    for &t in &next {
        model.forward(&mut whole, &pool, &[t], 0).unwrap();
        want_steps.push(whole.last_logits().to_vec());
    }
    for k in [1, hp.n_layer / 2, hp.n_layer - 1] {
        let mut dev = model.new_session(128, 16);
        let mut srv = model.new_session(128, 16);
        let mut h = Vec::new();
        let input = StageInput::Tokens(&prompt);
        model
            .forward_stage(&mut dev, &pool, input, 0..k, StageOutput::Hidden(&mut h))
            .unwrap();
        assert_eq!(h.len(), prompt.len() * hp.n_embd);
        let out = StageOutput::Logits { from: 0 };
        let layers = k..hp.n_layer;
        model
            .forward_stage(&mut srv, &pool, StageInput::Hidden(&h), layers, out)
            .unwrap();
        for (i, w) in want.iter().enumerate() {
            assert!(
                srv.logits(i) == &w[..],
                "{file}: k={k}, prompt position {i} differs"
            );
        }
        for (&t, w) in next.iter().zip(&want_steps) {
            h.clear();
            let input = StageInput::Tokens(&[t]);
            model
                .forward_stage(&mut dev, &pool, input, 0..k, StageOutput::Hidden(&mut h))
                .unwrap();
            let out = StageOutput::Logits { from: 0 };
            let layers = k..hp.n_layer;
            model
                .forward_stage(&mut srv, &pool, StageInput::Hidden(&h), layers, out)
                .unwrap();
            assert!(
                srv.last_logits() == &w[..],
                "{file}: k={k}, decode step differs"
            );
        }
    }
    // Bad ranges and ragged hidden states are errors, not panics.
    let mut s = model.new_session(16, 16);
    let bad = model.forward_stage(
        &mut s,
        &pool,
        StageInput::Tokens(&[1]),
        0..hp.n_layer + 1,
        StageOutput::Logits { from: 0 },
    );
    assert!(bad.is_err());
    let ragged = vec![0f32; hp.n_embd + 1];
    let bad = model.forward_stage(
        &mut s,
        &pool,
        StageInput::Hidden(&ragged),
        1..hp.n_layer,
        StageOutput::Logits { from: 0 },
    );
    assert!(bad.is_err());
}

#[test]
fn smollm2_split_at_any_layer_is_exact() {
    check("SmolLM2-135M-Instruct.Q4_1.gguf");
}

#[test]
fn gemma3_split_at_any_layer_is_exact() {
    check("gemma-3-270m-q4_k_m.gguf");
}
