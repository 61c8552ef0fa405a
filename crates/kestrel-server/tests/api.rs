//! Request parsing and checks that need no model: what becomes a 400 and why.

use kestrel_server::api::{self, ChatRequest, CompletionRequest, Prompt};

#[test]
fn malformed_and_mistyped_bodies_are_400_with_a_reason() {
    let e = api::parse::<ChatRequest>(b"{not json").unwrap_err();
    assert_eq!(e.status, 400);
    assert!(e.message.starts_with("malformed JSON"), "{}", e.message);
    let e = api::parse::<ChatRequest>(br#"{"messages": "hi"}"#).unwrap_err();
    assert_eq!(e.status, 400);
    assert!(
        e.message.starts_with("invalid request body"),
        "{}",
        e.message
    );
    assert!(e.message.contains("field 'messages'"), "{}", e.message);
    assert_eq!(e.param.as_deref(), Some("messages"));
    let e = api::parse::<ChatRequest>(br#"{"messages": [], "temperature": "hot"}"#).unwrap_err();
    assert_eq!(e.status, 400);
    // A field of a flattened group, named all the same, in the API's words.
    assert_eq!(e.param.as_deref(), Some("temperature"), "{}", e.message);
    assert!(e.message.contains("expected a number"), "{}", e.message);
    let e = api::parse::<CompletionRequest>(br#"{"model": "m"}"#).unwrap_err();
    assert!(e.message.contains("prompt"), "{}", e.message);
    let body = e.body();
    let err = body["error"].as_object().unwrap();
    let mut keys: Vec<&str> = err.keys().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["code", "message", "param", "type"]);
}

#[test]
fn lenient_in_unknown_fields_and_shapes() {
    let r: ChatRequest = api::parse(
        br#"{"model": "x", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
            "frequency_penalty": 0, "user": "u", "stop": "END", "max_completion_tokens": 7}"#,
    )
    .unwrap();
    assert_eq!(r.messages[0].text().unwrap(), "ab");
    let s = r.sampling.settings().unwrap();
    assert_eq!(s.stop, ["END"]);
    assert_eq!(s.max_tokens, Some(7));
    let c: CompletionRequest = api::parse(br#"{"prompt": [1, 2, 3]}"#).unwrap();
    assert!(matches!(c.prompt, Prompt::Tokens(ref t) if t == &[1, 2, 3]));
    let img: ChatRequest =
        api::parse(br#"{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#)
            .unwrap();
    assert_eq!(img.messages[0].text().unwrap_err().status, 400);
}

#[test]
fn sampling_ranges_are_checked() {
    let settings = |body: &str| {
        api::parse::<CompletionRequest>(body.as_bytes())
            .unwrap()
            .sampling
            .settings()
    };
    assert!(settings(r#"{"prompt": "a", "temperature": 2.5}"#).is_err());
    assert!(settings(r#"{"prompt": "a", "temperature": -1}"#).is_err());
    assert!(settings(r#"{"prompt": "a", "top_p": 0}"#).is_err());
    assert!(settings(r#"{"prompt": "a", "max_tokens": 0}"#).is_err());
    assert!(settings(r#"{"prompt": "a", "n": 2}"#).is_err());
    assert!(settings(r#"{"prompt": "a", "stop": ["1","2","3","4","5"]}"#).is_err());
    let s = settings(r#"{"prompt": "a", "temperature": 0, "seed": 5}"#).unwrap();
    assert_eq!(
        (s.temperature, s.top_p, s.seed, s.max_tokens),
        (0.0, 1.0, 5, None)
    );
}

#[test]
fn session_ids_cannot_name_paths() {
    for ok in ["a", "conv-1_B", &"x".repeat(64)] {
        assert!(api::check_session_id(ok).is_ok(), "{ok}");
    }
    for bad in ["", "../x", "a/b", "a.b", "..", "a b", "é", &"x".repeat(65)] {
        assert!(api::check_session_id(bad).is_err(), "{bad}");
    }
}

#[test]
fn metrics_render_prometheus_text() {
    let m = kestrel_server::metrics::Metrics::default();
    m.ttft.observe(0.03);
    m.ttft.observe(2.0);
    let t = m.render();
    assert!(
        t.contains("kestrel_time_to_first_token_seconds_bucket{le=\"0.05\"} 1"),
        "{t}"
    );
    assert!(
        t.contains("kestrel_time_to_first_token_seconds_bucket{le=\"+Inf\"} 2"),
        "{t}"
    );
    assert!(
        t.contains("kestrel_time_to_first_token_seconds_count 2"),
        "{t}"
    );
    assert!(t.contains("# TYPE kestrel_queue_depth gauge"), "{t}");
}
