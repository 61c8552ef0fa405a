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
