//! Load-time repacking changes no bit: a synthetic Llama-style model in Q4_K and Q6_K, with a
//! tied embedding table large enough to be repacked in several chunks, gives the same logits
//! repacked and in the file's layout, in prompt batches and one token at a time, on one and two
//! threads.

#[path = "common/synth.rs"]
mod synth;

use kestrel_gguf::{GgmlType, GgufFile};
use kestrel_model::{LoadOptions, Model};
use std::sync::Arc;
use synth::*;

fn model(bytes: &[u8], repack: bool) -> Model {
    let g = Arc::new(GgufFile::from_bytes(bytes.to_vec()).expect("valid file"));
    Model::from_gguf_with(g, LoadOptions { repack }).expect("loads")
}

#[test]
fn repacked_model_gives_the_file_layouts_logits() {
    let mut spec = Spec::tiny("llama", 2);
    spec.n_embd = 256;
    spec.n_ff = 512;
    spec.head_dim = 64;
    spec.n_rot = 64;
    // 65536 x 256 Q4_K is 9 MiB: more than one 4 MiB repacking chunk.
    spec.n_vocab = 65536;
    let o = Opts {
        tied: true,
        ty_embd: GgmlType::Q4_K,
        ty_out: GgmlType::Q4_K,
        ty_attn: GgmlType::Q4_K,
        ty_ffn: GgmlType::Q6_K,
        ty_down: GgmlType::Q4_K,
        ..Opts::default()
    };
    let w = gen_weights(&spec, &o, 5);
    let bytes = Synth::new(&spec, &w, Qkv::Split).bytes();
    let (packed, plain) = (model(&bytes, true), model(&bytes, false));
    // Every layer matrix and the tied table (the output head shares it).
    assert_eq!(packed.repack.matrices, 2 * 7 + 1, "{:?}", packed.repack);
    assert!(packed.repack.bytes > 9 << 20);
    assert_eq!(plain.repack.matrices, 0);
    let tokens: Vec<u32> = (0..13).map(|i| (i * 5003 + 17) % 65536).collect();
    for threads in [1, 2] {
        for (what, a, b) in [
            (
                "prompt batches",
                engine_logits(&packed, &tokens, 8, threads),
                engine_logits(&plain, &tokens, 8, threads),
            ),
            (
                "one token at a time",
                engine_logits_one_by_one(&packed, &tokens, threads),
                engine_logits_one_by_one(&plain, &tokens, threads),
            ),
        ] {
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                let same = x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits());
                assert!(same, "{what}, {threads} threads: position {i} differs");
            }
        }
    }
}

/// Repacked Q4_0 takes the scalar dot's float order instead of the row-major AVX2 dot's, so
/// its logits are not the file layout's bit for bit on SIMD tables; they must stay as close as
/// two summation orders can be, with the same top token everywhere, and a prompt batch must
/// give what one token at a time gives.
#[test]
fn repacked_q4_0_model_stays_within_rounding_of_the_file_layout() {
    let mut spec = Spec::tiny("llama", 2);
    spec.n_embd = 256;
    spec.n_ff = 512;
    spec.head_dim = 64;
    spec.n_rot = 64;
    spec.n_vocab = 4096;
    let o = Opts {
        tied: false,
        ty_embd: GgmlType::Q4_0,
        ty_out: GgmlType::Q4_0,
        ty_attn: GgmlType::Q4_0,
        ty_ffn: GgmlType::Q4_0,
        ty_down: GgmlType::Q4_0,
        ..Opts::default()
    };
    let w = gen_weights(&spec, &o, 9);
    let bytes = Synth::new(&spec, &w, Qkv::Split).bytes();
    let (packed, plain) = (model(&bytes, true), model(&bytes, false));
    // Every layer matrix, the embedding table and the separate output head.
    assert_eq!(packed.repack.matrices, 2 * 7 + 2, "{:?}", packed.repack);
    let tokens: Vec<u32> = (0..11).map(|i| (i * 397 + 5) % 4096).collect();
    for threads in [1, 2] {
        let a = engine_logits(&packed, &tokens, 8, threads);
        let one = engine_logits_one_by_one(&packed, &tokens, threads);
        let b = engine_logits(&plain, &tokens, 8, threads);
        for (i, ((x, y), z)) in a.iter().zip(&b).zip(&one).enumerate() {
            let argmax = |v: &[f32]| (0..v.len()).max_by(|&p, &q| v[p].total_cmp(&v[q])).unwrap();
            let scale = y.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
            assert!(diff <= 1e-3 * scale, "position {i}: {diff} of {scale}");
            assert_eq!(argmax(x), argmax(y), "position {i}: top token");
            let close = x.iter().zip(z).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
            assert!(
                close <= 1e-4 * scale,
                "position {i}: batch vs one by one {close}"
            );
        }
    }
}
