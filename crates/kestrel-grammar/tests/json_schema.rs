//! Constrained output against a validator no one here wrote: 100 sampled answers per reference
//! model (200 in all) under a JSON schema (temperature 0.9, a seed each; eight at a time through the engine's
//! batching scheduler, so the mask is applied in batched steps as the server runs them) must
//! all parse and validate with Python's `jsonschema`. Also: a regular expression and a Lark
//! grammar hold on every sample, and an invalid schema is refused with its reason.

use kestrel_engine::batch::speculate::Speculative;
use kestrel_engine::batch::{Client, Plain, Request, Scheduler, Strategy};
use kestrel_engine::decode::primed_sampler;
use kestrel_engine::decoding::{Decoding, Sink};
use kestrel_engine::speculative::{Drafter, NgramDrafter};
use kestrel_engine::{ChatMessage, Engine, EngineConfig, SamplerConfig, StopReason};
use kestrel_grammar::{Grammars, Spec};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Instant;

fn model(file: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("KESTREL_MODELS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/kestrel/models"),
    };
    let p = dir.join(file);
    if p.exists() {
        return Some(p);
    }
    assert_eq!(
        std::env::var("KESTREL_SKIP_MODEL_TESTS").as_deref(),
        Ok("1"),
        "{} is missing: run scripts/fetch-models.sh",
        p.display()
    );
    None
}

/// Draft tokens proposed in speculative steps, over the test binary.
static DRAFTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// (sample number, text, how it ended) of every finished sample.
type Answers = Arc<Mutex<Vec<(usize, String, Option<StopReason>)>>>;

struct Collect {
    text: String,
    out: Answers,
    n: usize,
}

impl Sink for Collect {
    fn token(&mut self, _id: u32, text: String, _logits: &[f32]) -> bool {
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
        false
    }
    fn drafted(&mut self, drafted: usize, _accepted: usize) {
        DRAFTED.fetch_add(drafted, std::sync::atomic::Ordering::Relaxed);
    }
    fn done(&mut self, reason: StopReason, _generated: usize) {
        let t = std::mem::take(&mut self.text);
        self.out.lock().unwrap().push((self.n, t, Some(reason)));
    }
}

/// `n` answers to `question` under `spec`, sampled with seeds 0..n, eight at a time.
fn sample(e: &Engine, spec: &Spec, question: &str, n: usize, max_tokens: usize) -> Vec<String> {
    sample_with(e, spec, question, n, max_tokens, 8, Box::new(Plain))
}

/// [`sample`], `parallel` at a time, stepped by `strategy`.
fn sample_with(
    e: &Engine,
    spec: &Spec,
    question: &str,
    n: usize,
    max_tokens: usize,
    parallel: usize,
    strategy: Box<dyn Strategy<Collect>>,
) -> Vec<String> {
    let g = Arc::new(Grammars::new(e.tokenizer.clone()).unwrap());
    let prompt = e
        .tokenize_chat(&[ChatMessage::new("user", question)])
        .unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    let mut sched = Scheduler::new(e, parallel, strategy);
    let mut next = 0;
    let t0 = Instant::now();
    while next < n || !sched.is_idle() {
        while next < n && sched.has_free() {
            let cfg = SamplerConfig {
                temperature: 0.9,
                seed: next as u64,
                ..SamplerConfig::default()
            };
            let dec = Decoding::new(primed_sampler(&cfg, &prompt), &[], max_tokens, false)
                .with_constraint(g.constraint(spec).unwrap());
            let client = Collect {
                text: String::new(),
                out: out.clone(),
                n: next,
            };
            let req = Request {
                prompt: prompt.clone(),
                session: None,
                prompt_logprobs: None,
                dec,
                client,
            };
            assert!(sched.admit(req, Instant::now()).is_ok());
            next += 1;
        }
        sched.step(e, Instant::now());
    }
    let mut got = std::mem::take(&mut *out.lock().unwrap());
    got.sort_by_key(|g| g.0);
    eprintln!(
        "{n} samples in {:.1} s, {:.3} ms per mask",
        t0.elapsed().as_secs_f64(),
        g.stats.mean_ms()
    );
    assert_eq!(got.len(), n);
    for (i, t, r) in &got {
        // Ended by the grammar, not cut off.
        assert_eq!(
            *r,
            Some(StopReason::Eos),
            "sample {i} ended at {r:?}: {t:?}"
        );
    }
    got.into_iter().map(|g| g.1).collect()
}

/// The python of the test virtual environment (scripts/setup-openai-client.sh).
fn python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("openai-venv");
    let out = Command::new(root.join("scripts/setup-openai-client.sh"))
        .arg(&venv)
        .output()
        .expect("running scripts/setup-openai-client.sh");
    assert!(
        out.status.success(),
        "setting up the Python test environment failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

const SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 24},
    "age": {"type": "integer", "minimum": 0, "maximum": 120},
    "email": {"type": "string", "pattern": "^[a-z]{1,12}@[a-z]{1,12}\\.com$"},
    "colors": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "minItems": 1, "maxItems": 3},
    "pet": {"anyOf": [{"type": "null"}, {"type": "object", "properties": {"kind": {"enum": ["cat", "dog"]}, "legs": {"type": "integer", "minimum": 0, "maximum": 8}}, "required": ["kind"], "additionalProperties": false}]}
  },
  "required": ["name", "age", "colors", "pet"],
  "additionalProperties": false
}"#;

fn schema_holds_on(file: &str) {
    let Some(p) = model(file) else { return };
    let cfg = EngineConfig {
        n_ctx: 512,
        n_batch: 64,
        n_threads: 2,
    };
    let e = Engine::load(&p, &cfg).unwrap();
    let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
    let spec = Spec::JsonSchema(schema);
    let answers = sample(&e, &spec, "Describe a person as JSON.", 100, 160);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("schema-{file}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("schema.json"), SCHEMA).unwrap();
    let lines: Vec<String> = answers
        .iter()
        .map(|a| serde_json::to_string(a).unwrap())
        .collect();
    std::fs::write(dir.join("answers.jsonl"), lines.join("\n")).unwrap();
    let check = r#"
import json, sys, jsonschema
d = sys.argv[1]
schema = json.load(open(d + "/schema.json"))
bad = 0
n = 0
for line in open(d + "/answers.jsonl"):
    n += 1
    text = json.loads(line)
    try:
        jsonschema.validate(json.loads(text), schema)
    except Exception as e:
        bad += 1
        print(f"invalid: {text!r}: {e}", file=sys.stderr)
print(f"{n - bad} of {n} valid")
sys.exit(1 if bad or n == 0 else 0)
"#;
    let out = Command::new(python())
        .args(["-c", check, dir.to_str().unwrap()])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{file}: {report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("100 of 100 valid"), "{report}");
    // Not all the same answer: the samples differ.
    let distinct: std::collections::HashSet<&String> = answers.iter().collect();
    assert!(distinct.len() > 50, "{} distinct answers", distinct.len());
}

#[test]
fn json_schema_holds_on_100_samples_smollm2() {
    schema_holds_on("SmolLM2-135M-Instruct.Q4_1.gguf");
}

#[test]
fn json_schema_holds_on_100_samples_gemma3() {
    schema_holds_on("gemma-3-270m-q4_k_m.gguf");
}

#[test]
fn regex_and_lark_hold_and_a_bad_schema_is_refused() {
    let Some(p) = model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let cfg = EngineConfig {
        n_ctx: 256,
        n_batch: 64,
        n_threads: 2,
    };
    let e = Engine::load(&p, &cfg).unwrap();
    let date = Spec::Regex(r"(19|20)[0-9]{2}-(0[1-9]|1[0-2])-[0-2][0-9]".into());
    for a in sample(&e, &date, "When were you born? Give a date.", 16, 16) {
        let b = a.as_bytes();
        assert!(a.len() == 10 && b[4] == b'-' && b[7] == b'-', "{a:?}");
        assert!(a.starts_with("19") || a.starts_with("20"), "{a:?}");
    }
    let lark = Spec::Lark(
        "start: answer \" because \" reason\nanswer: \"yes\" | \"no\"\nreason: /[a-z ]{1,30}/\n"
            .into(),
    );
    for a in sample(&e, &lark, "Is the sky blue?", 16, 40) {
        let (ans, why) = a.split_once(" because ").unwrap_or_else(|| panic!("{a:?}"));
        assert!(ans == "yes" || ans == "no", "{a:?}");
        assert!(!why.is_empty() && why.len() <= 30, "{a:?}");
        assert!(
            why.chars().all(|c| c.is_ascii_lowercase() || c == ' '),
            "{a:?}"
        );
    }
    let g = Grammars::new(e.tokenizer.clone()).unwrap();
    let bad = Spec::JsonSchema(
        serde_json::json!({"type": "object", "properties": {"a": {"type": "nonsense"}}}),
    );
    let err = g
        .constraint(&bad)
        .err()
        .expect("an invalid schema is refused")
        .to_string();
    assert!(err.starts_with("invalid JSON schema:"), "{err}");
}

/// Speculative decoding under a constraint (the scheduler's speculative strategy, one sequence
/// at a time so every step drafts): each sampled answer is the one plain steps give, and valid.
#[test]
fn a_constrained_answer_is_the_same_with_drafts() {
    let Some(p) = model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let cfg = EngineConfig {
        n_ctx: 512,
        n_batch: 64,
        n_threads: 2,
    };
    let e = Engine::load(&p, &cfg).unwrap();
    let colors = Spec::JsonSchema(serde_json::json!({
        "type": "object",
        "properties": {"colors": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "maxItems": 3}},
        "required": ["colors"], "additionalProperties": false,
    }));
    let q = "List some colors as JSON.";
    let plain = sample(&e, &colors, q, 6, 60);
    let make = Arc::new(|| Ok(Box::new(NgramDrafter::default()) as Box<dyn Drafter>));
    let spec: Box<dyn Strategy<Collect>> = Box::new(Speculative::new(make, 1, 6, true));
    let drafted = sample_with(&e, &colors, q, 6, 60, 1, spec);
    assert_eq!(drafted, plain);
    assert!(
        DRAFTED.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "nothing was drafted"
    );
    for a in &plain {
        let v: serde_json::Value = serde_json::from_str(a).unwrap_or_else(|e| panic!("{a:?}: {e}"));
        assert!(v.is_object());
    }
}
