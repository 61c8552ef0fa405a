//! Mixed precision under a budget: `kestrel quantize --target-size / --target-bpw` on
//! SmolLM2's F32 dequantization meets the budget, keeps the metadata, loads and runs; an
//! unreachable budget and a quantized input are refused before any work. Tiny calibration
//! chunks keep this to about a minute on two cores.

mod common;

use common::{kestrel, path_str, TempDir, SMOLLM2, THREADS};

#[test]
fn target_size_meets_the_budget_and_runs() {
    let m = require_model!(SMOLLM2);
    let dir = TempDir::new("mixed");
    let f32 = path_str(&dir.path().join("f32.gguf"));
    let q4km = path_str(&dir.path().join("q4km.gguf"));
    let mix = path_str(&dir.path().join("mix.gguf"));
    let calib = common::data("calibration.txt");
    let wiki = common::data("wiki.test.raw");
    kestrel(&["convert", &path_str(&m), &f32, "--type", "f32"]).ok();
    let f32_before = std::fs::metadata(&f32).unwrap().modified().unwrap();

    // Unreachable budgets name the minimum; a quantized input is refused.
    let e = kestrel(&[
        "quantize",
        &f32,
        &mix,
        "--target-bpw",
        "2",
        "--calib",
        &calib,
    ])
    .fails_cleanly();
    assert!(
        e.contains("below the smallest mix") && e.contains("bits per weight"),
        "{e}"
    );
    let e = kestrel(&[
        "quantize",
        &f32,
        &mix,
        "--target-size",
        "10MiB",
        "--calib",
        &calib,
    ])
    .fails_cleanly();
    assert!(e.contains("below the smallest mix"), "{e}");
    let e = kestrel(&[
        "quantize",
        &path_str(&m),
        &mix,
        "--target-bpw",
        "6",
        "--calib",
        &calib,
    ])
    .fails_cleanly();
    assert!(e.contains("float model"), "{e}");
    let e = kestrel(&["quantize", &f32, &mix, "--target-bpw", "6"]).fails_cleanly();
    assert!(e.contains("--calib"), "{e}");
    assert!(!std::path::Path::new(&mix).exists());

    // At Q4_K_M's size.
    kestrel(&["quantize", &f32, &q4km, "--type", "Q4_K_M"]).ok();
    let size = std::fs::metadata(&q4km).unwrap().len();
    let v = kestrel(&[
        "quantize",
        &f32,
        &mix,
        "--target-size",
        &size.to_string(),
        "--calib",
        &calib,
        "--sens-ctx",
        "32",
        "--sens-chunks",
        "1",
        "-t",
        THREADS,
        "--json",
    ])
    .ok()
    .json();
    let out_size = std::fs::metadata(&mix).unwrap().len();
    assert!(out_size <= size, "{out_size} > budget {size}");
    assert!(
        out_size as f64 > 0.9 * size as f64,
        "budget left unused: {out_size} of {size}"
    );
    let types = v["tensor_types"].as_object().unwrap();
    assert!(types.len() >= 3, "a mix of types: {types:?}");
    let (a, b) = (
        kestrel(&["inspect", &f32, "--json"]).ok().json(),
        kestrel(&["inspect", &mix, "--json"]).ok().json(),
    );
    for k in [
        "tokenizer.chat_template",
        "tokenizer.ggml.tokens",
        "llama.block_count",
    ] {
        assert_eq!(a["metadata"][k], b["metadata"][k], "{k}");
    }
    let out = kestrel(&[
        "run",
        "-m",
        &mix,
        "-t",
        THREADS,
        "--temp",
        "0",
        "-n",
        "4",
        "-p",
        "The capital of France is",
    ])
    .ok();
    assert!(out.stdout.contains("Paris"), "{}", out.stdout);
    let r: Vec<serde_json::Value> = kestrel(&[
        "kld", "--base", &f32, "-m", &q4km, "-m", &mix, "-f", &wiki, "-c", "128", "--chunks", "1",
        "-t", THREADS, "--json",
    ])
    .ok()
    .stdout
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    for x in &r {
        let k = x["mean_kld"].as_f64().unwrap();
        eprintln!("{}: KLD {k:.4}", x["model"]);
        assert!(k.is_finite() && k < 0.5);
    }
    assert_eq!(
        std::fs::metadata(&f32).unwrap().modified().unwrap(),
        f32_before
    );
}
