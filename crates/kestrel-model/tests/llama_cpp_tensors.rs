//! Quantized matmuls against llama.cpp's own intermediate tensors (tests/fixtures/llama_cpp):
//! given llama.cpp's input, kestrel's output must be bit-identical to llama.cpp's. Bit
//! identity here is what keeps whole-model logits on llama.cpp's (see docs/correctness.md).

use kestrel_gguf::GgufFile;
use kestrel_kernels::{kernels, matmul, Arith, QMatrix, ThreadPool};
use std::path::PathBuf;

fn fixture(name: &str) -> Vec<f32> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/llama_cpp")
        .join(name);
    std::fs::read(&p)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn gemma() -> Option<GgufFile> {
    let dir = match std::env::var_os("KESTREL_MODELS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/kestrel/models"),
    };
    let p = dir.join("gemma-3-270m-q4_k_m.gguf");
    if !p.exists() {
        if std::env::var("KESTREL_SKIP_MODEL_TESTS").as_deref() == Ok("1") {
            eprintln!("skipping: {} absent", p.display());
            return None;
        }
        panic!("{} is missing: run scripts/fetch-models.sh", p.display());
    }
    Some(GgufFile::open(&p).unwrap())
}

/// Kestrel's matmul of `input` with `tensor` against llama.cpp's `output`: bit for bit with
/// `exact`, else within `1e-5` of each token's largest output (the same sums, rounded in
/// another order). The k-quant kernels give the same bits on every instruction set.
fn check_matmul(tensor: &str, input: &str, output: &str, exact: bool) {
    let Some(g) = gemma() else { return };
    let t = g.tensor(tensor).unwrap();
    let w = QMatrix {
        ty: t.ty,
        rows: t.dims[1] as usize,
        cols: t.dims[0] as usize,
        data: g.tensor_data(t),
        layout: kestrel_kernels::Layout::RowMajor,
    };
    let x = fixture(input);
    let want = fixture(output);
    let n = x.len() / w.cols;
    let mut y = vec![0.0f32; n * w.rows];
    matmul(
        &ThreadPool::new(2),
        kernels(),
        Arith::Prompt,
        &w,
        &x,
        n,
        &mut y,
        &mut Vec::new(),
    );
    for r in 0..n {
        let row = r * w.rows..(r + 1) * w.rows;
        if !exact {
            let peak = want[row.clone()].iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = y[row.clone()]
                .iter()
                .zip(&want[row])
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                worst <= 1e-5 * peak,
                "{tensor}: token {r}: differs from llama.cpp by {worst} (largest output {peak})"
            );
            continue;
        }
        let same = y[row.clone()]
            .iter()
            .zip(&want[row])
            .filter(|(a, b)| a.to_bits() == b.to_bits())
            .count();
        assert_eq!(
            same, w.rows,
            "{tensor}: token {r}: {same}/{} outputs bit-identical to llama.cpp",
            w.rows
        );
    }
}

/// Q4_K (gemma's attention output projection): llama.cpp repacks Q4_K into 8-row blocks and
/// computes tokens 0..4 with its GEMM (per 64-element slice) and tokens 4..6 with its GEMV
/// (per super-block); both rounding patterns must come out the same.
#[test]
fn q4_k_matmul_is_bit_identical_to_llama_cpp() {
    check_matmul(
        "blk.0.attn_output.weight",
        "gemma3_blk0_kqv_out.f32",
        "gemma3_blk0_attn_out.f32",
        true,
    );
}

/// Q6_K (gemma's FFN down projection): for these 6 tokens llama.cpp sums each super-block in 8
/// float lanes; kestrel takes its exact integer sum first (the order of llama.cpp's tiled
/// batches), so the two agree to rounding, not bit for bit.
#[test]
fn q6_k_matmul_matches_llama_cpp() {
    check_matmul(
        "blk.0.ffn_down.weight",
        "gemma3_blk0_ffn_geglu.f32",
        "gemma3_blk0_ffn_out.f32",
        false,
    );
}
