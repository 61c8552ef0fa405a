//! A batched decode step (`Model::forward_multi`) against one-token `Model::forward` calls on
//! separate sessions: the logits must be bit-identical at any batch (the matmuls take the
//! decode arithmetic for every column, `Arith::Decode`, whatever the weight format), and so the
//! greedy continuations are equal.

use kestrel_kernels::ThreadPool;
use kestrel_model::{Model, Session, StageInput, StageOutput};
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

/// How many of two sessions' last logits differ in any bit (after checking they are at the
/// same position).
fn differing(a: &Session, b: &Session) -> usize {
    assert_eq!(a.n_past(), b.n_past());
    let (a, b) = (a.last_logits(), b.last_logits());
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count()
}

fn argmax(x: &[f32]) -> u32 {
    let mut b = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[b] {
            b = i;
        }
    }
    b as u32
}

/// Prompts of different lengths (so the sessions sit at different positions); `late` of them
/// join after a few batched steps, as a newly admitted request does.
fn check(file: &str, n_seqs: usize, steps: usize) {
    let Some(p) = model_path(file) else { return };
    let model = Model::load(&p).unwrap();
    let pool = ThreadPool::new(2);
    let n_vocab = model.hparams().n_vocab as u32;
    let prompts: Vec<Vec<u32>> = (0..n_seqs)
        .map(|i| {
            (0..(3 + 5 * i))
                .map(|j| ((j * 7919 + i * 104729) as u32 + 1) % n_vocab)
                .collect()
        })
        .collect();
    let new = || model.new_session(256, 64);
    let (mut batched, mut single): (Vec<Session>, Vec<Session>) = (
        prompts.iter().map(|_| new()).collect(),
        prompts.iter().map(|_| new()).collect(),
    );
    let mut next_b = vec![0u32; n_seqs];
    let mut next_s = vec![0u32; n_seqs];
    for i in 0..n_seqs {
        let pr = &prompts[i];
        model
            .forward(&mut batched[i], &pool, pr, pr.len() - 1)
            .unwrap();
        model
            .forward(&mut single[i], &pool, pr, pr.len() - 1)
            .unwrap();
        next_b[i] = argmax(batched[i].last_logits());
        next_s[i] = argmax(single[i].last_logits());
    }
    let mut ms = model.new_multi_scratch(n_seqs);
    let late = n_seqs / 2;
    for step in 0..steps {
        // The last `late` sessions join at step 2.
        let active: Vec<usize> = (0..n_seqs)
            .filter(|&i| step >= 2 || i < n_seqs - late)
            .collect();
        let toks: Vec<u32> = active.iter().map(|&i| next_b[i]).collect();
        {
            let mut refs: Vec<&mut Session> = batched
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| active.contains(i))
                .map(|(_, s)| s)
                .collect();
            model
                .forward_multi(&mut refs, &toks, &pool, &mut ms)
                .unwrap();
        }
        for &i in &active {
            model
                .forward(&mut single[i], &pool, &[next_s[i]], 0)
                .unwrap();
            let (a, b) = (batched[i].last_logits(), single[i].last_logits());
            let differ = differing(&batched[i], &single[i]);
            assert_eq!(
                differ, 0,
                "{file}: step {step}, session {i}: {differ} logits differ"
            );
            next_b[i] = argmax(a);
            next_s[i] = argmax(b);
            assert_eq!(next_b[i], next_s[i]);
        }
    }
}

#[test]
fn batched_step_equals_single_smollm2() {
    check("SmolLM2-135M-Instruct.Q4_1.gguf", 5, 6);
    // 8 rows: the matmul's tiled path.
    check("SmolLM2-135M-Instruct.Q4_1.gguf", 9, 3);
}

#[test]
fn batched_step_equals_single_gemma3() {
    check("gemma-3-270m-q4_k_m.gguf", 3, 4);
    // 9 rows: past the 4 and 8 rows where llama.cpp's Q4_K and Q6_K batch kernels take over
    // (a prompt pass follows those; a batched decode step must not).
    check("gemma-3-270m-q4_k_m.gguf", 9, 3);
}

#[test]
fn forward_multi_rejects_mismatched_input() {
    let Some(p) = model_path("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let model = Model::load(&p).unwrap();
    let pool = ThreadPool::new(1);
    let mut ms = model.new_multi_scratch(1);
    let mut a = model.new_session(4, 4);
    let mut b = model.new_session(4, 4);
    let mut refs = vec![&mut a, &mut b];
    assert!(model
        .forward_multi(&mut refs, &[1], &pool, &mut ms)
        .is_err());
    assert!(model
        .forward_multi(&mut refs, &[1, 2], &pool, &mut ms)
        .is_err());
}

#[test]
fn embeddings_are_unit_length_and_deterministic() {
    let Some(p) = model_path("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let model = Model::load(&p).unwrap();
    let pool = ThreadPool::new(2);
    let mut s = model.new_session(64, 8);
    let toks: Vec<u32> = (100..120).collect();
    let a = model.embed(&mut s, &pool, &toks).unwrap();
    let b = model.embed(&mut s, &pool, &toks).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), model.hparams().n_embd);
    let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    assert!(model.embed(&mut s, &pool, &[]).is_err());
}

/// The device half of a split served to several sequences (`forward_multi_stage` through
/// layers `0..k`) gives each the same hidden state, bit for bit, as its own `forward_stage`.
#[test]
fn batched_stage_equals_single_stage_smollm2() {
    let Some(p) = model_path("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let model = Model::load(&p).unwrap();
    let pool = ThreadPool::new(2);
    let (e, n_vocab) = (model.hparams().n_embd, model.hparams().n_vocab as u32);
    let (k, n_seqs) = (12, 4);
    let new = || model.new_session(128, 32);
    let mut batched: Vec<Session> = (0..n_seqs).map(|_| new()).collect();
    let mut single: Vec<Session> = (0..n_seqs).map(|_| new()).collect();
    let mut h = Vec::new();
    for i in 0..n_seqs {
        let prompt: Vec<u32> = (0..(2 + 3 * i) as u32)
            .map(|j| (j * 7919 + 11) % n_vocab)
            .collect();
        for s in [&mut batched[i], &mut single[i]] {
            let out = StageOutput::Hidden(&mut h);
            model
                .forward_stage(s, &pool, StageInput::Tokens(&prompt), 0..k, out)
                .unwrap();
        }
    }
    let mut ms = model.new_multi_scratch(n_seqs);
    let mut one = Vec::new();
    for step in 0..4u32 {
        let toks: Vec<u32> = (0..n_seqs as u32)
            .map(|i| (step * 104729 + i * 31 + 5) % n_vocab)
            .collect();
        let mut refs: Vec<&mut Session> = batched.iter_mut().collect();
        model
            .forward_multi_stage(&mut refs, &toks, &pool, &mut ms, 0..k, &mut h)
            .unwrap();
        assert_eq!(h.len(), n_seqs * e);
        for i in 0..n_seqs {
            one.clear();
            let out = StageOutput::Hidden(&mut one);
            let input = StageInput::Tokens(&toks[i..i + 1]);
            model
                .forward_stage(&mut single[i], &pool, input, 0..k, out)
                .unwrap();
            assert_eq!(batched[i].n_past(), single[i].n_past());
            let row = &h[i * e..(i + 1) * e];
            let differ = row
                .iter()
                .zip(&one)
                .filter(|(x, y)| x.to_bits() != y.to_bits())
                .count();
            assert_eq!(
                differ, 0,
                "step {step}, session {i}: {differ} values differ"
            );
        }
    }
    let mut refs: Vec<&mut Session> = batched.iter_mut().collect();
    let toks = vec![1; n_seqs];
    let bad = model.forward_multi_stage(&mut refs, &toks, &pool, &mut ms, 0..31, &mut h);
    assert!(bad.is_err(), "layers past the model's 30 are refused");
}

/// Several prompts in one pass (`forward_prompts`) against each prompt's own `forward`: the
/// last-token logits and then a few decode steps must be bit-identical. Lengths cover prompts
/// with no batch-order rows (1-3 tokens), only batch-order rows (4, 12) and both, and some
/// sessions already hold a prefix (a reused cache).
fn check_prompts(file: &str, lens: &[usize], threads: usize) {
    let Some(p) = model_path(file) else { return };
    let model = Model::load(&p).unwrap();
    let pool = ThreadPool::new(threads);
    let n_vocab = model.hparams().n_vocab as u32;
    let n = lens.len();
    let tok = |i: usize, j: usize| ((j * 7919 + i * 104729) as u32 + 3) % n_vocab;
    let new = || model.new_session(256, 128);
    let (mut batched, mut single): (Vec<Session>, Vec<Session>) = (
        (0..n).map(|_| new()).collect(),
        (0..n).map(|_| new()).collect(),
    );
    // Every third session starts with a 6-token prefix already cached.
    let prefix = |i: usize| if i % 3 == 1 { 6 } else { 0 };
    for i in (0..n).filter(|&i| prefix(i) > 0) {
        let pre: Vec<u32> = (0..prefix(i)).map(|j| tok(i, j)).collect();
        for s in [&mut batched[i], &mut single[i]] {
            model.forward(s, &pool, &pre, pre.len() - 1).unwrap();
        }
    }
    let prompts: Vec<Vec<u32>> = (0..n)
        .map(|i| (0..lens[i]).map(|j| tok(i, prefix(i) + j)).collect())
        .collect();
    let views: Vec<&[u32]> = prompts.iter().map(|p| p.as_slice()).collect();
    {
        let mut refs: Vec<&mut Session> = batched.iter_mut().collect();
        model.forward_prompts(&mut refs, &views, &pool).unwrap();
    }
    for i in 0..n {
        let pr = &prompts[i];
        model
            .forward(&mut single[i], &pool, pr, pr.len() - 1)
            .unwrap();
    }
    let mut ms = model.new_multi_scratch(n);
    for step in 0..3 {
        let mut next = Vec::with_capacity(n);
        for i in 0..n {
            let differ = differing(&batched[i], &single[i]);
            assert_eq!(
                differ, 0,
                "{file}: prompt {i} ({} tokens), step {step}: {differ} logits differ",
                lens[i]
            );
            next.push(argmax(batched[i].last_logits()));
        }
        let mut refs: Vec<&mut Session> = batched.iter_mut().collect();
        model
            .forward_multi(&mut refs, &next, &pool, &mut ms)
            .unwrap();
        for i in 0..n {
            model.forward(&mut single[i], &pool, &[next[i]], 0).unwrap();
        }
    }
}

#[test]
fn prompt_pass_equals_each_prompt_alone_smollm2() {
    check_prompts("SmolLM2-135M-Instruct.Q4_1.gguf", &[7, 1, 13, 2, 22], 2);
}

#[test]
fn prompt_pass_equals_each_prompt_alone_gemma3() {
    // Q4_K and Q6_K: heads and tails of several prompts in one call.
    check_prompts("gemma-3-270m-q4_k_m.gguf", &[7, 13, 3, 1, 4, 22, 12, 5], 2);
    check_prompts("gemma-3-270m-q4_k_m.gguf", &[9, 6], 1);
}

#[test]
fn prompt_pass_rejects_what_does_not_fit() {
    let Some(p) = model_path("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let model = Model::load(&p).unwrap();
    let pool = ThreadPool::new(1);
    let mut a = model.new_session(16, 8);
    let mut b = model.new_session(16, 8);
    let (five, empty): (Vec<u32>, Vec<u32>) = (vec![1; 5], vec![]);
    let mut refs = vec![&mut a, &mut b];
    // More tokens than the first session's micro-batch, an empty prompt, a count mismatch.
    assert!(model
        .forward_prompts(&mut refs, &[&five, &five], &pool)
        .is_err());
    assert!(model
        .forward_prompts(&mut refs, &[&five, &empty], &pool)
        .is_err());
    assert!(model.forward_prompts(&mut refs, &[&five], &pool).is_err());
    assert_eq!((refs[0].n_past(), refs[1].n_past()), (0, 0));
}
