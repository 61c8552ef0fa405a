//! Real GGUF files, checked against facts read with the independent Python `gguf` package.
//! Skipped (with a note) when the models are not present.

use std::path::PathBuf;

use kestrel_gguf::{GgmlType, GgufFile};

fn model(name: &str) -> Option<GgufFile> {
    let dir = std::env::var_os("KESTREL_MODELS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/kestrel/models"))
        })?;
    let path = dir.join(name);
    if !path.exists() {
        eprintln!("note: skipping, {} not found", path.display());
        return None;
    }
    Some(GgufFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// Invariants every valid file must satisfy.
fn check_directory(f: &GgufFile) {
    assert_eq!(f.data_offset() % f.alignment(), 0);
    for t in f.tensors() {
        assert_eq!(t.offset as usize % f.alignment(), 0, "{}", t.name);
        assert!(t.offset as usize >= f.data_offset());
        assert_eq!(f.tensor_data(t).len(), t.size);
        assert_eq!(t.ty.row_bytes(t.row_len()).unwrap() * t.n_rows(), t.size);
        assert_eq!(f.tensor(&t.name), Some(t));
    }
    for (k, v) in f.metadata() {
        assert_eq!(f.get(k), Some(v));
        let _ = format!("{k} = {v}");
    }
}

#[test]
fn smollm2_135m_q4_1() {
    let Some(f) = model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    check_directory(&f);
    assert_eq!(f.version(), 3);
    assert_eq!(f.tensors().len(), 272);
    assert_eq!(f.metadata().len(), 33);
    assert_eq!(f.architecture().unwrap(), "llama");
    assert_eq!(f.get_u32("llama.block_count").unwrap(), 30);
    assert_eq!(f.data_offset(), 1_785_664);
    let t = f.tensor("token_embd.weight").unwrap();
    assert_eq!(
        (t.ty, t.dims.as_slice()),
        (GgmlType::Q8_0, &[576u64, 49152][..])
    );
    assert_eq!((t.offset, t.size), (1_785_664, 30_081_024));
    let n = f.tensor("blk.0.attn_norm.weight").unwrap();
    assert_eq!((n.ty, n.offset, n.size), (GgmlType::F32, 31_866_688, 2304));
    assert_eq!(
        f.get_str_array("tokenizer.ggml.tokens").unwrap().len(),
        49152
    );
    assert!(f.get_str_opt("tokenizer.chat_template").unwrap().is_some());
    assert!(f.get_f32("llama.attention.layer_norm_rms_epsilon").unwrap() > 0.0);
}

#[test]
fn gemma3_270m_q4_k_m() {
    let Some(f) = model("gemma-3-270m-q4_k_m.gguf") else {
        return;
    };
    check_directory(&f);
    assert_eq!(f.tensors().len(), 236);
    assert_eq!(f.metadata().len(), 33);
    assert_eq!(f.architecture().unwrap(), "gemma3");
    assert_eq!(f.data_offset(), 6_525_120);
    let tokens = f.get_str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 262_144);
    assert_eq!(
        f.get_f32_array("tokenizer.ggml.scores").unwrap().len(),
        262_144
    );
    assert_eq!(
        f.get_i32_array("tokenizer.ggml.token_type").unwrap().len(),
        262_144
    );
    let t = f.tensor("blk.0.attn_output.weight").unwrap();
    assert_eq!(
        (t.ty, t.dims.as_slice()),
        (GgmlType::Q4_K, &[1024u64, 640][..])
    );
    let e = f.tensor("token_embd.weight").unwrap();
    assert_eq!(
        (e.ty, e.offset, e.size),
        (GgmlType::Q8_0, 6_527_680, 178_257_920)
    );
}

/// Rewriting a real file with `GgufWriter` reproduces its header byte for byte, so the
/// writer's layout (key order, tensor offsets, padding) matches llama.cpp's converters.
#[test]
fn rewrite_smollm2_reproduces_the_header() {
    let Some(f) = model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let mut w = kestrel_gguf::GgufWriter::new();
    for (k, v) in f.metadata() {
        w.set(k.clone(), v.clone());
    }
    for t in f.tensors() {
        w.add_tensor(
            t.name.clone(),
            t.dims.clone(),
            t.ty,
            f.tensor_data(t).to_vec(),
        )
        .unwrap();
    }
    let mut out = Vec::with_capacity(f.bytes().len());
    w.write_to(&mut out).unwrap();
    assert_eq!(&out[..f.data_offset()], &f.bytes()[..f.data_offset()]);
    let g = GgufFile::from_bytes(out).unwrap();
    for (a, b) in f.tensors().iter().zip(g.tensors()) {
        assert_eq!(a, b);
        assert_eq!(f.tensor_data(a), g.tensor_data(b));
    }
}
