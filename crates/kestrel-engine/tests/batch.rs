//! Continuous batching without HTTP (`kestrel_engine::batch`, what the server's scheduler runs
//! its plain steps on): requests admitted together and decoded in batched steps, greedy and
//! sampled with seeds, with stop strings and different limits, each give exactly what
//! `Engine::generate` gives them alone; a client that leaves ends only its own sequence, and
//! one whose time is up ends at once.

mod common;
use common::engine;
use kestrel_engine::batch::{self, Client, Seq};
use kestrel_engine::decode::primed_sampler;
use kestrel_engine::decoding::{Decoding, Sink};
use kestrel_engine::slots::Slots;
use kestrel_engine::{Engine, GenParams, SamplerConfig, StopReason};
use std::time::Instant;

#[derive(Default)]
struct Collect {
    text: String,
    tokens: Vec<u32>,
    done: Option<StopReason>,
    /// Leave after this many tokens.
    leave_after: Option<usize>,
    expired: bool,
}

impl Sink for Collect {
    fn token(&mut self, id: u32, text: String, _logits: &[f32]) -> bool {
        self.tokens.push(id);
        self.text.push_str(&text);
        true
    }
    fn text(&mut self, text: String) -> bool {
        self.text.push_str(&text);
        true
    }
}

impl Client for Collect {
    fn gone(&self) -> bool {
        self.leave_after.is_some_and(|n| self.tokens.len() >= n)
    }
    fn expired(&self, _now: Instant) -> bool {
        self.expired
    }
    fn done(&mut self, reason: StopReason, generated: usize) {
        assert_eq!(generated, self.tokens.len());
        self.done = Some(reason);
    }
}

/// Admit every request at once (prompts evaluated together), then step until all end.
fn serve(e: &Engine, reqs: Vec<(Vec<u32>, GenParams, Collect)>) -> Vec<Collect> {
    let mut slots = Slots::new(e, reqs.len());
    let claimed: Vec<(usize, Vec<u32>, GenParams, Collect)> = reqs
        .into_iter()
        .map(|(p, g, c)| (slots.claim(&p, None).unwrap(), p, g, c))
        .collect();
    let prompts: Vec<(usize, &[u32])> = claimed
        .iter()
        .map(|(s, p, ..)| (*s, p.as_slice()))
        .collect();
    let done = slots.prefill(e, &prompts);
    assert!(done.reused.iter().all(|r| r.is_ok()));
    assert_eq!(done.shared_prompts, claimed.len());
    let mut active: Vec<Seq<Collect>> = claimed
        .into_iter()
        .map(|(s, p, g, c)| {
            let dec = Decoding::new(
                primed_sampler(&g.sampler, &p),
                &g.stop,
                g.max_tokens,
                g.ignore_eos,
            );
            Seq::new(s, dec, c)
        })
        .collect();
    // Slot -> request, to give the answers back in request order.
    let order: Vec<usize> = active.iter().map(|a| a.slot).collect();
    let mut out: Vec<(usize, Collect)> = Vec::new();
    while !active.is_empty() {
        let (ended, r) = batch::step(e, &mut slots, &mut active, Instant::now());
        r.unwrap();
        for a in ended {
            slots.release(a.slot);
            let i = order.iter().position(|&s| s == a.slot).unwrap();
            out.push((i, a.client));
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, c)| c).collect()
}

fn params(max_tokens: usize, temperature: f32, seed: u64, stop: &[&str]) -> GenParams {
    GenParams {
        max_tokens,
        sampler: SamplerConfig {
            temperature,
            seed,
            ..SamplerConfig::default()
        },
        stop: stop.iter().map(|s| s.to_string()).collect(),
        ignore_eos: false,
        constraint: None,
    }
}

#[test]
fn batched_requests_equal_each_alone() {
    let Some(e) = engine(256) else { return };
    let cases = [
        ("The three primary colours are", params(16, 0.0, 0, &[])),
        (
            "Once upon a time, in a small village,",
            params(20, 0.9, 7, &[]),
        ),
        ("def fibonacci(n):", params(24, 0.0, 0, &["\n\n"])),
        ("The capital of France is", params(12, 0.7, 123, &[])),
        ("1, 2, 3, 4,", params(8, 0.0, 0, &[" 7"])),
        // A chat turn the model ends itself (end-of-generation).
        (
            "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
            params(64, 0.0, 0, &[]),
        ),
    ];
    let reqs = cases
        .iter()
        .map(|(t, g)| (e.tokenize_prompt(t).unwrap(), g.clone(), Collect::default()))
        .collect();
    let got = serve(&e, reqs);
    let mut reasons = Vec::new();
    for ((t, g), c) in cases.iter().zip(&got) {
        let p = e.tokenize_prompt(t).unwrap();
        let mut seq = e.new_sequence();
        let want = e.generate(&mut seq, &p, g, &mut |_| true).unwrap();
        assert_eq!(c.tokens, want.tokens, "{t:?}: tokens");
        assert_eq!(c.text, want.text, "{t:?}: text");
        assert_eq!(c.done, Some(want.stop_reason), "{t:?}: stop reason");
        reasons.push(want.stop_reason);
    }
    for r in [
        StopReason::MaxTokens,
        StopReason::StopString,
        StopReason::Eos,
    ] {
        assert!(
            reasons.contains(&r),
            "no request ended at {r:?}: {reasons:?}"
        );
    }
}

#[test]
fn a_client_that_leaves_or_runs_out_of_time_ends_only_its_sequence() {
    let Some(e) = engine(256) else { return };
    let p = e.tokenize_prompt("The three primary colours are").unwrap();
    let g = params(10, 0.0, 0, &[]);
    let leaving = Collect {
        leave_after: Some(3),
        ..Collect::default()
    };
    let late = Collect {
        expired: true,
        ..Collect::default()
    };
    let reqs = vec![
        (p.clone(), g.clone(), leaving),
        (p.clone(), g.clone(), Collect::default()),
        (p.clone(), g.clone(), late),
    ];
    let got = serve(&e, reqs);
    // Left after 3 tokens: no more output and no `done`.
    assert_eq!((got[0].tokens.len(), got[0].done), (3, None));
    assert_eq!(
        (got[1].tokens.len(), got[1].done),
        (10, Some(StopReason::MaxTokens))
    );
    assert_eq!(got[0].tokens, got[1].tokens[..3]);
    // Out of time before its first token.
    assert_eq!(
        (got[2].tokens.len(), got[2].done),
        (0, Some(StopReason::MaxTokens))
    );
}

/// Drafts that are mostly wrong: the last token again and again.
struct Repeat;

impl kestrel_engine::speculative::Drafter for Repeat {
    fn name(&self) -> &'static str {
        "repeat"
    }
    fn draft(
        &mut self,
        history: &[u32],
        max: usize,
        _cx: &mut kestrel_engine::speculative::DraftCtx,
        out: &mut kestrel_engine::speculative::Draft,
    ) -> kestrel_engine::Result<()> {
        out.tokens.clear();
        out.tokens
            .extend(std::iter::repeat_n(history[history.len() - 1], max));
        Ok(())
    }
}

/// A batched sequence stepped speculatively (`batch::speculate`, `kestrel serve --draft` with
/// one active sequence) takes exactly the tokens its plain steps take, greedy and sampled with
/// a seed: with prompt-lookup drafts on a repetitive prompt (most kept) and with drafts that
/// are mostly wrong.
#[test]
fn a_speculative_step_chooses_what_plain_steps_would() {
    use kestrel_engine::batch::speculate::Speculate;
    use kestrel_engine::speculative::{DraftLength, Drafter, NgramDrafter};
    let Some(e) = engine(256) else { return };
    let text = "1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2, 3,";
    let p = e.tokenize_prompt(text).unwrap();
    type Make = fn() -> kestrel_engine::Result<Box<dyn Drafter>>;
    let ngram: Make = || Ok(Box::new(NgramDrafter::default()));
    let repeat: Make = || Ok(Box::new(Repeat));
    let cases = [
        (0.0, 0, ngram, true),
        (0.8, 5, ngram, false),
        (0.0, 0, repeat, false),
        (0.8, 5, repeat, false),
    ];
    for (temp, seed, make, mostly_kept) in cases {
        let g = params(40, temp, seed, &[]);
        let mut seq = e.new_sequence();
        let want = e.generate(&mut seq, &p, &g, &mut |_| true).unwrap();
        let mut slots = Slots::new(&e, 1);
        let s = slots.claim(&p, None).unwrap();
        slots.prefill(&e, &[(s, p.as_slice())]).reused[0]
            .as_ref()
            .unwrap();
        let dec = Decoding::new(primed_sampler(&g.sampler, &p), &g.stop, g.max_tokens, false);
        let mut a = Seq::new(s, dec, Collect::default());
        let mut spec = Speculate::new(std::sync::Arc::new(make), 1);
        let mut length = DraftLength::new(8, false);
        let (mut drafted, mut accepted) = (0, 0);
        while let Some(t) = a.advance_in(&e, &slots, Instant::now()) {
            let r = spec.step(&e, &mut slots, &mut a, t, &mut length).unwrap();
            drafted += r.drafted;
            accepted += r.accepted;
            if !r.alive {
                break;
            }
        }
        let what = format!("temperature {temp}, {} drafts", make().unwrap().name());
        assert_eq!(a.client.tokens, want.tokens, "{what}");
        assert_eq!(a.client.text, want.text, "{what}");
        assert_eq!(a.client.done, Some(want.stop_reason), "{what}");
        assert!(drafted > 0, "{what}: no drafts");
        if mostly_kept {
            assert!(
                accepted * 2 > drafted,
                "{what}: {accepted} of {drafted} kept"
            );
        }
    }
}
