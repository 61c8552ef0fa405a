//! Against files llama.cpp wrote: the shipped gemma-3-270m Q4_K_M was made by llama-quantize
//! (without an importance matrix). Our type policy must pick the same type for every tensor,
//! and re-quantizing its dequantized Q8_0 and Q5_0 tensors must give back the same bytes
//! (round-to-nearest is a fixed point there), which pins our quantizers to ggml's.
//!
//! Models: `$KESTREL_MODELS`, else `~/.cache/kestrel/models`; a missing model fails with a
//! hint unless `KESTREL_SKIP_MODEL_TESTS=1`.

use kestrel_compress::io::tensor_f32;
use kestrel_compress::policy::{should_quantize, PolicyContext, TypeChooser};
use kestrel_compress::quantize::quantize_rows;
use kestrel_compress::Ftype;
use kestrel_gguf::{GgmlType, GgufFile};
use std::path::PathBuf;

fn model(file: &str) -> Option<GgufFile> {
    let dir = std::env::var_os("KESTREL_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/kestrel/models")
        });
    let p = dir.join(file);
    if !p.is_file() {
        if std::env::var("KESTREL_SKIP_MODEL_TESTS").is_ok_and(|v| v == "1") {
            eprintln!("note: skipping: {} is missing", p.display());
            return None;
        }
        panic!("{} is missing: run scripts/fetch-models.sh", p.display());
    }
    Some(GgufFile::open(&p).expect("open model"))
}

#[test]
fn q4_k_m_policy_matches_llama_quantize() {
    let Some(g) = model("gemma-3-270m-q4_k_m.gguf") else {
        return;
    };
    assert_eq!(g.get_u32("general.file_type").unwrap(), Ftype::Q4_K_M.id());
    let mut c = TypeChooser::new(PolicyContext::from_gguf(&g, false), Ftype::Q4_K_M, false);
    let mut mismatches = Vec::new();
    for t in g.tensors() {
        let ours = if should_quantize(t) {
            c.choose(t)
        } else {
            GgmlType::F32
        };
        if ours != t.ty {
            mismatches.push(format!("{}: llama.cpp {}, ours {ours}", t.name, t.ty));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn requantizing_llama_cpp_blocks_is_exact() {
    let Some(g) = model("gemma-3-270m-q4_k_m.gguf") else {
        return;
    };
    let mut checked = 0;
    for t in g.tensors() {
        if !matches!(t.ty, GgmlType::Q8_0 | GgmlType::Q5_0) {
            continue;
        }
        let x = tensor_f32(&g, t).unwrap();
        let q = quantize_rows(t.ty, &x, t.row_len(), None, 0).unwrap();
        assert!(q == g.tensor_data(t), "{} ({}): bytes differ", t.name, t.ty);
        checked += 1;
    }
    assert_eq!(checked, 91, "10 Q8_0 and 81 Q5_0 tensors");
}
