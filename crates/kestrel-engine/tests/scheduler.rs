//! The engine's generation loop (`kestrel_engine::batch::Scheduler`, what the server's engine
//! thread runs): requests admitted at different times, some while others generate, a prompt
//! longer than a micro-batch (evaluated a micro-batch per step), one asking for its prompt's
//! logprobs, one continuing a conversation's cached prefix, each give exactly what
//! `Engine::generate` gives them alone; with the speculative strategy too. Prompt logprobs
//! match each prefix's own last-token logits; a request out of time fails, one whose client
//! left frees its slot.

mod common;
use common::engine;
use kestrel_engine::batch::speculate::Speculative;
use kestrel_engine::batch::{Client, Failure, Plain, Request, Scheduler, Strategy};
use kestrel_engine::decode::primed_sampler;
use kestrel_engine::decoding::{Decoding, Sink};
use kestrel_engine::logprobs::{logprobs, piece, TokenLogprob};
use kestrel_engine::speculative::{Drafter, NgramDrafter};
use kestrel_engine::{Engine, GenParams, SamplerConfig, StopReason};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What a request received, shared with the test (the scheduler owns the client).
#[derive(Default, Debug)]
struct Got {
    tokens: Vec<u32>,
    text: String,
    started: Option<usize>,
    prompt_logprobs: Option<Vec<TokenLogprob>>,
    done: Option<StopReason>,
    failed: Option<Failure>,
    drafted: usize,
    /// The client has left.
    left: bool,
}

struct Collect {
    got: Arc<Mutex<Got>>,
    expired: bool,
}

impl Sink for Collect {
    fn token(&mut self, id: u32, text: String, _logits: &[f32]) -> bool {
        let mut g = self.got.lock().unwrap();
        g.tokens.push(id);
        g.text.push_str(&text);
        true
    }
    fn text(&mut self, text: String) -> bool {
        self.got.lock().unwrap().text.push_str(&text);
        true
    }
}

impl Client for Collect {
    fn gone(&self) -> bool {
        self.got.lock().unwrap().left
    }
    fn expired(&self, _now: Instant) -> bool {
        self.expired
    }
    fn done(&mut self, reason: StopReason, _generated: usize) {
        self.got.lock().unwrap().done = Some(reason);
    }
    fn started(&mut self, reused: usize, lps: Option<Vec<TokenLogprob>>) -> bool {
        let mut g = self.got.lock().unwrap();
        g.started = Some(reused);
        g.prompt_logprobs = lps;
        true
    }
    fn failed(&mut self, why: Failure) {
        self.got.lock().unwrap().failed = Some(why);
    }
    fn drafted(&mut self, drafted: usize, _accepted: usize) {
        self.got.lock().unwrap().drafted += drafted;
    }
}

fn params(max_tokens: usize, temperature: f32, seed: u64) -> GenParams {
    GenParams {
        max_tokens,
        sampler: SamplerConfig {
            temperature,
            seed,
            ..SamplerConfig::default()
        },
        stop: Vec::new(),
        ignore_eos: false,
        constraint: None,
    }
}

struct Case {
    prompt: Vec<u32>,
    g: GenParams,
    session: Option<&'static str>,
    prompt_logprobs: Option<usize>,
    /// Admitted before this step of the loop.
    at: usize,
}

fn request(c: &Case, got: &Arc<Mutex<Got>>) -> Request<Collect> {
    let dec = Decoding::new(
        primed_sampler(&c.g.sampler, &c.prompt),
        &c.g.stop,
        c.g.max_tokens,
        false,
    );
    Request {
        prompt: c.prompt.clone(),
        session: c.session.map(str::to_string),
        prompt_logprobs: c.prompt_logprobs,
        dec,
        client: Collect {
            got: got.clone(),
            expired: false,
        },
    }
}

/// Run `cases` through `sched`, each admitted at its step or, when every slot is busy then,
/// as soon as one is free (a server's queue).
fn run(e: &Engine, sched: &mut Scheduler<Collect>, cases: &[Case]) -> Vec<Got> {
    let gots: Vec<Arc<Mutex<Got>>> = cases.iter().map(|_| Arc::default()).collect();
    let mut waiting: Vec<Option<Request<Collect>>> = cases
        .iter()
        .zip(&gots)
        .map(|(c, g)| Some(request(c, g)))
        .collect();
    let mut step = 0;
    loop {
        for (c, w) in cases.iter().zip(waiting.iter_mut()) {
            if c.at <= step {
                if let Some(req) = w.take() {
                    if let Err(req) = sched.admit(req, Instant::now()) {
                        *w = Some(*req);
                    }
                }
            }
        }
        if sched.is_idle() && waiting.iter().all(Option::is_none) {
            break;
        }
        sched.step(e, Instant::now());
        step += 1;
    }
    drop(waiting);
    gots.into_iter()
        .map(|g| Arc::try_unwrap(g).unwrap().into_inner().unwrap())
        .collect()
}

fn alone(e: &Engine, c: &Case) -> kestrel_engine::Generation {
    let mut seq = e.new_sequence();
    e.generate(&mut seq, &c.prompt, &c.g, &mut |_| true)
        .unwrap()
}

fn assert_alone(e: &Engine, cases: &[Case], got: &[Got], what: &str) {
    for (i, (c, g)) in cases.iter().zip(got).enumerate() {
        let want = alone(e, c);
        assert_eq!(g.failed, None, "{what} #{i}");
        assert_eq!(g.tokens, want.tokens, "{what} #{i}: tokens");
        assert_eq!(g.text, want.text, "{what} #{i}: text");
        assert_eq!(g.done, Some(want.stop_reason), "{what} #{i}: stop reason");
    }
}

#[test]
fn requests_admitted_as_they_come_equal_each_alone() {
    let Some(e) = engine(512) else { return };
    let tok = |t: &str| e.tokenize_prompt(t).unwrap();
    let system = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n";
    let turn =
        format!("{system}<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n");
    // Longer than the 64-token micro-batch: evaluated a micro-batch per step.
    let long = "The history of the river valley begins with farmers who came with seeds and \
                goats, built walls of stone against the floods, and learned to read the \
                seasons from the stars. Their villages grew into towns, the towns into a \
                kingdom, and the kingdom wrote its laws on clay. Traders came up the river \
                with salt and copper, priests counted the days of the year, and scribes kept \
                lists of every harvest and every king. In the end the river";
    let cases = vec![
        Case {
            prompt: tok("The three primary colours are"),
            g: params(16, 0.0, 0),
            session: None,
            prompt_logprobs: None,
            at: 0,
        },
        Case {
            prompt: tok("Once upon a time, in a small village,"),
            g: params(20, 0.9, 7),
            session: None,
            prompt_logprobs: None,
            at: 0,
        },
        Case {
            prompt: tok(&turn),
            g: params(24, 0.0, 0),
            session: Some("alice"),
            prompt_logprobs: None,
            at: 0,
        },
        Case {
            prompt: tok(long),
            g: params(12, 0.7, 3),
            session: None,
            prompt_logprobs: None,
            at: 2,
        },
        Case {
            prompt: tok("def fibonacci(n):"),
            g: params(10, 0.0, 0),
            session: None,
            prompt_logprobs: Some(3),
            at: 4,
        },
    ];
    assert!(cases[3].prompt.len() > e.n_batch() + 1, "a long prompt");
    let mut sched = Scheduler::new(&e, 4, Box::new(Plain));
    let got = run(&e, &mut sched, &cases);
    assert_alone(&e, &cases, &got, "first round");
    assert!(sched.stats().shared_prompts >= 3, "{:?}", sched.stats());
    let n = cases[4].prompt.len();
    let lps = got[4].prompt_logprobs.as_ref().expect("prompt logprobs");
    assert_eq!(lps.len(), n);
    assert_eq!(lps[0].logprob, None);
    // Each prompt token's logprob under the logits of its prefix, evaluated on its own.
    for j in 1..n {
        let mut seq = e.new_sequence();
        seq.prefill(&e.model, &e.pool, &cases[4].prompt[..j])
            .unwrap();
        let (want, top) = logprobs(seq.session.last_logits(), cases[4].prompt[j], 3);
        let lp = lps[j].logprob.unwrap();
        assert!((lp - want).abs() < 2e-3, "token {j}: {lp} vs {want}");
        let want: Vec<String> = top.iter().map(|t| piece(&e.tokenizer, t.0).0).collect();
        let alts: Vec<String> = lps[j].top.iter().map(|t| t.token.clone()).collect();
        assert_eq!(alts, want, "token {j}: top alternatives");
    }
    assert!(got.iter().all(|g| g.started.is_some()));
    // Alice's next turn continues her cached conversation: all of the first turn is reused.
    let mut next = cases[2].prompt.clone();
    next.extend_from_slice(&got[2].tokens);
    next.extend(tok(
        "<|im_end|>\n<|im_start|>user\nAnother one.<|im_end|>\n",
    ));
    let again = vec![Case {
        prompt: next,
        g: params(12, 0.0, 0),
        session: Some("alice"),
        prompt_logprobs: None,
        at: 0,
    }];
    let got2 = run(&e, &mut sched, &again);
    assert_alone(&e, &again, &got2, "second turn");
    let reused = got2[0].started.unwrap();
    assert!(
        reused >= cases[2].prompt.len(),
        "reused {reused} of the {}-token first turn",
        cases[2].prompt.len()
    );
    // The same requests, prompts one at a time: the same answers.
    let mut one = Scheduler::new(&e, 4, Box::new(Plain)).one_prompt_at_a_time();
    let got3 = run(&e, &mut one, &cases);
    assert_alone(&e, &cases, &got3, "one prompt at a time");
    assert_eq!(one.stats().shared_prompts, 0);
}

#[test]
fn the_speculative_strategy_chooses_what_plain_steps_would() {
    let Some(e) = engine(256) else { return };
    let p = e
        .tokenize_prompt("1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2, 3,")
        .unwrap();
    let make = Arc::new(|| Ok(Box::new(NgramDrafter::default()) as Box<dyn Drafter>));
    for temp in [0.0, 0.8] {
        // Alone (drafts verified), then two at a time (plain batched steps) after it.
        let cases = vec![
            Case {
                prompt: p.clone(),
                g: params(30, temp, 5),
                session: None,
                prompt_logprobs: None,
                at: 0,
            },
            Case {
                prompt: p.clone(),
                g: params(20, temp, 9),
                session: None,
                prompt_logprobs: None,
                at: 12,
            },
        ];
        let spec: Box<dyn Strategy<Collect>> = Box::new(Speculative::new(make.clone(), 2, 6, true));
        let mut sched = Scheduler::new(&e, 2, spec);
        let got = run(&e, &mut sched, &cases);
        assert_alone(&e, &cases, &got, &format!("temperature {temp}"));
        assert!(got[0].drafted > 0, "temperature {temp}: no drafts");
    }
}

#[test]
fn a_request_out_of_time_fails_and_one_whose_client_left_frees_its_slot() {
    let Some(e) = engine(512) else { return };
    let mut sched = Scheduler::new(&e, 1, Box::new(Plain));
    let c = Case {
        prompt: e
            .tokenize_prompt(&"one two three four ".repeat(40))
            .unwrap(),
        g: params(4, 0.0, 0),
        session: None,
        prompt_logprobs: None,
        at: 0,
    };
    let got = Arc::new(Mutex::new(Got::default()));
    let mut late = request(&c, &got);
    late.client.expired = true;
    assert!(sched.admit(late, Instant::now()).is_ok());
    assert!(sched.is_idle(), "an expired request takes no slot");
    assert!(matches!(
        got.lock().unwrap().failed,
        Some(Failure::Expired(_))
    ));
    // Its long prompt goes a micro-batch per step; the client leaves after the first.
    assert!(c.prompt.len() > 2 * e.n_batch());
    assert!(sched.admit(request(&c, &got), Instant::now()).is_ok());
    assert!(!sched.has_free());
    let other = Arc::new(Mutex::new(Got::default()));
    let r = sched.admit(request(&c, &other), Instant::now());
    assert!(r.is_err(), "the only slot is taken");
    sched.step(&e, Instant::now());
    assert!(!sched.is_idle());
    got.lock().unwrap().left = true;
    sched.step(&e, Instant::now());
    assert!(
        sched.is_idle() && sched.has_free(),
        "the slot is free again"
    );
    assert_eq!(got.lock().unwrap().started, None);
    // The next request gets the slot and its answer.
    let cases = [Case { at: 0, ..c }];
    let got = run(&e, &mut sched, &cases);
    assert_alone(&e, &cases, &got, "after the one that left");
}
