//! Our quantizers / dequantizers vs gguf-py's (fixtures from tests/fixtures/gen_legacy.py).

use kestrel_compress::rtn::quantize_row;
use kestrel_kernels::{dequantize_row, GgmlType};

fn load(name: &str) -> (Vec<f32>, Vec<u8>, Vec<f32>) {
    let path = format!(
        "{}/tests/fixtures/legacy_{name}.bin",
        env!("CARGO_MANIFEST_DIR")
    );
    let b = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let n = u32::from_le_bytes(b[..4].try_into().unwrap()) as usize;
    let ty = GgmlType::from_name(name).unwrap();
    let qb = ty.row_bytes(n).unwrap();
    let f = |s: &[u8]| {
        s.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect::<Vec<_>>()
    };
    let x = f(&b[4..4 + 4 * n]);
    let q = b[4 + 4 * n..4 + 4 * n + qb].to_vec();
    let y = f(&b[4 + 4 * n + qb..]);
    assert_eq!(y.len(), n);
    (x, q, y)
}

fn check(name: &str) {
    let ty = GgmlType::from_name(name).unwrap();
    let (x, q, y) = load(name);
    let mut ours = vec![0u8; q.len()];
    quantize_row(ty, &x, &mut ours);
    let bs = ty.type_size();
    for (i, (a, b)) in ours.chunks(bs).zip(q.chunks(bs)).enumerate() {
        assert_eq!(a, b, "{name}: block {i} quantizes differently");
    }
    let mut deq = vec![0f32; x.len()];
    dequantize_row(ty, &q, &mut deq);
    for (i, (a, b)) in deq.iter().zip(&y).enumerate() {
        assert_eq!(
            a.to_bits(),
            b.to_bits(),
            "{name}: element {i} dequantizes to {a}, gguf-py {b}"
        );
    }
}

#[test]
fn q4_0_matches_gguf_py() {
    check("q4_0");
}
#[test]
fn q4_1_matches_gguf_py() {
    check("q4_1");
}
#[test]
fn q5_0_matches_gguf_py() {
    check("q5_0");
}
#[test]
fn q5_1_matches_gguf_py() {
    check("q5_1");
}
#[test]
fn q8_0_matches_gguf_py() {
    check("q8_0");
}
#[test]
fn f16_matches_gguf_py() {
    check("f16");
}
#[test]
fn bf16_matches_gguf_py() {
    check("bf16");
}
