//! Helpers for the end-to-end tests of the `kestrel` binary: where the models and goldens live,
//! running the binary, and reading its JSON output.
//!
//! Models: `$KESTREL_MODELS`, else `~/.cache/kestrel/models`. A test that needs a model fails
//! with a hint to run `scripts/fetch-models.sh` when the file is missing, unless
//! `KESTREL_SKIP_MODEL_TESTS=1`, in which case it prints a note and returns early.
//! Goldens: `$KESTREL_GOLDEN`, else `<workspace>/../shared/golden`.

#![allow(dead_code)]

pub mod server;

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One of the two reference models.
#[derive(Clone, Copy, Debug)]
pub struct ModelSpec {
    /// File name in the models directory.
    pub file: &'static str,
    /// Folder name under the golden directory.
    pub golden: &'static str,
    /// `general.architecture` in the file's metadata.
    pub arch: &'static str,
    /// Tensors in the file.
    pub n_tensors: usize,
}

pub const SMOLLM2: ModelSpec = ModelSpec {
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    golden: "smollm2-135m-instruct-q4_1",
    arch: "llama",
    n_tensors: 272,
};
pub const GEMMA3: ModelSpec = ModelSpec {
    file: "gemma-3-270m-q4_k_m.gguf",
    golden: "gemma3-270m-q4_k_m",
    arch: "gemma3",
    n_tensors: 236,
};
pub const MODELS: [ModelSpec; 2] = [SMOLLM2, GEMMA3];

/// Threads each test's forward passes use: the tests themselves run in parallel.
pub const THREADS: &str = "2";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("KESTREL_MODELS") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache/kestrel/models")
}

/// A file of the shared evaluation and calibration text (`../shared/data`).
pub fn data(name: &str) -> String {
    path_str(&workspace_root().join("../shared/data").join(name))
}

/// `kestrel kld --json` of `model` from `base` on one chunk of 128 tokens of wiki text, with
/// its summary printed; the KLD is checked to be a finite non-negative number.
pub fn kld_one_chunk(base: &str, model: &str) -> Value {
    let wiki = data("wiki.test.raw");
    let v = kestrel(&[
        "kld", "--base", base, "-m", model, "-f", &wiki, "-c", "128", "--chunks", "1", "-t",
        THREADS, "--json",
    ])
    .ok()
    .json();
    let k = v["mean_kld"].as_f64().unwrap();
    eprintln!(
        "{model}: KLD {k:.6} vs {base}, perplexity {:.3} (base {:.3}), top-1 {:.3}",
        v["ppl"].as_f64().unwrap(),
        v["base_ppl"].as_f64().unwrap(),
        v["top1_agreement"].as_f64().unwrap()
    );
    assert!(k.is_finite() && k >= 0.0, "KLD {k}");
    v
}

pub fn golden_dir() -> PathBuf {
    match std::env::var_os("KESTREL_GOLDEN") {
        Some(d) => PathBuf::from(d),
        None => workspace_root().join("../shared/golden"),
    }
}

pub fn skip_model_tests() -> bool {
    std::env::var("KESTREL_SKIP_MODEL_TESTS").is_ok_and(|v| v == "1")
}

/// The model's path, or `None` (with a note printed) when it is missing and model tests are
/// skipped. Panics with a hint to fetch it when it is missing otherwise.
pub fn model_path(spec: ModelSpec) -> Option<PathBuf> {
    let p = models_dir().join(spec.file);
    if p.is_file() {
        return Some(p);
    }
    if skip_model_tests() {
        eprintln!(
            "note: skipping: model {} is missing and KESTREL_SKIP_MODEL_TESTS=1",
            p.display()
        );
        return None;
    }
    panic!(
        "model {} is missing: run scripts/fetch-models.sh (or set KESTREL_MODELS to the folder that holds it, \
         or KESTREL_SKIP_MODEL_TESTS=1 to skip the tests that need it)",
        p.display()
    );
}

/// `let m = require_model!(SMOLLM2);` returns from the test early when the model is missing and
/// model tests are skipped.
#[macro_export]
macro_rules! require_model {
    ($spec:expr) => {
        match common::model_path($spec) {
            Some(p) => p,
            None => return,
        }
    };
}

/// A golden file (`tokenize.json`, `logits.json`, `perplexity.json`) of a model.
pub fn golden(spec: ModelSpec, file: &str) -> Value {
    let p = golden_dir().join(spec.golden).join(file);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| {
        panic!(
            "reading golden {}: {e} (set KESTREL_GOLDEN to the golden folder)",
            p.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing golden {}: {e}", p.display()))
}

/// What a finished `kestrel` process left behind.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub cmdline: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Asserts exit status 0 and returns self.
    #[track_caller]
    pub fn ok(self) -> Output {
        assert!(
            self.success(),
            "`{}` failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            self.cmdline,
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts a clean failure: a non-zero exit status (not a signal), a message on stderr, and no
    /// panic. Returns the stderr for further checks.
    #[track_caller]
    pub fn fails_cleanly(self) -> String {
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "`{}` should fail with a non-zero status, got {:?}\nstdout:\n{}\nstderr:\n{}",
            self.cmdline,
            self.code,
            self.stdout,
            self.stderr
        );
        assert!(
            !self.stderr.contains("panicked"),
            "`{}` panicked:\n{}",
            self.cmdline,
            self.stderr
        );
        assert!(
            !self.stderr.trim().is_empty(),
            "`{}` failed without a message on stderr",
            self.cmdline
        );
        self.stderr
    }

    /// stdout parsed as one JSON value.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "`{}`: stdout is not JSON ({e}):\n{}",
                self.cmdline, self.stdout
            )
        })
    }
}

pub fn kestrel_cmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kestrel"))
}

fn describe<S: AsRef<str>>(args: &[S]) -> String {
    let mut s = String::from("kestrel");
    for a in args {
        let a = a.as_ref();
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
            s.push_str(&format!(" {a:?}"));
        } else {
            s.push(' ');
            s.push_str(a);
        }
    }
    s
}

/// Run `kestrel ARGS` with stdin closed.
pub fn kestrel<S: AsRef<str>>(args: &[S]) -> Output {
    kestrel_with(args, None, &[])
}

/// Run `kestrel ARGS`, writing `stdin` to it (or closing stdin) and setting `env`.
pub fn kestrel_with<S: AsRef<str>>(
    args: &[S],
    stdin: Option<&str>,
    env: &[(&str, &Path)],
) -> Output {
    let mut cmd = kestrel_cmd();
    cmd.args(args.iter().map(|a| a.as_ref()));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let cmdline = describe(args);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning `{cmdline}`: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        let input = input.to_string();
        // Write from a thread so a chatty child cannot deadlock against a full stdout pipe.
        std::thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for `{cmdline}`: {e}"));
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        cmdline,
    }
}

/// A fresh, empty scratch directory for one test, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("kestrel-cli-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()));
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn as_u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array of ids, got {v}"))
        .iter()
        .map(|x| {
            x.as_u64()
                .unwrap_or_else(|| panic!("expected an id, got {x}")) as u32
        })
        .collect()
}

pub fn path_str(p: &Path) -> String {
    p.to_str().expect("test paths are UTF-8").to_string()
}
