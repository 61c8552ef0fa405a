//! Confidence routing end to end (docs/routing.md): `kestrel serve --route-remote` in front of a
//! fake remote (tests/route/fake_remote.rs) that answers well or fails in each way; every
//! request must get an answer whose `kestrel` field and headers say how it was produced. One
//! routed request goes through the official OpenAI Python client, and `kestrel run
//! --route-remote` is checked too.

mod common;
#[path = "route/fake_remote.rs"]
mod fake_remote;

use common::{path_str, workspace_root, TempDir, SMOLLM2, THREADS};
use fake_remote::{FakeRemote, Mode, ANSWER};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `kestrel serve` with routing, killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(model: &Path, policy: &Path, remote: &str, extra: &[&str]) -> Server {
        let mut child = common::kestrel_cmd()
            .args([
                "serve",
                "-m",
                &path_str(model),
                "-t",
                THREADS,
                "--port",
                "0",
            ])
            .args(["--parallel", "2", "--route-remote", remote])
            .args([
                "--route-policy",
                &path_str(policy),
                "--route-model",
                "fake-big",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning kestrel serve");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut seen = String::new();
        let addr = loop {
            let line = match lines.next() {
                Some(Ok(l)) => l,
                _ => panic!("kestrel serve exited before listening:\n{seen}"),
            };
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split_whitespace().next().expect("address").to_string();
            }
            seen.push_str(&line);
            seen.push('\n');
        };
        std::thread::spawn(move || for _ in lines {});
        Server { child, addr }
    }

    /// POST a JSON body (HTTP/1.0, so a stream comes back unchunked): status, headers, body.
    fn post(&self, path: &str, body: &Value) -> (u16, String, String) {
        let mut s = TcpStream::connect(&self.addr).expect("connecting");
        let b = body.to_string();
        write!(
            s,
            "POST {path} HTTP/1.0\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{b}",
            self.addr,
            b.len()
        )
        .expect("sending");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("reading");
        let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP answer");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        (status, head.to_ascii_lowercase(), body.to_string())
    }

    fn chat(&self, content: &str, extra: Value) -> (u16, String, Value) {
        let mut req = json!({"messages": [{"role": "user", "content": content}],
                             "temperature": 0, "max_tokens": 12});
        for (k, v) in extra.as_object().expect("object") {
            req[k] = v.clone();
        }
        let (status, head, body) = self.post("/v1/chat/completions", &req);
        let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        (status, head, v)
    }

    /// A streamed request's `data:` payloads, `[DONE]` last.
    fn stream(&self, path: &str, req: Value) -> (String, Vec<Value>) {
        let (status, head, body) = self.post(path, &req);
        assert_eq!(status, 200, "{body}");
        let mut out = Vec::new();
        for l in body.lines().filter_map(|l| l.strip_prefix("data: ")) {
            out.push(if l == "[DONE]" {
                Value::String(l.into())
            } else {
                serde_json::from_str(l).expect("chunk JSON")
            });
        }
        assert_eq!(out.last(), Some(&json!("[DONE]")), "{body}");
        (head, out)
    }

    fn metrics(&self) -> String {
        let mut s = TcpStream::connect(&self.addr).expect("connecting");
        write!(s, "GET /metrics HTTP/1.0\r\n\r\n").expect("sending");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("reading");
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text(v: &Value) -> &str {
    let c = &v["choices"][0];
    c["message"]["content"]
        .as_str()
        .or(c["text"].as_str())
        .unwrap_or_else(|| panic!("no text: {v}"))
}

fn routed(head: &str, v: &Value, target: &str, reason: &str) {
    assert_eq!(v["kestrel"]["routed"], target, "{v}");
    assert_eq!(v["kestrel"]["reason"], reason, "{v}");
    assert!(
        head.contains(&format!("x-kestrel-routed: {target}")),
        "{head}"
    );
    assert!(
        head.contains(&format!("x-kestrel-route-reason: {reason}")),
        "{head}"
    );
}

fn counted(metrics: &str, target: &str, reason: &str) -> u64 {
    let key = format!("kestrel_route_decisions_total{{target=\"{target}\",reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .map(|n| n.trim().parse().expect("a count"))
        .unwrap_or(0)
}

fn policy(dir: &TempDir, name: &str, v: Value) -> std::path::PathBuf {
    let p = dir.0.join(name);
    std::fs::write(&p, v.to_string()).expect("writing a policy");
    p
}

/// Rules, context, confidence, and every way the remote can fail, on one server whose local
/// model is always judged confident (min_top1 0).
#[test]
fn rules_context_and_remote_faults() {
    let Some(model) = common::model_path(SMOLLM2) else {
        return;
    };
    let dir = TempDir::new("route-rules");
    let fake = FakeRemote::start();
    let p = policy(
        &dir,
        "p.json",
        json!({
            "confidence": {"tokens": 4, "min_top1": 0.0},
            "keywords": ["ROUTEME"], "models": ["big-model"],
        }),
    );
    let s = Server::start(
        &model,
        &p,
        &fake.url,
        &[
            "--ctx",
            "256",
            "--route-timeout-ms",
            "1500",
            "--route-api-key",
            "sekrit",
        ],
    );

    // Confident: local, the confidence of 4 tokens reported.
    let (st, head, v) = s.chat("What is the capital of France?", json!({}));
    assert_eq!(st, 200);
    routed(&head, &v, "local", "confident");
    assert_eq!(v["kestrel"]["confidence"]["tokens"], 4, "{v}");
    assert_eq!(v["model"], "SmolLM2-135M-Instruct.Q4_1");

    // Keyword: the remote answers; it was asked for one whole answer from --route-model.
    let (_, head, v) = s.chat("ROUTEME please", json!({"stream": false}));
    routed(&head, &v, "remote", "rule_keyword");
    assert_eq!(text(&v), ANSWER);
    let (path, fwd) = fake.last().expect("the remote saw the request");
    assert_eq!(path, "/v1/chat/completions");
    assert_eq!(fake.last_auth().as_deref(), Some("Bearer sekrit"));
    assert_eq!(
        (&fwd["model"], &fwd["stream"]),
        (&json!("fake-big"), &json!(false))
    );

    // A requested model the policy names goes remote; any other name is the one model served
    // here (llama-server's behaviour).
    let (_, head, v) = s.chat("hello", json!({"model": "big-model"}));
    routed(&head, &v, "remote", "rule_model");
    let (st, head, v) = s.chat("hello", json!({"model": "no-such-model"}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["kestrel"]["routed"], "local", "{v}");
    assert!(head.contains("x-kestrel-routed: local"), "{head}");

    // A prompt longer than the local context (256) goes remote.
    let long = "the cat sat on the mat. ".repeat(60);
    let (st, head, v) = s.chat(&long, json!({}));
    assert_eq!(st, 200, "{v}");
    routed(&head, &v, "remote", "context");

    // Plain completions route too.
    let (_, head, body) = s.post(
        "/v1/completions",
        &json!({"prompt": "ROUTEME The capital of France is", "max_tokens": 8, "temperature": 0}),
    );
    let v: Value = serde_json::from_str(&body).expect("JSON");
    routed(&head, &v, "remote", "rule_keyword");
    assert_eq!(text(&v), ANSWER);
    assert_eq!(fake.last().expect("request").0, "/v1/completions");

    // Each failure of the remote: answered locally, and the answer says why.
    for (mode, what) in [
        (Mode::Malformed, "malformed answer"),
        (Mode::Die, "broke off"),
        (Mode::Status500, "error status"),
        (Mode::Slow(Duration::from_secs(4)), "timed out"),
    ] {
        fake.set(mode);
        let t0 = Instant::now();
        let (st, head, v) = s.chat("ROUTEME What is 2 + 2?", json!({}));
        assert_eq!(st, 200, "{mode:?}: {v}");
        routed(&head, &v, "local", "remote_failed");
        assert_eq!(v["kestrel"]["wanted"], "rule_keyword", "{v}");
        let err = v["kestrel"]["error"].as_str().expect("an error");
        assert!(err.contains(what), "{mode:?}: {err}");
        assert!(!text(&v).is_empty() && text(&v) != ANSWER, "{v}");
        if let Mode::Slow(d) = mode {
            assert!(
                t0.elapsed() < d,
                "waited {:?} for a remote past its time limit",
                t0.elapsed()
            );
        }
    }
    // A prompt too long for the local context, with the remote failing: an error that says both.
    fake.set(Mode::Malformed);
    let (st, _, v) = s.chat(&long, json!({}));
    assert_eq!(st, 400, "{v}");
    let msg = v["error"]["message"].as_str().expect("message");
    assert!(msg.contains("context") && msg.contains("remote"), "{msg}");

    // Streaming: the local answer streams each token once (same text as without streaming) and
    // the finishing chunk says where it came from; a failed remote streams the local answer.
    fake.set(Mode::Ok);
    let req = json!({"messages": [{"role": "user", "content": "Count from 1 to 5."}],
                     "temperature": 0, "max_tokens": 16});
    let (_, _, whole) = s.chat("Count from 1 to 5.", json!({"max_tokens": 16}));
    let mut sreq = req.clone();
    sreq["stream"] = json!(true);
    let (head, chunks) = s.stream("/v1/chat/completions", sreq.clone());
    assert!(head.contains("x-kestrel-routed: local"), "{head}");
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, text(&whole));
    let last = &chunks[chunks.len() - 2];
    assert_eq!(last["kestrel"]["routed"], "local", "{last}");
    assert!(last["choices"][0]["finish_reason"].is_string());

    sreq["messages"][0]["content"] = json!("ROUTEME count");
    sreq["stream_options"] = json!({"include_usage": true});
    let (head, chunks) = s.stream("/v1/chat/completions", sreq.clone());
    assert!(head.contains("x-kestrel-routed: remote"), "{head}");
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, ANSWER);
    assert_eq!(chunks[chunks.len() - 2]["usage"]["total_tokens"], 12);
    assert!(fake
        .last()
        .expect("request")
        .1
        .get("stream_options")
        .is_none());

    fake.set(Mode::Die);
    let (head, chunks) = s.stream("/v1/chat/completions", sreq);
    assert!(head.contains("x-kestrel-routed: local"), "{head}");
    assert!(
        chunks
            .iter()
            .any(|c| c["kestrel"]["reason"] == "remote_failed"),
        "{chunks:?}"
    );

    let m = s.metrics();
    // (One of them the request naming a model no rule names.)
    assert_eq!(counted(&m, "local", "confident"), 4, "{m}");
    assert_eq!(counted(&m, "remote", "rule_keyword"), 3, "{m}");
    assert_eq!(counted(&m, "remote", "rule_model"), 1, "{m}");
    assert_eq!(counted(&m, "remote", "context"), 1, "{m}");
    assert_eq!(counted(&m, "local", "remote_failed"), 6, "{m}");
}

/// A local model that is never confident enough (min_top1 1) and a remote that is down from the
/// start: answered locally, saying it wanted the remote for low confidence; the length rule.
#[test]
fn low_confidence_with_the_remote_down() {
    let Some(model) = common::model_path(SMOLLM2) else {
        return;
    };
    let dir = TempDir::new("route-down");
    // A port that was free a moment ago: nothing listens there.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("address"))
    };
    let p = policy(
        &dir,
        "p.json",
        json!({
            "confidence": {"tokens": 3, "min_top1": 1.0}, "max_prompt_tokens": 40,
        }),
    );
    let s = Server::start(&model, &p, &down, &[]);
    let (st, head, v) = s.chat("What is the capital of France?", json!({}));
    assert_eq!(st, 200, "{v}");
    routed(&head, &v, "local", "remote_failed");
    assert_eq!(v["kestrel"]["wanted"], "low_confidence");
    assert_eq!(v["kestrel"]["confidence"]["tokens"], 3);
    assert!(
        v["kestrel"]["confidence"]["mean_top1"]
            .as_f64()
            .expect("top1")
            < 1.0
    );
    assert!(
        v["kestrel"]["error"]
            .as_str()
            .expect("error")
            .contains("unreachable"),
        "{v}"
    );
    assert!(!text(&v).is_empty());
    // The local answer after a failed remote is the plain greedy answer (nothing held back lost).
    let (_, _, again) = s.chat("What is the capital of France?", json!({}));
    assert_eq!(text(&again), text(&v));

    let (_, head, v) = s.chat(&"Tell me about birds. ".repeat(10), json!({}));
    routed(&head, &v, "local", "remote_failed");
    assert_eq!(v["kestrel"]["wanted"], "rule_length");
    let m = s.metrics();
    assert_eq!(counted(&m, "local", "remote_failed"), 3, "{m}");
}

/// The official OpenAI client sees the routing field on a remote and a local answer.
#[test]
fn openai_client_sees_where_it_was_answered() {
    let Some(model) = common::model_path(SMOLLM2) else {
        return;
    };
    let dir = TempDir::new("route-openai");
    let fake = FakeRemote::start();
    let p = policy(
        &dir,
        "p.json",
        json!({"confidence": {"min_top1": 0.0}, "keywords": ["ROUTEME"]}),
    );
    let s = Server::start(&model, &p, &fake.url, &[]);
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("openai-venv");
    let out = Command::new(workspace_root().join("scripts/setup-openai-client.sh"))
        .arg(&venv)
        .output()
        .expect("running scripts/setup-openai-client.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let py = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/route/openai_route.py");
    let out = Command::new(py)
        .arg(script)
        .arg(format!("http://{}", s.addr))
        .arg(ANSWER)
        .output()
        .expect("running python");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `kestrel run --route-remote`: a keyword sends the prompt to the remote; a down remote leaves
/// it local, and `--json` says so.
#[test]
fn run_routes_and_falls_back() {
    let Some(model) = common::model_path(SMOLLM2) else {
        return;
    };
    let dir = TempDir::new("route-run");
    let fake = FakeRemote::start();
    let p = policy(
        &dir,
        "p.json",
        json!({"confidence": {"min_top1": 0.0}, "keywords": ["ROUTEME"]}),
    );
    let run = |prompt: &str, url: &str| -> Value {
        let out = common::kestrel_cmd()
            .args([
                "run",
                "-m",
                &path_str(&model),
                "-t",
                THREADS,
                "-p",
                prompt,
                "-n",
                "8",
            ])
            .args(["--temp", "0", "--json", "--route-remote", url])
            .args(["--route-policy", &path_str(&p)])
            .output()
            .expect("running kestrel run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    let v = run("ROUTEME The capital of France is", &fake.url);
    assert_eq!(v["routed"]["routed"], "remote", "{v}");
    assert_eq!(v["text"], ANSWER);
    let (_, fwd) = fake.last().expect("request");
    assert_eq!(fwd["prompt"], "ROUTEME The capital of France is");
    assert_eq!(fwd["max_tokens"], 8);

    let local = run("The capital of France is", &fake.url);
    assert_eq!(local["routed"]["reason"], "confident", "{local}");
    fake.set(Mode::Malformed);
    let v = run("ROUTEME The capital of France is", &fake.url);
    assert_eq!(v["routed"]["routed"], "local", "{v}");
    assert_eq!(v["routed"]["reason"], "remote_failed");
    assert_eq!(v["tokens"].as_array().map(Vec::len), Some(8), "{v}");
}
