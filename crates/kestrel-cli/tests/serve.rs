//! `kestrel serve` driven by the official OpenAI Python client (installed from PyPI into a
//! virtual environment by scripts/setup-openai-client.sh). The scenarios themselves live in
//! tests/serve/openai_scenarios.py; each asserts and exits non-zero with a message on failure.

mod common;
// Shared with the split tests, which use more of them.
#[allow(dead_code)]
#[path = "../../kestrel-collab/tests/common/proxy.rs"]
mod proxy;
#[allow(dead_code)]
#[path = "split/serve.rs"]
mod split_server;

use common::{kestrel, kestrel_with, path_str, workspace_root, TempDir, GEMMA3, SMOLLM2, THREADS};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The virtual environment's python, set up once per test run.
fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("openai-venv");
        let out = Command::new(workspace_root().join("scripts/setup-openai-client.sh"))
            .arg(&venv)
            .output()
            .expect("running scripts/setup-openai-client.sh");
        assert!(
            out.status.success(),
            "setting up the openai client failed (python3 with venv and PyPI access are needed):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// A running `kestrel serve`, killed when dropped.
struct Server {
    child: Child,
    base: String,
    api_key: Option<String>,
    /// Its stderr after the line that says where it listens.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    fn start(model: &Path, extra: &[&str]) -> Server {
        let mut cmd = common::kestrel_cmd();
        cmd.args([
            "serve",
            "-m",
            &path_str(model),
            "-t",
            THREADS,
            "--ctx",
            "2048",
            "--port",
            "0",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning kestrel serve");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = String::new();
        let base = loop {
            let line = match lines.next() {
                Some(Ok(l)) => l,
                _ => panic!("kestrel serve exited before listening:\n{seen}"),
            };
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().expect("address").to_string();
            }
            seen.push_str(&line);
            seen.push('\n');
            assert!(
                Instant::now() < deadline,
                "kestrel serve did not start:\n{seen}"
            );
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = log.clone();
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                keep.lock().unwrap().push(l);
            }
        });
        let api_key = extra
            .iter()
            .position(|a| *a == "--api-key")
            .map(|i| extra[i + 1].to_string());
        Server {
            child,
            base,
            api_key,
            log,
        }
    }

    /// Run a scenario; its last stdout line (if any) as JSON.
    fn scenario(&self, name: &str, args: &[&str]) -> Value {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/serve/openai_scenarios.py");
        let mut cmd = Command::new(python());
        cmd.arg(&script).arg(&self.base).arg(name).args(args);
        if let Some(k) = &self.api_key {
            cmd.env("KESTREL_TEST_API_KEY", k);
        }
        let t0 = Instant::now();
        let out = cmd.output().expect("running python");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "scenario {name} failed:\n{}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("scenario {name}: ok in {:.1} s", t0.elapsed().as_secs_f64());
        stdout
            .lines()
            .last()
            .map(|l| serde_json::from_str(l).expect("scenario output is JSON"))
            .unwrap_or(Value::Null)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kestrel run --json`: 32 greedy tokens of `prompt`.
fn greedy_run(model: &Path, prompt: &str, extra: &[&str]) -> Value {
    let m = path_str(model);
    let mut args = vec![
        "run", "-m", &m, "-t", THREADS, "--temp", "0", "-n", "32", "--json",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-p", prompt]);
    kestrel(&args).ok().json()
}

#[test]
fn openai_client_against_the_default_model() {
    let m = require_model!(SMOLLM2);
    let s = Server::start(&m, &[]);
    for name in [
        "chat",
        "stream",
        "logprobs",
        "concurrent",
        "disconnect",
        "errors",
        "embeddings",
        "metrics",
        "prompt_batch",
        "structured",
    ] {
        s.scenario(name, &[]);
    }

    // Greedy output through the server equals `kestrel run` on the same prompt.
    let prompt = "The three primary colours are";
    let run = greedy_run(&m, prompt, &[]);
    let served = s.scenario("complete", &[prompt, "32"]);
    assert_eq!(served["text"], run["text"], "server vs kestrel run");
    assert_eq!(
        served["tokens"].as_u64(),
        run["tokens"].as_array().map(|t| t.len() as u64)
    );
}

/// Tool calls through the official client, in both ways Kestrel writes them: SmolLM2's and
/// Gemma 3's own templates know no tools (the generic JSON format under a schema), and a
/// Hermes-style template given with `--chat-template-file` has the model write `<tool_call>`
/// blocks, held to them by a grammar when a call is required. The scenario checks the calls
/// against the tools' schemas, streamed against whole, and the round trip with a `tool`
/// message.
#[test]
fn tool_calls_through_the_openai_client() {
    let m = require_model!(SMOLLM2);
    let hermes = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/serve/hermes_tools.jinja");
    let s = Server::start(&m, &[]);
    let generic = s.scenario("tools", &[]);
    assert_eq!(generic["native"], false);
    drop(s);
    let s = Server::start(&m, &["--chat-template-file", &path_str(&hermes)]);
    let native = s.scenario("tools", &["native"]);
    assert_eq!(native["call"][0], "get_weather");
    drop(s);
    let g = require_model!(GEMMA3);
    let s = Server::start(&g, &[]);
    s.scenario("tools", &["any-answer"]);
}

/// `--alias` names the model in /v1/models, a request may name any model (one is served), and
/// each request leaves an access-log line on stderr.
#[test]
fn alias_names_the_model() {
    let m = require_model!(SMOLLM2);
    let s = Server::start(&m, &["--alias", "kestrel-test-alias"]);
    let v = s.scenario("alias", &["kestrel-test-alias"]);
    assert_eq!(v["ids"][0], "kestrel-test-alias");
    // The access log has a line per request: the model card and the chat (read by the
    // draining thread, so give it a moment).
    let wants = [
        "GET /v1/models/kestrel-test-alias 200",
        "POST /v1/chat/completions 200",
    ];
    let t0 = Instant::now();
    loop {
        let log = s.log.lock().unwrap().join("\n");
        if wants.iter().all(|w| log.contains(w)) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{wants:?} not all in:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One request, three front ends: a completion through `kestrel run` and a chat message
/// through `kestrel chat` give the same greedy text as `kestrel serve`, where each is asked
/// alone and then beside the others in one batch (the scenario checks those two agree; one
/// prompt is longer than a micro-batch, so its evaluation is spread over decode steps);
/// and a three-turn `kestrel chat` gives the server's replies to the same conversation.
#[test]
fn same_greedy_answer_through_run_chat_and_serve() {
    let m = require_model!(SMOLLM2);
    let s = Server::start(&m, &[]);
    // The last prompt is longer than a micro-batch (512 tokens): it is evaluated a micro-batch
    // per step while the others decode.
    let long = format!(
        "{}The dog",
        "The quick brown fox jumps over the lazy dog. ".repeat(70)
    );
    let prompts = [
        "The three primary colours are",
        "Once upon a time, in a small village,",
        "def fibonacci(n):",
        "The capital of France is",
        long.as_str(),
    ];
    let served = s.scenario("many", &[&["complete", "32"], &prompts[..]].concat());
    for (i, p) in prompts.iter().enumerate() {
        let run = greedy_run(&m, p, &[]);
        assert_eq!(
            served["answers"][i], run["text"],
            "serve vs kestrel run on {p:?}"
        );
    }
    let messages = [
        "What is 2+2?",
        "Name a colour.",
        "Write one sentence about the sea.",
        "Say hello.",
    ];
    let served = s.scenario("many", &[&["chat", "32"], &messages[..]].concat());
    let mp = path_str(&m);
    let args = ["chat", "-m", &mp, "-t", THREADS, "-n", "32", "--temp", "0"];
    for (i, msg) in messages.iter().enumerate() {
        let out = kestrel_with(&args, Some(&format!("{msg}\n")), &[])
            .ok()
            .stdout;
        // `chat` ends each reply with a newline of its own.
        let reply = out.strip_suffix('\n').unwrap_or(&out);
        assert_eq!(
            served["answers"][i].as_str(),
            Some(reply),
            "serve vs kestrel chat on {msg:?}"
        );
    }
    // Later turns: `chat` reuses its cache of the earlier ones, the server evaluates the
    // conversation it is sent; one prefix-reuse rule gives the same replies.
    let turns = ["What is 2+2?", "And what is 3+3?", "Name a fruit."];
    let served = s.scenario("conversation", &[&["32"], &turns[..]].concat());
    let input: String = turns.iter().map(|t| format!("{t}\n")).collect();
    let out = kestrel_with(&args, Some(&input), &[]).ok().stdout;
    let want: String = served["replies"]
        .as_array()
        .expect("replies")
        .iter()
        .map(|r| format!("{}\n", r.as_str().unwrap_or("")))
        .collect();
    assert_eq!(out, want, "kestrel chat vs serve over three turns");
}

/// `kestrel serve --split-remote`: a device-side server that runs layers 0..k and has a split
/// server run the rest. Greedy answers equal `kestrel run`, alone and with four clients at
/// once (the split server takes two sessions, so two of them start locally); when the split
/// server is killed mid-stream the device finishes the answer, with nothing repeated or lost.
#[test]
fn split_remote_serve_equals_kestrel_run_and_finishes_alone() {
    let m = require_model!(SMOLLM2);
    let prompt = "The three primary colours are";
    let run = greedy_run(&m, prompt, &["--ignore-eos"]);
    let split = split_server::SplitServe::start(&m, "127.0.0.1", None, THREADS);
    // 10 ms each way keeps the answer streaming long enough to cut it midway.
    let target = split.addr.parse().unwrap();
    let px = proxy::Proxy::start("127.0.0.1:0", target, Duration::from_millis(10)).unwrap();
    let url = px.url();
    let s = Server::start(&m, &["--split-remote", &url, "--split-layer", "12"]);

    let v = s.scenario("split", &["remote", prompt, "32"]);
    assert_eq!(v["text"], run["text"], "split server answer vs kestrel run");
    assert_eq!(v["tokens"], 32);
    // One step for the prompt, one for each generated token but the last.
    assert_eq!(v["split"]["remote_steps"], 32, "{}", v["split"]);
    assert_eq!(v["fallbacks"], 0.0, "{v}");
    s.scenario("concurrent", &[]);

    let pid = split.child.id().to_string();
    let cut = s.scenario("split_cut", &[prompt, "32", &pid, "8"]);
    assert_eq!(
        cut["text"], run["text"],
        "answer cut by the split server's death"
    );
    let r = &cut["split"];
    assert_eq!(r["fell_back"], true, "{r}");
    let n = r["tokens_before_fallback"].as_u64().unwrap();
    assert!((8..32).contains(&n), "fell back after {n} tokens: {r}");

    // The split server is gone: requests run locally from the start, with the same answer.
    let v = s.scenario("split", &["local", prompt, "32"]);
    assert_eq!(v["text"], run["text"], "local answer vs kestrel run");
    assert_eq!(v["split"]["fallback_at_position"], 0, "{}", v["split"]);
    assert!(v["fallbacks"].as_f64().unwrap() >= 3.0, "{v}");

    let err = kestrel(&[
        "serve",
        "-m",
        &path_str(&m),
        "--split-remote",
        &url,
        "--split-layer",
        "30",
    ])
    .fails_cleanly();
    assert!(err.contains("outside 1..30"), "{err}");
}

#[test]
fn api_key_queue_limit_and_time_limit() {
    let m = require_model!(SMOLLM2);
    let s = Server::start(
        &m,
        &[
            "--api-key",
            "sekrit",
            "--parallel",
            "1",
            "--queue",
            "1",
            "--time-limit",
            "1",
        ],
    );
    s.scenario("auth", &["sekrit"]);
    s.scenario("busy", &[]);
    s.scenario("time_limit", &[]);
}

/// FNV-1a 64, as the session file format specifies (to forge a file from "another model").
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[test]
fn sessions_save_restore_and_refuse_bad_files() {
    let m = require_model!(SMOLLM2);
    let dir = TempDir::new("sessions");
    let s = Server::start(
        &m,
        &["--parallel", "2", "--session-dir", &path_str(dir.path())],
    );
    // A link planted under the save's temporary name is not written through.
    let outside = TempDir::new("sessions-outside");
    let victim = outside.path().join("victim");
    std::fs::write(&victim, b"keep me").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&victim, dir.path().join("ada.kvsession.tmp")).unwrap();
    let out = s.scenario("sessions", &[]);
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    let file = dir.path().join(out["file"].as_str().expect("file name"));
    let good = std::fs::read(&file).expect("saved session file");

    // Damaged: one flipped byte in the KV data.
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    std::fs::write(dir.path().join("damaged.kvsession"), &bad).unwrap();
    let r = s.scenario("restore_fails", &["damaged"]);
    assert!(r["message"].as_str().unwrap().contains("damaged"), "{r}");

    // From another model: a different fingerprint with a valid checksum.
    let mut other = good.clone();
    other[12] ^= 0xff;
    let n = other.len() - 8;
    let sum = fnv1a(&other[..n]);
    other[n..].copy_from_slice(&sum.to_le_bytes());
    std::fs::write(dir.path().join("othermodel.kvsession"), &other).unwrap();
    let r = s.scenario("restore_fails", &["othermodel"]);
    assert!(
        r["message"].as_str().unwrap().contains("different model"),
        "{r}"
    );

    // Truncated.
    std::fs::write(dir.path().join("short.kvsession"), &good[..40]).unwrap();
    s.scenario("restore_fails", &["short"]);

    // Larger than any session of this model and context: refused before it is read.
    let huge = std::fs::File::create(dir.path().join("huge.kvsession")).unwrap();
    huge.set_len(1 << 40).unwrap();
    let r = s.scenario("restore_fails", &["huge"]);
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("more than a session"),
        "{r}"
    );

    // A symbolic link (here to the good file, inside the directory even): refused.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&file, dir.path().join("link.kvsession")).unwrap();
        let r = s.scenario("restore_fails", &["link"]);
        assert!(
            r["message"].as_str().unwrap().contains("symbolic link"),
            "{r}"
        );
    }
}
