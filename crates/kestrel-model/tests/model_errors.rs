//! Loading and running broken models (tiny synthetic GGUFs of the five architectures, see
//! tests/common/): no panic, the right error variant, the offending name in the message, and
//! a session that stays usable after a failed forward pass.

#[path = "common/arch_models.rs"]
mod arch_models;
#[path = "common/synth.rs"]
mod synth;

use arch_models::*;
use kestrel_gguf::{Array, GgmlType, GgufError, Value};
use kestrel_model::{ModelError, ThreadPool};
use synth::*;

fn llama_synth() -> Synth {
    let (spec, w, _) = llama();
    Synth::new(&spec, &w, Qkv::Split)
}

fn load_err(s: &Synth) -> ModelError {
    match s.load() {
        Ok(_) => panic!("the model loaded but should not have"),
        Err(e) => e,
    }
}

fn assert_names(e: &ModelError, what: &str) {
    let msg = e.to_string();
    assert!(
        msg.contains(what),
        "error message {msg:?} does not name {what:?}"
    );
}

#[test]
fn unsupported_architecture_is_named() {
    // Complete llama-style metadata under the unknown prefix: the registry rejects it.
    let mut spec = Spec::tiny("mamba9", 2);
    spec.rope_base = 10000.0;
    let w = gen_weights(&spec, &Opts::default(), 1);
    let e = load_err(&Synth::new(&spec, &w, Qkv::Split));
    match &e {
        ModelError::UnsupportedArch(a, supported) => {
            assert_eq!(a, "mamba9");
            for s in ["llama", "gemma3", "qwen2", "qwen3", "phi3"] {
                assert!(
                    supported.contains(s),
                    "supported list {supported:?} lacks {s}"
                );
            }
        }
        other => panic!("expected UnsupportedArch, got {other:?}"),
    }
    assert_names(&e, "mamba9");
}

/// An unsupported architecture should be reported as such whatever its hyperparameters look
/// like. Real Mamba GGUFs (llama.cpp's converter) write `mamba.attention.head_count = 0` and
/// `mamba.feed_forward_length = 0`; a file of another family may lack the keys altogether.
/// (`Model::from_gguf` looks the architecture up before it reads hyperparameters.)
#[test]
fn unsupported_architecture_is_reported_before_its_hyperparameters() {
    // Like a real Mamba file.
    let mut s = llama_synth();
    s.meta.retain(|(k, _)| !k.starts_with("llama."));
    s.set("general.architecture", Value::String("mamba".into()));
    for (k, v) in [
        ("mamba.context_length", 1u32 << 20),
        ("mamba.embedding_length", 64),
        ("mamba.block_count", 3),
        ("mamba.feed_forward_length", 0),
        ("mamba.attention.head_count", 0),
        ("mamba.ssm.conv_kernel", 4),
        ("mamba.ssm.inner_size", 128),
        ("mamba.ssm.state_size", 16),
        ("mamba.ssm.time_step_rank", 4),
    ] {
        s.set(k, Value::U32(v));
    }
    let e = load_err(&s);
    assert!(
        matches!(&e, ModelError::UnsupportedArch(a, _) if a == "mamba"),
        "got {e:?} ({e})"
    );

    // Only general.architecture.
    let mut s = llama_synth();
    s.meta.retain(|(k, _)| !k.starts_with("llama."));
    s.set("general.architecture", Value::String("mamba9".into()));
    let e = load_err(&s);
    assert!(
        matches!(&e, ModelError::UnsupportedArch(a, _) if a == "mamba9"),
        "got {e:?} ({e})"
    );
}

#[test]
fn missing_tensors_are_named() {
    let cases: Vec<(Synth, &str)> = vec![
        (llama_synth(), "blk.1.ffn_down.weight"),
        (llama_synth(), "blk.2.attn_v.weight"),
        (llama_synth(), "output_norm.weight"),
        (llama_synth(), "token_embd.weight"),
        (llama_synth(), "blk.0.ffn_norm.weight"),
        {
            let (s, w, _) = qwen3();
            (Synth::new(&s, &w, Qkv::Split), "blk.1.attn_k_norm.weight")
        },
        {
            let (s, w, _) = gemma3();
            (Synth::new(&s, &w, Qkv::Split), "blk.2.post_ffw_norm.weight")
        },
        {
            let (s, w, _) = gemma3();
            (Synth::new(&s, &w, Qkv::Split), "blk.0.attn_q_norm.weight")
        },
        {
            let (s, w, _) = phi3(false);
            (Synth::new(&s, &w, Qkv::Fused), "blk.1.ffn_up.weight")
        },
    ];
    for (mut s, name) in cases {
        s.remove_tensor(name);
        let e = load_err(&s);
        assert!(
            matches!(&e, ModelError::MissingTensor(n) if n == name),
            "removing {name}: got {e:?}"
        );
        assert_names(&e, name);
    }
    // phi3 without attn_qkv falls back to separate tensors and names the first one missing.
    let (spec, w, _) = phi3(false);
    let mut s = Synth::new(&spec, &w, Qkv::Fused);
    s.remove_tensor("blk.1.attn_qkv.weight");
    let e = load_err(&s);
    assert!(
        matches!(&e, ModelError::MissingTensor(n) if n == "blk.1.attn_q.weight"),
        "got {e:?}"
    );
}

fn f32_data(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| (0.01 * i as f32).to_le_bytes())
        .collect()
}

#[test]
fn wrong_tensor_shapes_are_named() {
    // (model, tensor, replacement dims, expected dims)
    let phi = || {
        let (s, w, _) = phi3(false);
        Synth::new(&s, &w, Qkv::Fused)
    };
    let qwen2s = || {
        let (s, w, _) = qwen2();
        Synth::new(&s, &w, Qkv::Split)
    };
    let cases: Vec<(Synth, &str, Vec<u64>, Vec<u64>)> = vec![
        (
            llama_synth(),
            "blk.1.attn_k.weight",
            vec![64, 48],
            vec![64, 32],
        ),
        (
            llama_synth(),
            "blk.0.attn_q.weight",
            vec![64, 32],
            vec![64, 64],
        ),
        // Transposed.
        (
            llama_synth(),
            "blk.2.ffn_down.weight",
            vec![64, 96],
            vec![96, 64],
        ),
        (llama_synth(), "output.weight", vec![64, 49], vec![64, 50]),
        (llama_synth(), "blk.0.ffn_norm.weight", vec![63], vec![64]),
        (llama_synth(), "output_norm.weight", vec![64, 1], vec![64]),
        (llama_synth(), "rope_freqs.weight", vec![16], vec![8]),
        (qwen2s(), "blk.1.attn_q.bias", vec![32], vec![64]),
        // phi3 ffn_up must hold gate and up: 2 * n_ff rows.
        (phi(), "blk.0.ffn_up.weight", vec![64, 96], vec![64, 192]),
        (phi(), "blk.2.attn_qkv.weight", vec![64, 64], vec![64, 128]),
    ];
    for (mut s, name, dims, want) in cases {
        let n: u64 = dims.iter().product();
        s.replace_tensor(name, dims.clone(), GgmlType::F32, f32_data(n as usize));
        let e = load_err(&s);
        match &e {
            ModelError::TensorShape {
                name: n,
                got,
                want: w,
            } => {
                assert_eq!(n, name);
                assert_eq!(got, &dims, "{name}");
                assert_eq!(w, &want, "{name}");
            }
            other => panic!("{name} with dims {dims:?}: expected TensorShape, got {other:?}"),
        }
        assert_names(&e, name);
    }

    // The vocabulary size comes from the tokenizer when there is one; the embedding must match.
    let mut s = llama_synth();
    let tokens: Vec<String> = (0..49).map(|i| format!("t{i}")).collect();
    s.set("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)));
    let e = load_err(&s);
    assert!(
        matches!(&e, ModelError::TensorShape { name, .. } if name == "token_embd.weight"),
        "got {e:?}"
    );
}

#[test]
fn wrong_tensor_types_are_named() {
    // A norm vector stored quantized.
    let mut s = llama_synth();
    let mut q = vec![0u8; GgmlType::Q8_0.row_bytes(64).unwrap()];
    kestrel_compress::rtn::quantize_row(GgmlType::Q8_0, &vec![1.0; 64], &mut q);
    s.replace_tensor("blk.1.attn_norm.weight", vec![64], GgmlType::Q8_0, q);
    let e = load_err(&s);
    assert!(
        matches!(&e, ModelError::TensorType { name, .. } if name == "blk.1.attn_norm.weight"),
        "got {e:?}"
    );
    assert_names(&e, "blk.1.attn_norm.weight");

    // A matrix in an activation-only format.
    let mut s = llama_synth();
    let mut q = vec![0u8; GgmlType::Q8_1.row_bytes(64).unwrap() * 64];
    for r in 0..64 {
        let rb = GgmlType::Q8_1.row_bytes(64).unwrap();
        kestrel_compress::rtn::quantize_row(
            GgmlType::Q8_1,
            &vec![0.5; 64],
            &mut q[r * rb..(r + 1) * rb],
        );
    }
    s.replace_tensor("blk.0.attn_output.weight", vec![64, 64], GgmlType::Q8_1, q);
    let e = load_err(&s);
    assert!(
        matches!(&e, ModelError::TensorType { name, .. } if name == "blk.0.attn_output.weight"),
        "got {e:?}"
    );
}

#[test]
fn missing_or_bad_hyperparameters() {
    let mut s = llama_synth();
    s.remove_key("llama.block_count");
    let e = load_err(&s);
    assert!(
        matches!(&e, ModelError::Gguf(GgufError::MissingKey(k)) if k == "llama.block_count"),
        "got {e:?}"
    );
    assert_names(&e, "llama.block_count");

    let mut s = llama_synth();
    s.remove_key("llama.embedding_length");
    assert!(
        matches!(load_err(&s), ModelError::Gguf(GgufError::MissingKey(k)) if k == "llama.embedding_length")
    );

    let mut s = llama_synth();
    s.set("llama.block_count", Value::String("three".into()));
    assert!(
        matches!(load_err(&s), ModelError::Gguf(GgufError::KeyType { key, .. }) if key == "llama.block_count")
    );

    // head_count_kv must divide head_count (4), be >= 1 and <= head_count.
    for kv in [3u32, 0, 8] {
        let mut s = llama_synth();
        s.set("llama.attention.head_count_kv", Value::U32(kv));
        let e = load_err(&s);
        assert!(
            matches!(&e, ModelError::BadHparam { key, .. } if key == "llama.attention.head_count_kv"),
            "head_count_kv {kv}: got {e:?}"
        );
        assert_names(&e, "llama.attention.head_count_kv");
    }

    for (key, v) in [
        ("llama.block_count", 0u32),
        ("llama.attention.head_count", 0),
        ("llama.feed_forward_length", 0),
    ] {
        let mut s = llama_synth();
        s.set(key, Value::U32(v));
        let e = load_err(&s);
        assert!(
            matches!(&e, ModelError::BadHparam { key: k, .. } if k == key),
            "{key} = {v}: got {e:?}"
        );
    }

    // Rotary dims: odd, or more than the head.
    for n_rot in [7u32, 18] {
        let mut s = llama_synth();
        s.set("llama.rope.dimension_count", Value::U32(n_rot));
        let e = load_err(&s);
        assert!(
            matches!(&e, ModelError::BadHparam { key, .. } if key == "llama.rope.dimension_count"),
            "n_rot {n_rot}: got {e:?}"
        );
    }

    // Linear rope scaling by a non-positive factor.
    let mut s = llama_synth();
    s.set("llama.rope.scaling.factor", Value::F32(0.0));
    assert!(
        matches!(load_err(&s), ModelError::BadHparam { key, .. } if key == "llama.rope.scaling.factor")
    );
}

#[test]
fn forward_errors_leave_the_session_usable() {
    let (spec, w, _) = qwen2();
    let m = load(&Synth::new(&spec, &w, Qkv::Split));
    let pool = ThreadPool::new(1);
    let full = engine_logits(&m, &TOKENS[..8], 32, 8);

    let mut s = m.new_session(8, 4);
    // Token id == vocabulary size.
    let e = m.forward(&mut s, &pool, &[1, 50, 2], 0).unwrap_err();
    assert!(matches!(e, ModelError::BadToken(50, 50)), "got {e:?}");
    assert_names(&e, "50");
    let e = m.forward(&mut s, &pool, &[u32::MAX], 0).unwrap_err();
    assert!(matches!(e, ModelError::BadToken(u32::MAX, 50)), "got {e:?}");
    assert_eq!(
        s.n_past(),
        0,
        "a rejected batch must not advance the session"
    );

    // Empty slice; logits_from past the end.
    let e = m.forward(&mut s, &pool, &[], 0).unwrap_err();
    assert!(matches!(e, ModelError::Invalid(_)), "got {e:?}");
    let e = m.forward(&mut s, &pool, &[1, 2], 3).unwrap_err();
    assert!(matches!(e, ModelError::Invalid(_)), "got {e:?}");
    assert_eq!(s.n_past(), 0);

    // Past the context (8): 6 fit, 3 more do not, 2 more do.
    m.forward(&mut s, &pool, &TOKENS[..6], 0).unwrap();
    let e = m.forward(&mut s, &pool, &TOKENS[6..9], 0).unwrap_err();
    match e {
        ModelError::ContextFull { needed, n_ctx } => assert_eq!((needed, n_ctx), (9, 8)),
        ref other => panic!("expected ContextFull, got {other:?}"),
    }
    assert_names(&e, "9");
    assert_eq!(s.n_past(), 6);
    m.forward(&mut s, &pool, &TOKENS[6..8], 0).unwrap();
    assert_eq!(s.n_past(), 8);
    let rows: Vec<Vec<f32>> = (0..2).map(|i| s.logits(i).to_vec()).collect();
    assert_same("qwen2", "after rejected calls", &full[6..8], &rows);
    let e = m.forward(&mut s, &pool, &[1], 0).unwrap_err();
    assert!(
        matches!(
            e,
            ModelError::ContextFull {
                needed: 9,
                n_ctx: 8
            }
        ),
        "got {e:?}"
    );
}
