//! `Model::forward_verify` against one-token decode steps: every row of a verification pass
//! must be bit-identical to the step that decodes that token alone (speculative decoding then
//! reproduces plain greedy output exactly), while a plain multi-token pass need not be.

use kestrel_kernels::ThreadPool;
use kestrel_model::Model;
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

/// Returns how many rows of a plain batched pass differed from decode (for the report).
fn check(file: &str) -> usize {
    let Some(p) = model_path(file) else { return 0 };
    let model = Model::load(&p).unwrap();
    let pool = ThreadPool::new(2);
    let n_vocab = model.hparams().n_vocab as u32;
    let prompt: Vec<u32> = (0..37).map(|j| (j * 7919 + 13) % n_vocab).collect();
    let draft: Vec<u32> = (0..11).map(|j| (j * 104_729 + 5) % n_vocab).collect();

    let mut dec = model.new_session(128, 64);
    model
        .forward(&mut dec, &pool, &prompt, prompt.len() - 1)
        .unwrap();
    let mut want = Vec::new();
    for &t in &draft {
        model.forward(&mut dec, &pool, &[t], 0).unwrap();
        want.push(dec.last_logits().to_vec());
    }

    let mut ver = model.new_session(128, 64);
    model
        .forward(&mut ver, &pool, &prompt, prompt.len() - 1)
        .unwrap();
    // Twice: after a rollback the cache must give the same answers again.
    for _ in 0..2 {
        model.forward_verify(&mut ver, &pool, &draft).unwrap();
        assert_eq!(ver.n_logit_rows(), draft.len());
        for (i, w) in want.iter().enumerate() {
            assert!(
                ver.logits(i) == &w[..],
                "{file}: row {i} differs from decode"
            );
        }
        ver.truncate(prompt.len());
    }

    let mut plain = model.new_session(128, 64);
    model
        .forward(&mut plain, &pool, &prompt, prompt.len() - 1)
        .unwrap();
    model.forward(&mut plain, &pool, &draft, 0).unwrap();
    (0..draft.len())
        .filter(|&i| plain.logits(i) != &want[i][..])
        .count()
}

#[test]
fn verification_equals_decode_smollm2() {
    let n = check("SmolLM2-135M-Instruct.Q4_1.gguf");
    eprintln!("smollm2: {n} rows of a plain batched pass differ from decode");
}

#[test]
fn verification_equals_decode_gemma3() {
    let n = check("gemma-3-270m-q4_k_m.gguf");
    eprintln!("gemma3: {n} rows of a plain batched pass differ from decode");
}
