//! The SIMD attention loops against their scalar twins (bit-identical by construction: the
//! same fused multiply-adds in the same order), and against f64 math within rounding.

use half::f16;
use kestrel_kernels::{kernels, scalar_kernels, Lanes};
use proptest::prelude::*;

fn h(v: &[f32]) -> Vec<f16> {
    v.iter().map(|&x| f16::from_f32(x)).collect()
}

proptest! {
    #[test]
    fn dot_f16_matches_scalar_bitwise(n in 0usize..300, seed in prop::collection::vec(-8.0f32..8.0, 600), l32 in any::<bool>()) {
        let lanes = if l32 { Lanes::L32 } else { Lanes::L8 };
        let (a, b) = (h(&seed[..n]), h(&seed[300..300 + n]));
        let s = scalar_kernels().dot_f16(lanes, &a, &b);
        let v = kernels().dot_f16(lanes, &a, &b);
        prop_assert_eq!(s.to_bits(), v.to_bits(), "{} vs {}", s, v);
        let exact: f64 = a.iter().zip(&b).map(|(x, y)| x.to_f64() * y.to_f64()).sum();
        let mag: f64 = a.iter().zip(&b).map(|(x, y)| (x.to_f64() * y.to_f64()).abs()).sum();
        prop_assert!((s as f64 - exact).abs() <= 1e-6 * mag + 1e-6);
    }

    #[test]
    fn mix_f16_matches_scalar_bitwise(rows in 1usize..70, dv in prop::sample::select(vec![8usize, 20, 64, 256]),
                                      pos0 in 0usize..100, seed in prop::collection::vec(-4.0f32..4.0, 70 * 256 + 70), l32 in any::<bool>()) {
        let lanes = if l32 { Lanes::L32 } else { Lanes::L8 };
        let v = h(&seed[..rows * dv]);
        let p: Vec<f32> = seed[70 * 256..70 * 256 + rows].iter().map(|x| f16::from_f32(x.abs() / 4.0).to_f32()).collect();
        let mut acc = vec![0.0f32; 32 * dv];
        let (mut o1, mut o2) = (vec![0.0f32; dv], vec![0.0f32; dv]);
        scalar_kernels().mix_f16(lanes, &mut o1, &p, &v, pos0, &mut acc);
        kernels().mix_f16(lanes, &mut o2, &p, &v, pos0, &mut acc);
        for d in 0..dv {
            prop_assert_eq!(o1[d].to_bits(), o2[d].to_bits(), "d {}: {} vs {}", d, o1[d], o2[d]);
            let exact: f64 = (0..rows).map(|j| p[j] as f64 * v[j * dv + d].to_f64()).sum();
            prop_assert!((o1[d] as f64 - exact).abs() <= 1e-5 * (1.0 + exact.abs()));
        }
    }
}

/// The two 8-lane reductions pair lanes differently: tinyBLAS (0+2)+(1+3), ggml (0+1)+(2+3).
/// With 1 absorbed by 1e8 in f32, the order shows in the result.
#[test]
fn lane_orders_differ_as_documented() {
    use kestrel_kernels::generic::attn::{hsum8, hsum8_hadd};
    let x = [1e8f32, 1.0, -1e8, 0.0, 0.0, 0.0, 0.0, 0.0];
    assert_eq!(hsum8(&x), 1.0); // (1e8 + -1e8) + (1 + 0)
    assert_eq!(hsum8_hadd(&x), 0.0); // (1e8 + 1) + (-1e8 + 0)
}
