//! The generation loop on the default model: prefix reuse gives the same tokens as a fresh
//! sequence, limits and stop reasons, errors for prompts that do not fit.

use kestrel_engine::{Engine, EngineConfig, EngineError, GenParams, SamplerConfig, StopReason};

mod common;
use common::engine;

fn greedy(n: usize) -> GenParams {
    GenParams {
        max_tokens: n,
        sampler: SamplerConfig::greedy(),
        stop: vec![],
        ignore_eos: true,
        constraint: None,
    }
}

/// The one reuse rule: only prompt tokens are reused, never generated ones (their cache came
/// from one-token steps), and at least the last two prompt tokens are evaluated again.
#[test]
fn only_prompt_tokens_are_reused_and_two_are_evaluated() {
    let Some(e) = engine(512) else { return };
    let first = e.tokenize_prompt("The quick brown fox").unwrap();
    let mut seq = e.new_sequence();
    let g = e
        .generate(&mut seq, &first, &greedy(6), &mut |_| true)
        .unwrap();
    assert_eq!(g.timings.n_prompt_reused, 0);
    // The conversation so far as the next prompt: its generated part is evaluated again.
    let mut next = first.clone();
    next.extend_from_slice(&g.tokens);
    let again = e
        .generate(&mut seq, &next, &greedy(4), &mut |_| true)
        .unwrap();
    assert_eq!(again.timings.n_prompt_reused, first.len());
    assert_eq!(again.timings.n_prompt_eval, g.tokens.len());
    // The same prompt once more: all of it is cached exactly, the last two are redone.
    let third = e
        .generate(&mut seq, &next, &greedy(4), &mut |_| true)
        .unwrap();
    assert_eq!(third.timings.n_prompt_reused, next.len() - 2);
    assert_eq!(third.tokens, again.tokens);
    assert!(matches!(
        seq.prefill(&e.model, &e.pool, &[]),
        Err(EngineError::EmptyPrompt)
    ));
}

/// Prompts admitted together (`prefill_together`) against each alone (`Sequence::prefill`):
/// the same reuse, cache and last-token logits bit for bit, several passes when they do not
/// fit one micro-batch (64 tokens here), and each its own error.
#[test]
fn prompts_prefilled_together_equal_each_alone() {
    let Some(e) = engine(512) else { return };
    let texts = [
        "The quick brown fox",
        "Once upon a time, in a land far away, there lived a",
        "1, 2, 3,",
        "Hi",
        "The quick brown fox jumps over the lazy dog and then",
        "A list of colours: red, green, blue, yellow, orange, purple, pink, brown, black, \
         white, grey, cyan, magenta and",
        "In the beginning the sea was calm and the sky was clear; the boats went out at dawn \
         and came back at dusk with",
        // Longer than a micro-batch: prefilled alone, in two passes.
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen \
         fifteen sixteen seventeen eighteen nineteen twenty twenty-one twenty-two twenty-three \
         twenty-four twenty-five twenty-six twenty-seven twenty-eight twenty-nine thirty \
         thirty-one thirty-two thirty-three thirty-four thirty-five thirty-six thirty-seven",
        "",
    ];
    let prompts: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| {
            if t.is_empty() {
                Vec::new()
            } else {
                e.tokenize_prompt(t).unwrap()
            }
        })
        .collect();
    let seed = e.tokenize_prompt("The quick brown fox").unwrap();
    let fresh = || {
        let mut seqs: Vec<_> = prompts.iter().map(|_| e.new_sequence()).collect();
        // Two sequences hold an earlier prompt that the new one starts with (reuse).
        for i in [0, 4] {
            seqs[i].prefill(&e.model, &e.pool, &seed).unwrap();
        }
        seqs
    };
    let (mut together, mut alone) = (fresh(), fresh());
    let views: Vec<&[u32]> = prompts.iter().map(|p| p.as_slice()).collect();
    let got = {
        let mut refs: Vec<_> = together.iter_mut().collect();
        kestrel_engine::prefill_together(&e.model, &e.pool, &mut refs, &views)
    };
    // Prompts 0-5 share one pass; 6 is alone (the next would overflow the micro-batch), 7
    // is longer than one and 8 is empty.
    assert_eq!((got.shared_passes, got.shared_prompts), (1, 6));
    let got = got.reused;
    for (i, p) in prompts.iter().enumerate() {
        let want = alone[i].prefill(&e.model, &e.pool, p);
        match (&got[i], &want) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "prompt {i}: reused"),
            (Err(EngineError::EmptyPrompt), Err(EngineError::EmptyPrompt)) => continue,
            other => panic!("prompt {i}: {other:?}"),
        }
        let (t, a) = (&together[i], &alone[i]);
        assert_eq!((&t.tokens, t.exact()), (&a.tokens, a.exact()), "prompt {i}");
        let same = t
            .session
            .last_logits()
            .iter()
            .zip(a.session.last_logits())
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "prompt {i}: logits differ");
    }
    assert!(
        matches!(got[4], Ok(n) if n > 0),
        "the cached prefix is reused"
    );
}

/// A prompt evaluated a micro-batch per call (`ChunkedPrefill`, how the server interleaves a
/// long prompt with decode steps) against one `Sequence::prefill`: the same reuse, tokens,
/// exact prefix and last-token logits bit for bit, including a last micro-batch of one token
/// and a cached prefix.
#[test]
fn a_prompt_in_micro_batches_equals_one_prefill() {
    let Some(e) = engine(512) else { return };
    let text = "In the beginning the sea was calm and the sky was clear; the boats went out at \
        dawn and came back at dusk with their nets full. ";
    let long: Vec<u32> = e.tokenize_prompt(&text.repeat(12)).unwrap();
    // Micro-batches of 64: 3 full ones and a 1-token one; 2 and a half; one and a bit.
    for (len, cached) in [(193, 0), (160, 0), (150, 40), (70, 0)] {
        let p = &long[..len];
        let fresh = || {
            let mut s = e.new_sequence();
            if cached > 0 {
                s.prefill(&e.model, &e.pool, &p[..cached]).unwrap();
            }
            s
        };
        let (mut one, mut chunked) = (fresh(), fresh());
        let reused = one.prefill(&e.model, &e.pool, p).unwrap();
        let mut c = chunked.start_prefill(p).unwrap();
        let mut calls = 1;
        while !c.next(&mut chunked, &e.model, &e.pool, p).unwrap() {
            calls += 1;
        }
        assert_eq!(calls, (len - reused).div_ceil(64), "{len} tokens");
        assert_eq!(c.reused(), reused);
        assert_eq!(
            (&chunked.tokens, chunked.exact()),
            (&one.tokens, one.exact())
        );
        let same = chunked
            .session
            .last_logits()
            .iter()
            .zip(one.session.last_logits())
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{len} tokens after {cached}: logits differ");
    }
}

#[test]
fn prefix_reuse_matches_a_fresh_sequence() {
    let Some(e) = engine(512) else { return };
    let first = e.tokenize_prompt("The quick brown fox").unwrap();
    let second = e
        .tokenize_prompt("The quick brown fox jumps over the lazy dog. Then the fox")
        .unwrap();
    assert!(second.starts_with(&first));
    let mut seq = e.new_sequence();
    e.generate(&mut seq, &first, &greedy(4), &mut |_| true)
        .unwrap();
    let reused = e
        .generate(&mut seq, &second, &greedy(12), &mut |_| true)
        .unwrap();
    assert!(
        reused.timings.n_prompt_reused >= first.len(),
        "reused {}",
        reused.timings.n_prompt_reused
    );
    let mut fresh_seq = e.new_sequence();
    let fresh = e
        .generate(&mut fresh_seq, &second, &greedy(12), &mut |_| true)
        .unwrap();
    assert_eq!(fresh.timings.n_prompt_reused, 0);
    assert_eq!(reused.tokens, fresh.tokens);
    assert_eq!(reused.text, fresh.text);
}

#[test]
fn limits_and_stop_reasons() {
    let Some(e) = engine(48) else { return };
    let prompt = e.tokenize_prompt("1, 2, 3, 4, 5,").unwrap();
    let mut seq = e.new_sequence();
    let g = e
        .generate(&mut seq, &prompt, &greedy(5), &mut |_| true)
        .unwrap();
    assert_eq!((g.tokens.len(), g.stop_reason), (5, StopReason::MaxTokens));

    // The context (48) ends generation before max_tokens.
    let mut seq = e.new_sequence();
    let g = e
        .generate(&mut seq, &prompt, &greedy(1000), &mut |_| true)
        .unwrap();
    assert_eq!(g.stop_reason, StopReason::ContextFull);
    assert_eq!(
        prompt.len() + g.tokens.len(),
        48 + 1,
        "the last token is sampled but needs no slot"
    );

    // A callback returning false cancels.
    let mut seq = e.new_sequence();
    let mut calls = 0;
    let g = e
        .generate(&mut seq, &prompt, &greedy(20), &mut |_| {
            calls += 1;
            calls < 3
        })
        .unwrap();
    assert_eq!(g.stop_reason, StopReason::Cancelled);

    // Stop strings cut the text before them.
    let mut seq = e.new_sequence();
    let p = GenParams {
        stop: vec![" 8".into()],
        ..greedy(20)
    };
    let g = e.generate(&mut seq, &prompt, &p, &mut |_| true).unwrap();
    assert_eq!(g.stop_reason, StopReason::StopString);
    assert_eq!(g.text, " 6, 7,");
}

#[test]
fn prompts_that_do_not_fit_are_errors() {
    let Some(e) = engine(16) else { return };
    let long = e.tokenize_prompt(&"word ".repeat(40)).unwrap();
    let mut seq = e.new_sequence();
    let err = e
        .generate(&mut seq, &long, &greedy(4), &mut |_| true)
        .unwrap_err();
    assert!(
        matches!(err, EngineError::PromptTooLong { n_ctx: 16, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("context"));
    let err = e
        .generate(&mut seq, &[], &greedy(4), &mut |_| true)
        .unwrap_err();
    assert!(matches!(err, EngineError::EmptyPrompt));
    let bad = GenParams {
        sampler: SamplerConfig {
            top_p: 0.0,
            ..SamplerConfig::default()
        },
        ..greedy(4)
    };
    let short = e.tokenize_prompt("Hi").unwrap();
    assert!(matches!(
        e.generate(&mut seq, &short, &bad, &mut |_| true),
        Err(EngineError::Sampling(_))
    ));
    // The sequence is still usable after the errors.
    let g = e
        .generate(&mut seq, &short, &greedy(3), &mut |_| true)
        .unwrap();
    assert_eq!(g.tokens.len(), 3);
}

#[test]
fn context_beyond_training_length_is_refused() {
    let Some(path) = common::model_path(common::SMOLLM2) else {
        return;
    };
    let cfg = EngineConfig {
        n_ctx: 100_000_000,
        n_batch: 64,
        n_threads: 1,
    };
    let err = Engine::load(path, &cfg).err().expect("refused");
    assert!(err.to_string().contains("training context 8192"), "{err}");
}

#[test]
fn seeded_sampling_is_reproducible() {
    let Some(e) = engine(128) else { return };
    let prompt = e.tokenize_prompt("Once upon a time").unwrap();
    let p = GenParams {
        max_tokens: 16,
        sampler: SamplerConfig {
            temperature: 0.9,
            seed: 11,
            ..Default::default()
        },
        stop: vec![],
        ignore_eos: true,
        constraint: None,
    };
    let a = e
        .generate(&mut e.new_sequence(), &prompt, &p, &mut |_| true)
        .unwrap();
    let b = e
        .generate(&mut e.new_sequence(), &prompt, &p, &mut |_| true)
        .unwrap();
    assert_eq!(a.tokens, b.tokens);
    let c = e
        .generate(
            &mut e.new_sequence(),
            &prompt,
            &GenParams {
                sampler: SamplerConfig {
                    seed: 12,
                    ..p.sampler.clone()
                },
                ..p.clone()
            },
            &mut |_| true,
        )
        .unwrap();
    assert_ne!(
        a.tokens, c.tokens,
        "another seed should sample differently over 16 tokens"
    );
}
