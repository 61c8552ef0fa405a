//! Structured pruning end to end: `kestrel prune --drop-layers` and `--ffn-keep` write smaller
//! models whose shapes and metadata agree, which load, run, and whose KL-divergence from the
//! input is finite. Short calibration chunks keep this under a minute on two cores.

mod common;

use common::{kestrel, path_str, TempDir, GEMMA3, SMOLLM2, THREADS};
use serde_json::Value;
use std::collections::BTreeMap;

fn calib() -> String {
    common::data("calibration.txt")
}

/// name -> (dims, type) of every tensor.
fn tensors(v: &Value) -> BTreeMap<String, (Vec<u64>, String)> {
    v["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let dims = t["dims"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .collect();
            (
                t["name"].as_str().unwrap().to_string(),
                (dims, t["type"].as_str().unwrap().to_string()),
            )
        })
        .collect()
}

/// Runs the model a few tokens and returns the text.
fn runs(model: &str) -> String {
    let out = kestrel(&[
        "run",
        "-m",
        model,
        "-t",
        THREADS,
        "--temp",
        "0",
        "-n",
        "6",
        "-p",
        "The capital of France is",
    ])
    .ok();
    let s = out.stdout.clone();
    assert!(!s.trim().is_empty(), "no text from {model}");
    s
}

/// Mean KLD of `model` from `base` on one short chunk of wiki text, printed.
fn kld(base: &str, model: &str) -> f64 {
    common::kld_one_chunk(base, model)["mean_kld"]
        .as_f64()
        .unwrap()
}

#[test]
fn drop_layers_renumbers_blocks_and_runs() {
    let m = require_model!(SMOLLM2);
    let ms = path_str(&m);
    let dir = TempDir::new("structured-drop");
    let out = path_str(&dir.path().join("drop2.gguf"));
    let v = kestrel(&[
        "prune",
        &ms,
        &out,
        "--drop-layers",
        "2",
        "--calib",
        &calib(),
        "-c",
        "64",
        "--chunks",
        "2",
        "-t",
        THREADS,
        "--json",
    ])
    .ok()
    .json();
    let dropped: Vec<usize> = v["dropped_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(dropped.len(), 2);
    assert_eq!(v["block_similarity"].as_array().unwrap().len(), 30);
    assert_eq!(v["tensors"].as_u64(), Some(272 - 2 * 9));

    let before = kestrel(&["inspect", &ms, "--json"]).ok().json();
    let after = kestrel(&["inspect", &out, "--json"]).ok().json();
    assert_eq!(after["metadata"]["llama.block_count"].as_u64(), Some(28));
    let (tb, ta) = (tensors(&before), tensors(&after));
    assert_eq!(ta.len(), 254);
    // New block j holds exactly old block kept[j]'s tensors.
    let kept: Vec<usize> = (0..30).filter(|i| !dropped.contains(i)).collect();
    for (name, t) in &ta {
        let want = match name.strip_prefix("blk.") {
            Some(rest) => {
                let (j, tail) = rest.split_once('.').unwrap();
                let j: usize = j.parse().unwrap();
                assert!(j < 28, "{name}");
                format!("blk.{}.{tail}", kept[j])
            }
            None => name.clone(),
        };
        assert_eq!(Some(t), tb.get(&want), "{name} should be {want}");
    }
    runs(&out);
    kld(&ms, &out);
}

#[test]
fn ffn_keep_cuts_channels_to_whole_blocks() {
    let m = require_model!(SMOLLM2);
    let dir = TempDir::new("structured-ffn");
    let f32 = path_str(&dir.path().join("f32.gguf"));
    let out = path_str(&dir.path().join("ffn75.gguf"));
    let q = path_str(&dir.path().join("ffn75-q4km.gguf"));
    kestrel(&["convert", &path_str(&m), &f32, "--type", "f32"]).ok();
    let v = kestrel(&[
        "prune",
        &f32,
        &out,
        "--ffn-keep",
        "0.75",
        "--calib",
        &calib(),
        "-c",
        "64",
        "--chunks",
        "2",
        "-t",
        THREADS,
        "--json",
    ])
    .ok()
    .json();
    // 0.75 * 1536 = 1152 = 4.5 blocks of 256: rounded to 5 blocks.
    assert_eq!(v["n_ff_kept"].as_u64(), Some(1280));
    let after = kestrel(&["inspect", &out, "--json"]).ok().json();
    assert_eq!(
        after["metadata"]["llama.feed_forward_length"].as_u64(),
        Some(1280)
    );
    let ta = tensors(&after);
    assert_eq!(ta.len(), 272);
    for il in 0..30 {
        let d = |n: &str| ta[&format!("blk.{il}.{n}.weight")].0.clone();
        assert_eq!(d("ffn_gate"), vec![576, 1280]);
        assert_eq!(d("ffn_up"), vec![576, 1280]);
        assert_eq!(d("ffn_down"), vec![1280, 576]);
    }
    runs(&out);
    kld(&f32, &out);
    // SparseGPT (unstructured pruning with the calibration Hessian) on the same F32 base.
    let sg = path_str(&dir.path().join("sparsegpt50.gguf"));
    let v = kestrel(&[
        "prune",
        &f32,
        &sg,
        "--method",
        "sparsegpt",
        "--sparsity",
        "0.5",
        "--calib",
        &calib(),
        "-c",
        "64",
        "--chunks",
        "2",
        "-t",
        THREADS,
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(v["pruned_tensors"].as_u64(), Some(210));
    let frac = v["sparsity"].as_f64().unwrap();
    assert!((frac - 0.5).abs() < 0.001, "sparsity {frac}");
    runs(&sg);
    kld(&f32, &sg);
    // The kept width is whole k-quant blocks: Q4_K_M quantizes ffn_down with a k-quant.
    let v = kestrel(&["quantize", &out, &q, "--type", "Q4_K_M", "--json"])
        .ok()
        .json();
    let types = &v["tensor_types"];
    assert!(types["Q4_K"].as_u64().unwrap_or(0) + types["Q6_K"].as_u64().unwrap_or(0) >= 30);
    let qa = tensors(&kestrel(&["inspect", &q, "--json"]).ok().json());
    for il in 0..30 {
        let ty = &qa[&format!("blk.{il}.ffn_down.weight")].1;
        assert!(ty.ends_with("_K"), "blk.{il}.ffn_down is {ty}");
    }
    runs(&q);
}

#[test]
fn gemma_drops_keep_the_sliding_window_pattern() {
    let m = require_model!(GEMMA3);
    let ms = path_str(&m);
    let dir = TempDir::new("structured-gemma");
    let out = path_str(&dir.path().join("drop1.gguf"));
    let v = kestrel(&[
        "prune",
        &ms,
        &out,
        "--drop-layers",
        "1",
        "--calib",
        &calib(),
        "-c",
        "64",
        "--chunks",
        "1",
        "-t",
        THREADS,
        "--json",
    ])
    .ok()
    .json();
    // Every 6th block is global and llama.cpp derives that from the index: with one block
    // dropped only the last block can go without changing a kept block's kind.
    assert_eq!(v["dropped_layers"], serde_json::json!([17]));
    let after = kestrel(&["inspect", &out, "--json"]).ok().json();
    assert_eq!(after["metadata"]["gemma3.block_count"].as_u64(), Some(17));
    runs(&out);
    kld(&ms, &out);
}

#[test]
fn structured_pruning_refuses_bad_requests() {
    let m = require_model!(SMOLLM2);
    let ms = path_str(&m);
    let dir = TempDir::new("structured-bad");
    let out = path_str(&dir.path().join("o.gguf"));
    let e = kestrel(&["prune", &ms, &out, "--drop-layers", "2"]).fails_cleanly();
    assert!(e.contains("--calib"), "{e}");
    let e = kestrel(&[
        "prune",
        &ms,
        &out,
        "--drop-layers",
        "30",
        "--calib",
        &calib(),
        "-c",
        "64",
    ])
    .fails_cleanly();
    assert!(e.contains("keep at least one"), "{e}");
    let e = kestrel(&[
        "prune",
        &ms,
        &out,
        "--ffn-keep",
        "0.5",
        "--calib",
        &calib(),
        "-c",
        "64",
    ])
    .fails_cleanly();
    assert!(e.contains("convert --type f32"), "{e}");
    let e =
        kestrel(&["prune", &ms, &out, "--ffn-keep", "1.5", "--calib", &calib()]).fails_cleanly();
    assert!(e.contains("(0, 1]"), "{e}");
    assert!(!std::path::Path::new(&out).exists());
}
