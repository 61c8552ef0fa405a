//! Device drafts, server verifies: `kestrel run --verify-remote` against a `kestrel serve` on
//! loopback. The reference is the server model's own greedy output (`kestrel run` with it);
//! the drafter is a Q8_0 copy made here with `kestrel quantize`, or the model itself. Also the
//! `/v1/verify` errors and the device's fallback when the remote fails.

mod common;
#[path = "verify/http.rs"]
mod http;

use common::server::Server;
use common::{kestrel, path_str, TempDir, SMOLLM2, THREADS};
use http::{faulty_proxy, post, request, Fault};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PROMPT: &str =
    "<|im_start|>user\nWrite a short story about a fox.<|im_end|>\n<|im_start|>assistant\n";
const N: &str = "40";

fn run_json(model: &Path, extra: &[&str]) -> Value {
    let m = path_str(model);
    let mut args = vec![
        "run", "-m", &m, "-t", THREADS, "-c", "512", "-p", PROMPT, "-n", N, "--temp", "0", "--json",
    ];
    args.extend_from_slice(extra);
    kestrel(&args).ok().json()
}

fn tokens(v: &Value) -> Vec<u64> {
    v["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect()
}

/// A Q8_0 copy of `model` in `dir`, made by `kestrel quantize`: a device model that drafts
/// for the Q4_1 original.
fn q8_copy(model: &Path, dir: &TempDir) -> PathBuf {
    let q8 = dir.path().join("smollm2-q8_0.gguf");
    kestrel(&[
        "quantize",
        "--type",
        "Q8_0",
        &path_str(model),
        &path_str(&q8),
    ])
    .ok();
    q8
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[test]
fn device_drafts_server_verifies_and_falls_back() {
    let target = require_model!(SMOLLM2);
    let dir = TempDir::new("verify-remote");
    let q8 = q8_copy(&target, &dir);
    let server = Server::start(&target, &[]);
    let reference = run_json(&target, &[]);
    let want = tokens(&reference);
    assert_eq!(
        want.len(),
        40,
        "the reference should run to the token limit"
    );

    // A quantized copy drafts; the output is the server model's, token for token.
    let v = run_json(&q8, &["--verify-remote", &server.base, "--draft-max", "6"]);
    assert_eq!(
        tokens(&v),
        want,
        "remote-verified output differs from the target's"
    );
    assert_eq!(v["text"], reference["text"]);
    let r = &v["verify_remote"];
    assert_eq!(r["answered_by"], "remote_verified", "{v}");
    let rounds = r["rounds"].as_u64().unwrap();
    assert!(r["accepted"].as_u64().unwrap() > 0, "{v}");
    assert!(
        rounds < 40,
        "drafts should save round trips: {rounds} for 40 tokens"
    );

    // Prompt lookup drafts too, and so does the target itself (all its drafts hold).
    let v = run_json(&q8, &["--verify-remote", &server.base, "--draft", "ngram"]);
    assert_eq!(tokens(&v), want);
    let v = run_json(&target, &["--verify-remote", &server.base]);
    assert_eq!(tokens(&v), want);
    assert_eq!(v["verify_remote"]["acceptance_rate"], 1.0, "{v}");

    // The remote down before the request: the device answers alone, and says so.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let v = run_json(&target, &["--verify-remote", &dead]);
    assert_eq!(
        tokens(&v),
        want,
        "the local model's greedy output is the same model's"
    );
    assert_eq!(
        v["verify_remote"]["answered_by"],
        "local_after_remote_failure"
    );
    assert_eq!(v["verify_remote"]["local_from_token"], 0);
    let why = v["verify_remote"]["fallback_reason"].as_str().unwrap();
    assert!(why.contains("unreachable"), "{why}");

    // The remote fails after three answers: malformed JSON, a hang past the time limit, a
    // dropped connection. The text is complete; the local model took over where it says.
    for (fault, label) in [
        (Fault::Malformed, "malformed answer"),
        (Fault::Hang(Duration::from_secs(5)), "timed out"),
        (Fault::Drop, "unreachable"),
    ] {
        let proxy = faulty_proxy(&server.base, 3, fault);
        let v = run_json(
            &q8,
            &[
                "--verify-remote",
                &proxy,
                "--verify-timeout-ms",
                "1500",
                "--draft-max",
                "4",
            ],
        );
        let got = tokens(&v);
        let r = &v["verify_remote"];
        assert_eq!(
            r["answered_by"], "local_after_remote_failure",
            "{fault:?}: {v}"
        );
        let from = r["local_from_token"].as_u64().unwrap() as usize;
        assert!(from > 0 && from < 40, "{fault:?}: {v}");
        assert_eq!(r["rounds"], 3, "{fault:?}: {v}");
        assert_eq!(
            &got[..from],
            &want[..from],
            "{fault:?}: verified part differs"
        );
        assert_eq!(got.len(), 40, "{fault:?}: the answer should be complete");
        let why = r["fallback_reason"].as_str().unwrap();
        assert!(why.contains(label), "{fault:?}: {why}");
    }
}

#[test]
fn verify_endpoint_sessions_and_errors() {
    let target = require_model!(SMOLLM2);
    let server = Server::start(
        &target,
        &[
            "--verify-sessions",
            "2",
            "--verify-idle-s",
            "2",
            "--verify-max-draft",
            "8",
            "--parallel",
            "1",
        ],
    );
    let b = &server.base;

    // Verification does not wait for a slot: with the only one generating, a call is answered
    // while the generation runs.
    let bb = b.clone();
    let t0 = Instant::now();
    let long = std::thread::spawn(move || {
        let r = post(
            &bb,
            "/v1/completions",
            &json!({"prompt": "Once", "max_tokens": 300, "ignore_eos": true, "temperature": 0}),
        );
        (r.0, t0.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    let t1 = Instant::now();
    let (s, v) = post(b, "/v1/verify", &json!({"prompt": "Hi"}));
    let verify_took = t1.elapsed();
    assert_eq!(s, 200, "{v}");
    let (s, _) = request(
        b,
        "DELETE",
        &format!("/v1/verify/{}", v["session"].as_str().unwrap()),
        None,
    );
    assert_eq!(s, 200);
    let (s, gen_took) = long.join().unwrap();
    assert_eq!(s, 200);
    assert!(
        verify_took * 3 < gen_took,
        "the verify call ({verify_took:?}) waited for the generation ({gen_took:?})"
    );
    let want = tokens(&run_json(&target, &[]));
    let open = |draft: &[u64]| {
        post(
            b,
            "/v1/verify",
            &json!({"prompt": PROMPT, "draft": draft, "logprobs": true, "top_logprobs": 2}),
        )
    };

    // Opening without a draft: the server's first token is the target's first token.
    let (s, v) = open(&[]);
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["accepted"].as_u64(), v["next"].as_u64()),
        (Some(0), Some(want[0]))
    );
    assert_eq!(v["logprobs"].as_array().unwrap().len(), 1);
    let id = v["session"].as_str().unwrap().to_string();
    // The target's own continuation holds; the bonus token is the one after it.
    let (s, v) = post(
        b,
        "/v1/verify",
        &json!({"session": id, "draft": &want[1..6], "logprobs": true}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["accepted"].as_u64(), v["next"].as_u64()),
        (Some(5), Some(want[6]))
    );
    let lps = v["logprobs"].as_array().unwrap();
    assert_eq!(lps.len(), 6);
    assert!(lps.iter().all(|l| l["logprob"].as_f64().unwrap() <= 0.0));
    assert_eq!(
        v["n_tokens"].as_u64().unwrap() as usize,
        common_prompt_len(b) + 7
    );
    // A wrong token is corrected: two right ones, then a wrong one.
    let wrong = if want[9] == 28 { 29 } else { 28 };
    let (s, v) = post(
        b,
        "/v1/verify",
        &json!({"session": id, "draft": [want[7], want[8], wrong, want[10]]}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["accepted"].as_u64(), v["next"].as_u64()),
        (Some(2), Some(want[9]))
    );

    // Bad requests.
    let (s, v) = post(b, "/v1/verify", &json!({"session": id, "draft": [49152]}));
    assert_eq!((s, code(&v)), (400, "token_out_of_vocabulary"), "{v}");
    let (s, v) = post(
        b,
        "/v1/verify",
        &json!({"session": id, "draft": vec![1u32; 9]}),
    );
    assert_eq!((s, code(&v)), (400, "draft_too_long"), "{v}");
    let (s, v) = post(b, "/v1/verify", &json!({"session": "vs-nope", "draft": []}));
    assert_eq!((s, code(&v)), (404, "session_not_found"), "{v}");
    let (s, v) = post(
        b,
        "/v1/verify",
        &json!({"prompt": "Hi", "vocab": {"size": 32000, "fingerprint": "0"}}),
    );
    assert_eq!((s, code(&v)), (400, "vocab_mismatch"), "{v}");
    let long: Vec<u32> = vec![28; 512];
    let (s, v) = post(b, "/v1/verify", &json!({"prompt": long}));
    assert_eq!((s, code(&v)), (400, "context_length_exceeded"), "{v}");
    let (s, v) = post(
        b,
        "/v1/verify",
        &json!({"prompt": "Hi", "temperature": -1.0}),
    );
    assert_eq!(s, 400, "{v}");
    let (s, _) = post(b, "/v1/verify", &json!({"session": id, "prompt": "Hi"}));
    assert_eq!(s, 400);

    // The number of sessions is bounded; closing one frees its place.
    let (s, v2) = open(&[]);
    assert_eq!(s, 200, "{v2}");
    let (s, v) = open(&[]);
    assert_eq!((s, code(&v)), (429, "too_many_sessions"), "{v}");
    assert_eq!(metrics_counter(b, "kestrel_verify_sessions"), 2);
    let id2 = v2["session"].as_str().unwrap();
    let (s, _) = request(b, "DELETE", &format!("/v1/verify/{id2}"), None);
    assert_eq!(s, 200);
    let (s, v) = request(b, "DELETE", &format!("/v1/verify/{id2}"), None);
    assert_eq!((s, code(&v)), (404, "session_not_found"), "{v}");

    // Idle sessions expire without a call to notice (the engine thread is woken for it), and
    // their callers are told so.
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(metrics_counter(b, "kestrel_verify_sessions"), 0);
    let (s, v) = post(b, "/v1/verify", &json!({"session": id, "draft": []}));
    assert_eq!((s, code(&v)), (410, "session_expired"), "{v}");
}

/// `kestrel serve` with a drafter: greedy answers equal the model's own, alone (speculative
/// step) and with two requests at once (batched steps while both run).
#[test]
fn serve_with_a_drafter_answers_as_without() {
    let target = require_model!(SMOLLM2);
    let dir = TempDir::new("serve-draft");
    let q8 = q8_copy(&target, &dir);
    let want = run_json(&target, &[])["text"].clone();
    let other = "<|im_start|>user\nName three colors.<|im_end|>\n<|im_start|>assistant\n";
    let m = path_str(&target);
    let want_other = kestrel(&[
        "run", "-m", &m, "-t", THREADS, "-c", "512", "-p", other, "-n", N, "--temp", "0", "--json",
    ])
    .ok()
    .json()["text"]
        .clone();
    // Sampled, with the server's fixed truncations (no top-k, no min-p, no penalty) and a
    // seed: `run`, `run --draft` and `serve --draft` must draw the same text.
    let sampled = |extra: &[&str]| {
        let mut args = vec![
            "run", "-m", &m, "-t", THREADS, "-c", "512", "-p", PROMPT, "-n", N, "--temp", "0.8",
            "--top-k", "0", "--top-p", "0.9", "--min-p", "0", "--seed", "5", "--json",
        ];
        args.extend_from_slice(extra);
        kestrel(&args).ok().json()["text"].clone()
    };
    let want_sampled = sampled(&[]);
    assert_ne!(
        want_sampled, want,
        "the sampled settings should not give the greedy text"
    );
    let q8s = path_str(&q8);
    for drafter in [
        vec!["--draft-model", q8s.as_str()],
        vec!["--draft", "ngram"],
    ] {
        assert_eq!(sampled(&drafter), want_sampled, "run {drafter:?}: sampled");
        let mut extra = drafter.clone();
        extra.extend_from_slice(&["--parallel", "2"]);
        let server = Server::start(&target, &extra);
        let b = server.base.clone();
        let ask = move |p: &str| {
            let (s, v) = post(
                &b,
                "/v1/completions",
                &json!({"prompt": p, "max_tokens": 40, "temperature": 0}),
            );
            assert_eq!(s, 200, "{v}");
            v["choices"][0]["text"].clone()
        };
        assert_eq!(ask(PROMPT), want, "{drafter:?}: alone");
        let (st, v) = post(
            &server.base,
            "/v1/completions",
            &json!({"prompt": PROMPT, "max_tokens": 40, "temperature": 0.8, "top_p": 0.9, "seed": 5}),
        );
        assert_eq!(st, 200, "{v}");
        assert_eq!(
            v["choices"][0]["text"], want_sampled,
            "serve {drafter:?}: sampled, as run"
        );
        let a2 = ask.clone();
        let t = std::thread::spawn(move || a2(other));
        assert_eq!(ask(PROMPT), want, "{drafter:?}: beside another request");
        assert_eq!(
            t.join().unwrap(),
            want_other,
            "{drafter:?}: the other request"
        );
        let drafted = metrics_counter(&server.base, "kestrel_draft_tokens_total");
        assert!(drafted > 0, "{drafter:?}: no drafts were made");
    }
}

fn metrics_counter(base: &str, name: &str) -> u64 {
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    use std::io::{Read, Write};
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

/// The prompt's length as the server tokenizes it.
fn common_prompt_len(b: &str) -> usize {
    let (s, v) = post(b, "/v1/verify", &json!({"prompt": PROMPT}));
    assert_eq!(s, 200, "{v}");
    let id = v["session"].as_str().unwrap();
    let (s, _) = request(b, "DELETE", &format!("/v1/verify/{id}"), None);
    assert_eq!(s, 200);
    v["prompt_tokens"].as_u64().unwrap() as usize
}
