//! One-shot instruct use and a chat that does not break: `kestrel run` takes its prompt as an
//! argument, with -p, from -f FILE or stdin, all the same tokens, with `\n` escapes in typed
//! prompts; `run --chat` answers a message as `kestrel chat` does (whose replies the serve
//! tests hold equal to the server's); `kestrel chat` keeps answering when the conversation
//! outgrows its context, says what /reset and /help do, and warns when the model file has
//! no chat template.

mod common;

use common::{kestrel, kestrel_with, path_str, TempDir, SMOLLM2, THREADS};

#[test]
fn every_prompt_source_gives_the_same_tokens() {
    let m = require_model!(SMOLLM2);
    let m = path_str(&m);
    let dir = TempDir::new("prompt-sources");
    let file = dir.path().join("p.txt");
    std::fs::write(&file, "Line one\nLine two").unwrap();
    let f = path_str(&file);
    let base = [
        "run", "-m", &m, "-t", THREADS, "-n", "4", "--temp", "0", "--json",
    ];
    let tokens = |extra: &[&str], stdin: Option<&str>| {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        let v = kestrel_with(&args, stdin, &[]).ok().json();
        (v["prompt_tokens"].clone(), v["tokens"].clone())
    };
    let want = tokens(&["-f", &f], None);
    for (extra, stdin) in [
        (vec!["-p", r"Line one\nLine two"], None),
        (vec![r"Line one\nLine two"], None),
        (vec![], Some("Line one\nLine two")),
        (vec!["-f", "-"], Some("Line one\nLine two")),
    ] {
        assert_eq!(tokens(&extra, stdin), want, "{extra:?} {stdin:?}");
    }
    // Kept literally: a backslash and an n are more tokens than one newline.
    let literal = tokens(&["--no-escape", "-p", r"Line one\nLine two"], None);
    assert!(
        literal.0.as_u64() > want.0.as_u64(),
        "{literal:?} vs {want:?}"
    );
    // Two prompts at once, or an empty one: a clean error.
    kestrel(&[&base[..], &["-p", "a", "-f", &f]].concat()).fails_cleanly();
    kestrel_with(&base, Some(""), &[]).fails_cleanly();
}

#[test]
fn run_chat_answers_as_kestrel_chat_does() {
    let m = require_model!(SMOLLM2);
    let m = path_str(&m);
    let (system, msg) = (
        "You answer in one short sentence.",
        "What is the capital of France?",
    );
    let run = kestrel(&[
        "run", "-m", &m, "-t", THREADS, "-n", "24", "--temp", "0", "--json", "--chat", "--system",
        system, msg,
    ])
    .ok()
    .json();
    let chat = kestrel_with(
        &[
            "chat", "-m", &m, "-t", THREADS, "-n", "24", "--temp", "0", "--system", system,
        ],
        Some(&format!("{msg}\n")),
        &[],
    )
    .ok();
    assert_eq!(
        Some(chat.stdout.trim_end()),
        run["text"].as_str().map(str::trim),
        "run --chat vs chat"
    );
    // Peak resident memory is in the report: at least the model's pages that were read.
    let rss = run["peak_rss_bytes"].as_u64().expect("peak_rss_bytes");
    assert!(rss > 50 << 20, "peak RSS {rss}");
    // Without --chat the same words are a plain continuation: another answer.
    let plain = kestrel(&[
        "run", "-m", &m, "-t", THREADS, "-n", "24", "--temp", "0", "--json", msg,
    ])
    .ok()
    .json();
    assert_ne!(plain["text"], run["text"]);
}

#[test]
fn chat_keeps_talking_when_the_context_fills() {
    let m = require_model!(SMOLLM2);
    let m = path_str(&m);
    let turns = [
        "Tell me about dogs.",
        "Tell me about cats.",
        "/help",
        "Tell me about birds.",
        "Tell me about fish.",
        "Tell me about horses.",
        "/reset",
        "Say hello.",
    ];
    let input: String = turns.iter().map(|t| format!("{t}\n")).collect();
    let out = kestrel_with(
        &[
            "chat",
            "-m",
            &m,
            "-t",
            THREADS,
            "-c",
            "256",
            "-n",
            "60",
            "--temp",
            "0",
            "--system",
            "Be brief.",
        ],
        Some(&input),
        &[],
    )
    .ok();
    assert!(
        out.stderr.contains("dropped its oldest exchange"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("[conversation cleared]"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("commands: /reset"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("kestrel:"),
        "a turn failed: {}",
        out.stderr
    );
    // The last turn after /reset is answered as in a fresh chat.
    let fresh = kestrel_with(
        &[
            "chat",
            "-m",
            &m,
            "-t",
            THREADS,
            "-c",
            "256",
            "-n",
            "60",
            "--temp",
            "0",
            "--system",
            "Be brief.",
        ],
        Some("Say hello.\n"),
        &[],
    )
    .ok();
    assert!(
        out.stdout.ends_with(&fresh.stdout),
        "{:?} vs {:?}",
        out.stdout,
        fresh.stdout
    );
}

#[test]
fn a_model_without_a_chat_template_is_warned_about() {
    let m = require_model!(SMOLLM2);
    let g = kestrel_gguf::GgufFile::open(&m).unwrap();
    let mut w = kestrel_gguf::GgufWriter::new();
    for (k, v) in g.metadata() {
        if k != "tokenizer.chat_template" {
            w.set(k.clone(), v.clone());
        }
    }
    for t in g.tensors() {
        w.add_tensor(
            t.name.clone(),
            t.dims.clone(),
            t.ty,
            g.tensor_data(t).to_vec(),
        )
        .unwrap();
    }
    let dir = TempDir::new("no-template");
    let p = dir.path().join("bare.gguf");
    w.write_file(&p).unwrap();
    let p = path_str(&p);
    let out = kestrel(&["run", "-m", &p, "-t", THREADS, "-n", "2", "--chat", "Hi"]).ok();
    assert!(
        out.stderr
            .contains("warning: the model file has no chat template; using chatml (built-in)"),
        "{}",
        out.stderr
    );
    let out = kestrel_with(
        &["chat", "-m", &p, "-t", THREADS, "-n", "2"],
        Some("Hi\n"),
        &[],
    )
    .ok();
    assert!(out.stderr.contains("no chat template"), "{}", out.stderr);
}
