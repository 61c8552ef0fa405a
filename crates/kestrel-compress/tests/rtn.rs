//! The round-to-nearest weight quantizers (`rtn`) against kestrel-kernels' dequantizers, ggml's
//! layouts: rows round-trip within each format's error bound, all-zero rows give zero blocks.

use kestrel_compress::rtn::kquants as rq;
use kestrel_kernels::generic::kquants as kq;
use kestrel_kernels::generic::kquants::QK_K;
use proptest::prelude::*;

type DeqFn = fn(&[u8], &mut [f32]);

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn kquants_reference_quantizers_round_trip(
        nb in 1usize..=4,
        xs in proptest::collection::vec(-1.0f32..1.0f32, 4 * QK_K),
        scale in prop_oneof![Just(1.0f32), 1e-3f32..1e2f32],
        shift in prop_oneof![Just(0.0f32), -0.5f32..0.5f32],
    ) {
        let x: Vec<f32> = xs[..nb * QK_K].iter().map(|v| (v + shift) * scale).collect();
        let rms = (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt();
        type QFn = fn(&[f32], &mut [u8]);
        let cases: [(&str, QFn, DeqFn, usize, f32); 5] = [
            ("q2_k", rq::quantize_row_q2_k, kq::dequantize_row_q2_k, 84, 0.35),
            ("q3_k", rq::quantize_row_q3_k, kq::dequantize_row_q3_k, 110, 0.2),
            ("q4_k", rq::quantize_row_q4_k, kq::dequantize_row_q4_k, 144, 0.09),
            ("q5_k", rq::quantize_row_q5_k, kq::dequantize_row_q5_k, 176, 0.045),
            ("q6_k", rq::quantize_row_q6_k, kq::dequantize_row_q6_k, 210, 0.025),
        ];
        for (fmt, q, deq, bs, tol) in cases {
            let mut w = vec![0u8; nb * bs];
            q(&x, &mut w);
            let mut y = vec![0.0f32; x.len()];
            deq(&w, &mut y);
            let err = (x.iter().zip(&y).map(|(a, b)| (a - b) * (a - b)).sum::<f32>() / x.len() as f32).sqrt();
            prop_assert!(err <= tol * rms, "{}: rms err {} vs rms {}", fmt, err, rms);
        }
    }
}

/// Quantizing an all-zero row gives all-zero blocks; a constant row is exact.
#[test]
fn kquants_reference_quantizers_edge_cases() {
    let z = vec![0.0f32; QK_K];
    let mut w = vec![0xFFu8; 210];
    rq::quantize_row_q6_k(&z, &mut w);
    assert!(w.iter().all(|&b| b == 0));
    let mut w4 = vec![0xFFu8; 144];
    rq::quantize_row_q4_k(&z, &mut w4);
    let mut y = vec![1.0f32; QK_K];
    kq::dequantize_row_q4_k(&w4, &mut y);
    assert!(y.iter().all(|&v| v == 0.0));
}
