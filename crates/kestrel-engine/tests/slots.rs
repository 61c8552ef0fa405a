//! The engine's slots (`kestrel_engine::slots::Slots`, what the server's scheduler runs on):
//! which slot a prompt gets, and continuous batching without HTTP: prompts admitted together
//! and decoded in batched steps, with a late joiner, give each the greedy tokens
//! `Engine::generate` gives it alone.

use kestrel_engine::slots::Slots;
use kestrel_engine::{GenParams, SamplerConfig};

mod common;
use common::engine;

#[test]
fn a_prompt_gets_its_own_slot_then_the_longest_prefix_then_the_oldest() {
    let Some(e) = engine(256) else { return };
    let mut slots = Slots::new(&e, 3);
    let a = e.tokenize_prompt("The quick brown fox jumps").unwrap();
    let b = e.tokenize_prompt("Once upon a time there was").unwrap();
    // Fill slot caches: a (owned by "chat-1"), b, nothing.
    let sa = slots.claim(&a, Some("chat-1")).unwrap();
    let sb = slots.claim(&b, None).unwrap();
    slots.prefill(&e, &[(sa, &a), (sb, &b)]);
    assert!(slots.release(sa) && slots.release(sb));
    assert!(!slots.release(sb), "released twice");
    // A prompt that starts like b goes to b's slot, not the empty one or the owned one.
    let mut b2 = b.clone();
    b2.extend(e.tokenize_prompt(" a king").unwrap());
    let s = slots.claim(&b2, None).unwrap();
    assert_eq!(s, sb);
    // The conversation gets its own slot back even though its prompt matches nothing.
    let x = e.tokenize_prompt("Something else entirely").unwrap();
    assert_eq!(slots.claim(&x, Some("chat-1")), Some(sa));
    // The last free slot, then none.
    let third = slots.claim(&x, None).unwrap();
    assert!(third != sa && third != sb);
    assert_eq!(slots.claim(&x, None), None);
    // A conversation's slot is given to another only when nothing else is free.
    slots.release(sa);
    slots.release(third);
    assert_eq!(slots.claim(&a, None), Some(third));
    assert_eq!(slots.owned_by("chat-1"), Some(sa));
    assert_eq!(slots.claim(&a, Some("chat-2")), Some(sa));
    assert_eq!(slots.owned_by("chat-1"), None);
    assert_eq!(slots.owned_by("chat-2"), Some(sa));
}

#[test]
fn continuous_batching_equals_each_request_alone() {
    let Some(e) = engine(256) else { return };
    let texts = [
        "The three primary colours are",
        "def fibonacci(n):",
        "The capital of France is",
        "Once upon a time, in a small village,",
    ];
    let n_gen = 12;
    let want: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| {
            let p = e.tokenize_prompt(t).unwrap();
            let params = GenParams {
                max_tokens: n_gen,
                sampler: SamplerConfig::greedy(),
                stop: vec![],
                ignore_eos: true,
                constraint: None,
            };
            let mut seq = e.new_sequence();
            e.generate(&mut seq, &p, &params, &mut |_| true)
                .unwrap()
                .tokens
        })
        .collect();
    let mut slots = Slots::new(&e, texts.len());
    let prompts: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| e.tokenize_prompt(t).unwrap())
        .collect();
    // (slot, tokens so far) per request; the last one joins after four steps.
    let mut got: Vec<Option<(usize, Vec<u32>)>> = vec![None; texts.len()];
    let late = texts.len() - 1;
    let mut step = 0;
    while got
        .iter()
        .any(|g| g.as_ref().is_none_or(|(_, t)| t.len() < n_gen))
    {
        let joining: Vec<usize> = (0..texts.len())
            .filter(|&i| got[i].is_none() && (i != late || step >= 4))
            .collect();
        let claimed: Vec<(usize, &[u32])> = joining
            .iter()
            .map(|&i| {
                (
                    slots.claim(&prompts[i], None).unwrap(),
                    prompts[i].as_slice(),
                )
            })
            .collect();
        let done = slots.prefill(&e, &claimed);
        assert!(done.reused.iter().all(|r| r.is_ok()));
        if claimed.len() > 1 {
            assert_eq!(done.shared_prompts, claimed.len());
        }
        for (&i, &(s, _)) in joining.iter().zip(&claimed) {
            got[i] = Some((s, Vec::new()));
        }
        let mut feed = Vec::new();
        for (s, toks) in got.iter_mut().flatten() {
            if toks.len() < n_gen {
                let t = kestrel_kernels::ops::argmax(slots[*s].seq.session.last_logits()) as u32;
                toks.push(t);
                feed.push((*s, t));
            }
        }
        slots.step(&e, &feed).unwrap();
        step += 1;
    }
    for (i, g) in got.into_iter().enumerate() {
        assert_eq!(g.unwrap().1, want[i], "{:?}", texts[i]);
    }
}
