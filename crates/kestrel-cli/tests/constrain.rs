//! `kestrel run` with constrained output: `--json-object` answers parse as a JSON object
//! (serde_json), `--regex` answers match, the report says what constrained it and what the
//! mask cost, and combinations not supported yet are refused.

mod common;

use common::{kestrel, path_str, TempDir, SMOLLM2, THREADS};

#[test]
fn run_constrains_its_answer() {
    let m = require_model!(SMOLLM2);
    let m = path_str(&m);
    let base = [
        "run", "-m", &m, "-t", THREADS, "-n", "64", "--json", "--chat",
    ];
    for seed in ["1", "2", "3"] {
        let v = kestrel(
            &[
                &base[..],
                &[
                    "--json-object",
                    "--temp",
                    "0.8",
                    "-s",
                    seed,
                    "Describe a cat.",
                ],
            ]
            .concat(),
        )
        .ok()
        .json();
        let text = v["text"].as_str().unwrap();
        let obj: serde_json::Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert!(obj.is_object(), "{text}");
        assert_eq!(v["stop_reason"], "eos", "{v}");
        assert_eq!(v["constraint"]["kind"], "JSON object");
        assert!(v["constraint"]["masks"].as_u64().unwrap() > 0);
        assert!(v["constraint"]["mean_mask_ms"].as_f64().unwrap() > 0.0);
    }
    let v = kestrel(
        &[
            &base[..],
            &[
                "--regex",
                "(yes|no), [a-z]+\\.",
                "--temp",
                "0",
                "Is water wet?",
            ],
        ]
        .concat(),
    )
    .ok()
    .json();
    let t = v["text"].as_str().unwrap();
    let (a, rest) = t.split_once(", ").unwrap_or_else(|| panic!("{t:?}"));
    assert!((a == "yes" || a == "no") && rest.ends_with('.'), "{t:?}");
    let dir = TempDir::new("constrain");
    let schema = dir.path().join("s.json");
    std::fs::write(
        &schema,
        r#"{"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}"#,
    )
    .unwrap();
    let s = path_str(&schema);
    // Refused: two constraints, a bad schema file, constraints with a drafter.
    kestrel(&[&base[..], &["--json-object", "--regex", "a", "hi"]].concat()).fails_cleanly();
    std::fs::write(dir.path().join("bad.json"), "{not json").unwrap();
    let bad = path_str(&dir.path().join("bad.json"));
    let e = kestrel(&[&base[..], &["--json-schema", &bad, "hi"]].concat()).fails_cleanly();
    assert!(e.contains("not JSON"), "{e}");
    let e = kestrel(&[&base[..], &["--json-schema", &s, "--draft", "ngram", "hi"]].concat())
        .fails_cleanly();
    assert!(e.contains("does not go with speculative decoding"), "{e}");
}
