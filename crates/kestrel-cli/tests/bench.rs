//! `kestrel bench`: the llama-bench-style report and its errors.

mod common;

use common::{kestrel, path_str, GEMMA3, SMOLLM2};

#[test]
fn bench_json_has_the_documented_fields() {
    for spec in [SMOLLM2, GEMMA3] {
        let m = require_model!(spec);
        let m = path_str(&m);
        let out = kestrel(&[
            "bench", "-m", &m, "-p", "16", "-n", "4", "-t", "1,2", "-r", "2", "--json",
        ])
        .ok();
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(
            lines.len(),
            2,
            "one JSON object per thread count:\n{}",
            out.stdout
        );
        for (line, threads) in lines.iter().zip([1, 2]) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["threads"], threads);
            assert_eq!(v["n_prompt"], 16);
            assert_eq!(v["n_gen"], 4);
            assert!(v["model"].as_str().unwrap().ends_with(".gguf"));
            for key in ["prefill_tps", "decode_tps", "ttft_ms"] {
                let x = v[key]
                    .as_f64()
                    .unwrap_or_else(|| panic!("{key} missing: {line}"));
                assert!(x > 0.0 && x.is_finite(), "{key} = {x}");
            }
            let stats = &v["prefill"];
            assert!(stats["min"].as_f64().unwrap() <= stats["median"].as_f64().unwrap());
            assert!(stats["median"].as_f64().unwrap() <= stats["max"].as_f64().unwrap());
            // The model is mapped and touched: at least its size is resident at the peak.
            let rss = v["peak_rss_bytes"].as_u64().unwrap();
            assert!(
                rss >= v["model_size_bytes"].as_u64().unwrap() / 2,
                "peak RSS {rss}"
            );
            // TTFT covers the prompt: not faster than the prefill rate allows.
            let ttft = v["ttft_ms"].as_f64().unwrap();
            assert!(ttft >= 16.0 / v["prefill_tps"].as_f64().unwrap() * 1e3 * 0.99);
        }
    }
}

#[test]
fn bench_table_and_errors() {
    let m = require_model!(SMOLLM2);
    let m = path_str(&m);
    let out = kestrel(&[
        "bench", "-m", &m, "-p", "8", "-n", "2", "-t", "1", "-r", "1",
    ])
    .ok();
    assert!(
        out.stdout.contains("| pp8 |") || out.stdout.contains(" pp8 "),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("tg2 @ d8"), "{}", out.stdout);
    for (args, msg) in [
        (vec!["-r", "0"], "repetitions"),
        (vec!["-p", "0", "-n", "0"], "nothing to measure"),
        (vec!["-p", "100000"], "training context"),
        (vec!["-t", "0"], "--threads"),
    ] {
        let mut a = vec!["bench", "-m", &m];
        a.extend(args);
        let err = kestrel(&a).fails_cleanly();
        assert!(err.contains(msg), "{a:?}: {err}");
    }
    let err = kestrel(&["bench", "-m", "/nonexistent.gguf"]).fails_cleanly();
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn bench_depth_decodes_after_an_untimed_context() {
    let m = require_model!(SMOLLM2);
    let m = path_str(&m);
    let out = kestrel(&[
        "bench", "-m", &m, "-p", "0", "-n", "4", "-d", "24", "-t", "1", "-r", "2", "--json",
    ])
    .ok();
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["depth"], 24);
    assert_eq!(v["n_prompt"], 0);
    assert!(v["decode_tps"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["depth_fill_ms"].as_f64().unwrap() > 0.0, "{v}");
    // The fill is not timed as prefill.
    assert_eq!(v["prefill_tps"].as_f64().unwrap(), 0.0, "{v}");
    // Without -d: depth 0 and no fill.
    let out = kestrel(&[
        "bench", "-m", &m, "-p", "8", "-n", "2", "-t", "1", "-r", "1", "--json",
    ])
    .ok();
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(
        (v["depth"].as_u64(), v["depth_fill_ms"].as_f64()),
        (Some(0), Some(0.0))
    );
    // The table names the depth of each figure: the prompt after D, decode after D + P.
    let out = kestrel(&[
        "bench", "-m", &m, "-p", "8", "-n", "2", "-d", "16", "-t", "1", "-r", "1",
    ])
    .ok();
    assert!(out.stdout.contains("pp8 @ d16"), "{}", out.stdout);
    assert!(out.stdout.contains("tg2 @ d24"), "{}", out.stdout);
    let err = kestrel(&["bench", "-m", &m, "-d", "100000"]).fails_cleanly();
    assert!(err.contains("depth + prompt + generation"), "{err}");
}
