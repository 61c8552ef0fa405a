//! `--check-tensors` (as llama.cpp's): a copy of SmolLM2 with a NaN block scale planted in a
//! Q4_1 matrix, an infinity in an f32 norm and a NaN in the Q8_0 embedding is refused by
//! `run`, `perplexity` and `inspect`, naming exactly those three tensors; the intact file
//! passes, and without the flag the damaged file still loads (the check costs a read of every
//! tensor, so it is asked for).

mod common;

use common::{kestrel, path_str, TempDir, SMOLLM2, THREADS};

#[test]
fn check_tensors_names_every_tensor_with_a_non_finite_value() {
    let m = require_model!(SMOLLM2);
    let g = kestrel_gguf::GgufFile::open(&m).unwrap();
    let mut bytes = std::fs::read(&m).unwrap();
    // (tensor, byte offset in its data, bytes): the f16 scale of a Q4_1 block (its second
    // block), an f32 +inf, the f16 scale of a Q8_0 block.
    let plant: [(&str, usize, &[u8]); 3] = [
        ("blk.3.ffn_down.weight", 20, &[0x00, 0x7e]),
        ("blk.3.attn_norm.weight", 4 * 17, &[0x00, 0x00, 0x80, 0x7f]),
        ("token_embd.weight", 34 * 1000, &[0x01, 0x7c]),
    ];
    for (name, at, v) in plant {
        let t = g.tensor(name).unwrap();
        let o = t.offset as usize + at;
        bytes[o..o + v.len()].copy_from_slice(v);
    }
    let dir = TempDir::new("check-tensors");
    let bad = dir.path().join("damaged.gguf");
    std::fs::write(&bad, &bytes).unwrap();
    let bad = path_str(&bad);
    let good = path_str(&m);
    let text = dir.path().join("text.txt");
    std::fs::write(
        &text,
        "The quick brown fox jumps over the lazy dog. ".repeat(40),
    )
    .unwrap();
    let text = path_str(&text);
    let run = |model: &str, check: bool| {
        let mut a = vec!["run", "-m", model, "-t", THREADS, "-p", "Hello", "-n", "2"];
        if check {
            a.push("--check-tensors");
        }
        kestrel(&a)
    };
    for args in [
        vec!["inspect", bad.as_str(), "--check-tensors"],
        vec![
            "perplexity",
            "-m",
            &bad,
            "-f",
            &text,
            "-c",
            "128",
            "--check-tensors",
        ],
    ] {
        let e = kestrel(&args).fails_cleanly();
        assert!(e.contains("3 of 272 tensors"), "{args:?}: {e}");
    }
    let e = run(&bad, true).fails_cleanly();
    for (name, _, _) in plant {
        assert!(
            e.contains(&format!("tensor {name} (")),
            "{name} not named: {e}"
        );
    }
    assert_eq!(e.matches("tensor ").count(), 3, "{e}");
    // Where llama.cpp's check (`llama-server --check-tensors`) finds them: block 1, element
    // 17, block 1000.
    for want in [
        "blk.3.ffn_down.weight (Q4_1): 1 of 55296 block scales are NaN or infinite (the first in block 1)",
        "blk.3.attn_norm.weight (F32): 1 of 576 values are NaN or infinite (the first at element 17)",
        "token_embd.weight (Q8_0): 1 of 884736 block scales are NaN or infinite (the first in block 1000)",
    ] {
        assert!(e.contains(want), "{want}: {e}");
    }
    // Intact: passes; damaged without the flag: loads as before.
    let ok = run(&good, true).ok();
    assert!(
        ok.stderr.contains("check-tensors: 272 tensors"),
        "{}",
        ok.stderr
    );
    run(&bad, false).ok();
}
