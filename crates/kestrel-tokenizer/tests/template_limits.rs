//! A chat template is code from the model file. One that loops, recurses without end or writes
//! an unbounded prompt gets a clear error in bounded time (minijinja's fuel and recursion
//! limits, and a bound on the output); one that overflows the stack printing a value that holds
//! itself (found by the fuzz target), doubles a string until memory runs out, or runs for
//! minutes within its fuel, kills only the child process it renders in (on Unix); and real
//! templates still render.

use kestrel_tokenizer::{ChatMessage, ChatTemplate};
use std::time::{Duration, Instant};

fn render(src: &str) -> (Result<String, String>, Duration) {
    let t = ChatTemplate::from_source(src, "<s>", "</s>").expect("the template compiles");
    let msgs = [ChatMessage::new("user", "hello")];
    let start = Instant::now();
    let r = t.render(&msgs, true).map_err(|e| e.to_string());
    (r, start.elapsed())
}

fn refused(src: &str, want: &str) {
    let (r, took) = render(src);
    let e = r.expect_err("the template should be refused");
    assert!(e.contains(want), "{src}: {e}");
    assert!(took < Duration::from_secs(30), "{src}: took {took:?}");
}

#[test]
fn a_template_that_loops_runs_out_of_fuel() {
    refused(
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        "instructions (does it loop?)",
    );
}

#[test]
fn a_template_that_recurses_without_end_is_stopped() {
    refused(
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        "recursion",
    );
}

#[test]
fn a_template_whose_output_explodes_is_cut_off() {
    // 100 MB of output for 10 bytes of messages.
    refused(
        "{% for a in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
        "output passed",
    );
}

#[test]
fn a_real_sized_conversation_renders() {
    let src = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}\
               {% if add_generation_prompt %}<|assistant|>{% endif %}";
    let t = ChatTemplate::from_source(src, "<s>", "</s>").unwrap();
    // 2,000 turns of 1 KB each: far more than any context holds, well within the bounds.
    let msgs: Vec<ChatMessage> = (0..2000)
        .map(|i| {
            ChatMessage::new(
                if i % 2 == 0 { "user" } else { "assistant" },
                "y".repeat(1000),
            )
        })
        .collect();
    let out = t.render(&msgs, true).unwrap();
    assert!(out.len() > 2_000_000 && out.ends_with("<|assistant|>"));
}

#[cfg(unix)]
#[test]
fn a_template_that_kills_its_renderer_is_an_error() {
    // The fuzz target's crash: a namespace holding itself, printed.
    refused(
        "{% set ns = namespace(n=0) %}{% set ns.n = ns %}{{ ns.n }}",
        "the chat template's render",
    );
    // A string doubled 40 times: a terabyte.
    refused(
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
        "the chat template's render",
    );
    // Few instructions, each copying a longer string: minutes of work.
    refused(
        "{% set ns = namespace(s='') %}{% for i in range(100000) %}{% set ns.s = ns.s ~ ('x' * 2000) %}{% endfor %}{{ ns.s|length }}",
        "the chat template's render",
    );
}
