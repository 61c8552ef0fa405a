//! Split inference through the CLI (docs/split.md): `kestrel serve --split-server` and
//! `kestrel run --split-remote`. With f32 on the wire the greedy output must equal a plain
//! `kestrel run`; when the server is unreachable, dies mid-generation, stalls past
//! --split-timeout-ms or serves another model, the device must finish alone with the same
//! output (nothing repeated or lost) and say that it fell back, and after how many tokens.

mod common;
#[path = "../../kestrel-collab/tests/common/proxy.rs"]
mod proxy;
#[path = "split/serve.rs"]
mod serve;

use common::{path_str, GEMMA3, SMOLLM2, THREADS};
use serde_json::Value;
use serve::SplitServe;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PROMPT: &str =
    "<|im_start|>user\nWrite a short poem about the sea.<|im_end|>\n<|im_start|>assistant\n";
const N: &str = "24";

fn run_args(model: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["run", "-m", &path_str(model), "-t", THREADS, "-p", PROMPT]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend(
        ["-n", N, "--temp", "0", "--ignore-eos", "--ctx", "512"]
            .iter()
            .map(|s| s.to_string()),
    );
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// `kestrel run --json` plus `extra`.
fn run_json(model: &Path, extra: &[&str]) -> Value {
    let mut args = run_args(model, extra);
    args.push("--json".into());
    common::kestrel(&args).ok().json()
}

fn split_meta(v: &Value) -> &Value {
    let s = &v["split"];
    assert!(s.is_object(), "no split metadata in {v}");
    s
}

#[track_caller]
fn same_output(got: &Value, want: &Value) {
    assert_eq!(
        got["tokens"], want["tokens"],
        "tokens differ from the plain run"
    );
    assert_eq!(got["text"], want["text"], "text differs from the plain run");
}

#[test]
fn f32_split_run_equals_plain_run() {
    let m = require_model!(SMOLLM2);
    let server = SplitServe::start(&m, "127.0.0.1", None, THREADS);
    let plain = run_json(&m, &[]);
    assert_eq!(plain["tokens"].as_array().map(|t| t.len()), Some(24));
    for k in ["1", "15", "29"] {
        let url = server.url();
        let v = run_json(
            &m,
            &[
                "--split-remote",
                &url,
                "--split-layer",
                k,
                "--split-wire",
                "f32",
            ],
        );
        same_output(&v, &plain);
        let s = split_meta(&v);
        assert_eq!(s["fell_back"], false, "k={k}: {s}");
        assert_eq!(s["layer"].as_u64(), Some(k.parse().unwrap()));
        // One step for the prompt, one per generated token but the last.
        assert_eq!(s["remote_steps"].as_u64(), Some(24), "k={k}: {s}");
        // f32 hidden states of every prompt and generated position went up.
        let n_pos = v["prompt_tokens"].as_u64().unwrap() + 23;
        assert!(s["bytes_sent"].as_u64().unwrap() >= n_pos * 576 * 4, "{s}");
    }
    // Small micro-batches: the prompt crosses in several steps, the server runs the same ones.
    let plain8 = run_json(&m, &["-b", "8"]);
    let url = server.url();
    let v = run_json(
        &m,
        &["-b", "8", "--split-remote", &url, "--split-layer", "7"],
    );
    same_output(&v, &plain8);
    assert_eq!(split_meta(&v)["fell_back"], false);
}

#[test]
fn unreachable_server_runs_on_the_device_from_the_start() {
    let m = require_model!(SMOLLM2);
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let plain = run_json(&m, &[]);
    let v = run_json(&m, &["--split-remote", &url, "--split-layer", "10"]);
    same_output(&v, &plain);
    let s = split_meta(&v);
    assert_eq!(s["fell_back"], true, "{s}");
    assert_eq!(s["fallback_at_position"], 0, "{s}");
    assert_eq!(s["tokens_before_fallback"], 0, "{s}");
    assert_eq!(s["remote_steps"], 0, "{s}");
    // The log says so too.
    let out = common::kestrel(&run_args(
        &m,
        &["--split-remote", &url, "--split-layer", "10"],
    ))
    .ok();
    assert!(out.stderr.contains("no split server"), "{}", out.stderr);
}

/// Run `kestrel run` (streaming, not --json) through `via`, call `cut` once at least
/// `after` bytes of the answer have been printed, and return stdout and stderr.
fn run_and_cut(
    model: &Path,
    via: &str,
    extra: &[&str],
    after: usize,
    cut: impl FnOnce(),
) -> (String, String) {
    let mut args = run_args(model, &["--split-remote", via, "--split-layer", "12"]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_kestrel"))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning kestrel run");
    let got = Arc::new(Mutex::new(Vec::new()));
    let mut so = child.stdout.take().unwrap();
    let g = got.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = so.read(&mut buf) {
            if n == 0 {
                break;
            }
            g.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let mut se = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let t0 = Instant::now();
    while got.lock().unwrap().len() < after {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no output from kestrel run"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    cut();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let stderr = err.join().unwrap();
    assert!(status.success(), "kestrel run failed:\n{stderr}");
    let stdout = String::from_utf8(got.lock().unwrap().clone()).unwrap();
    (stdout, stderr)
}

/// The position and token count a fall-back summary line names.
fn fallback_tokens(stderr: &str) -> usize {
    let line = stderr
        .lines()
        .find(|l| l.contains("fell back to this device"))
        .unwrap_or_else(|| panic!("no fall-back in the summary:\n{stderr}"));
    let after = line.split("after ").nth(1).expect("after N tokens");
    after.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn server_killed_mid_generation_device_finishes_alone() {
    let m = require_model!(SMOLLM2);
    let plain = run_json(&m, &[]);
    let want = format!("{}\n", plain["text"].as_str().unwrap());
    let mut server = SplitServe::start(&m, "127.0.0.1", None, THREADS);
    // A 10 ms delay each way keeps the answer streaming long enough to cut it midway.
    let target = server.addr.parse().unwrap();
    let px = proxy::Proxy::start("127.0.0.1:0", target, Duration::from_millis(10)).unwrap();
    let (stdout, stderr) = run_and_cut(&m, &px.url(), &[], 12, || server.kill());
    assert_eq!(
        stdout, want,
        "answer after the server died differs:\n{stderr}"
    );
    let n = fallback_tokens(&stderr);
    assert!(
        (1..24).contains(&n),
        "fell back after {n} tokens:\n{stderr}"
    );
    assert!(stderr.contains("continuing on this device"), "{stderr}");
}

#[test]
fn stalled_server_past_the_timeout_device_finishes_alone() {
    let m = require_model!(SMOLLM2);
    let plain = run_json(&m, &[]);
    let want = format!("{}\n", plain["text"].as_str().unwrap());
    let server = SplitServe::start(&m, "127.0.0.1", None, THREADS);
    let target = server.addr.parse().unwrap();
    let px = proxy::Proxy::start("127.0.0.1:0", target, Duration::from_millis(10)).unwrap();
    let stall = px.stall.clone();
    let t0 = Instant::now();
    let (stdout, stderr) = run_and_cut(&m, &px.url(), &["--split-timeout-ms", "400"], 12, || {
        stall.store(true, Ordering::Relaxed)
    });
    assert_eq!(stdout, want, "answer after the stall differs:\n{stderr}");
    let n = fallback_tokens(&stderr);
    assert!(
        (1..24).contains(&n),
        "fell back after {n} tokens:\n{stderr}"
    );
    assert!(
        stderr.contains("timed out") || stderr.contains("timeout"),
        "{stderr}"
    );
    assert!(t0.elapsed() < Duration::from_secs(30));
}

#[test]
fn server_with_another_model_is_refused_and_the_device_runs_alone() {
    let m = require_model!(SMOLLM2);
    let g = require_model!(GEMMA3);
    let server = SplitServe::start(&g, "127.0.0.1", None, THREADS);
    let plain = run_json(&m, &[]);
    let url = server.url();
    let v = run_json(&m, &["--split-remote", &url, "--split-layer", "10"]);
    same_output(&v, &plain);
    let s = split_meta(&v);
    assert_eq!(s["fell_back"], true, "{s}");
    let why = s["fallback_reason"].as_str().unwrap();
    assert!(why.contains("ModelMismatch"), "{why}");
}

#[test]
fn bad_split_options_are_clear_errors() {
    let m = require_model!(SMOLLM2);
    let err = common::kestrel(&run_args(
        &m,
        &[
            "--split-remote",
            "http://127.0.0.1:9",
            "--split-layer",
            "30",
        ],
    ))
    .fails_cleanly();
    assert!(err.contains("outside 1..30"), "{err}");
    let err =
        common::kestrel(&run_args(&m, &["--split-remote", "http://127.0.0.1:9"])).fails_cleanly();
    assert!(err.contains("--split-layer"), "{err}");
    let err = common::kestrel(&run_args(
        &m,
        &["--split-remote", "ftp://x", "--split-layer", "3"],
    ))
    .fails_cleanly();
    assert!(err.contains("http://"), "{err}");
}
