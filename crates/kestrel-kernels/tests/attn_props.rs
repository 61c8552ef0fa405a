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
    fn dot_f16_rows_match_single_dots_bitwise(rows in 0usize..20, d in prop::sample::select(vec![8usize, 40, 64, 128, 256, 264]),
                                              g in 1usize..7, seed in prop::collection::vec(-8.0f32..8.0, 6 * 264 + 20 * 264), l32 in any::<bool>()) {
        // g query heads against one KV head's rows; 264 is past the tiled path's longest head.
        let lanes = if l32 { Lanes::L32 } else { Lanes::L8 };
        let (q, ks) = (h(&seed[..g * d]), h(&seed[6 * 264..6 * 264 + rows * d]));
        for k in [kernels(), scalar_kernels()] {
            let mut out = vec![f32::NAN; g * rows];
            k.dot_f16_rows(lanes, d, &q, &ks, &mut out);
            for (i, o) in out.iter().enumerate() {
                let (qi, j) = (i / rows.max(1), i % rows.max(1));
                let want = scalar_kernels().dot_f16(lanes, &q[qi * d..(qi + 1) * d], &ks[j * d..(j + 1) * d]);
                prop_assert_eq!(o.to_bits(), want.to_bits(), "{} query {} row {}", k.isa(), qi, j);
            }
        }
    }

    #[test]
    fn mix_f16_matches_scalar_bitwise(rows in 1usize..70, dv in prop::sample::select(vec![8usize, 20, 64, 128, 256]),
                                      g in 1usize..7, pos0 in 0usize..100,
                                      seed in prop::collection::vec(-4.0f32..4.0, 70 * 256 + 6 * 70), l32 in any::<bool>()) {
        let lanes = if l32 { Lanes::L32 } else { Lanes::L8 };
        let v = h(&seed[..rows * dv]);
        let p: Vec<f32> = seed[70 * 256..70 * 256 + g * rows].iter().map(|x| f16::from_f32(x.abs() / 4.0).to_f32()).collect();
        let mut acc = vec![f32::NAN; g * 32 * dv];
        let (mut o1, mut o2) = (vec![0.0f32; g * dv], vec![0.0f32; g * dv]);
        scalar_kernels().mix_f16(lanes, dv, &mut o1, &p, &v, pos0, &mut acc);
        acc.fill(f32::NAN);
        kernels().mix_f16(lanes, dv, &mut o2, &p, &v, pos0, &mut acc);
        for i in 0..g * dv {
            let (qi, d) = (i / dv, i % dv);
            prop_assert_eq!(o1[i].to_bits(), o2[i].to_bits(), "query {} d {}: {} vs {}", qi, d, o1[i], o2[i]);
            let exact: f64 = (0..rows).map(|j| p[qi * rows + j] as f64 * v[j * dv + d].to_f64()).sum();
            prop_assert!((o1[i] as f64 - exact).abs() <= 1e-5 * (1.0 + exact.abs()));
        }
    }

    #[test]
    fn mix_f16_add_in_runs_equals_one_mix(rows in 1usize..70, dv in prop::sample::select(vec![8usize, 20, 64, 128]),
                                          g in 1usize..6, pos0 in 0usize..100, cut in prop::collection::vec(1usize..20, 1..6),
                                          seed in prop::collection::vec(-4.0f32..4.0, 70 * 128 + 6 * 70), l32 in any::<bool>()) {
        // The lane sums over consecutive runs of cells, added in order, then folded: the same
        // bits as one mix over all of them, on every table.
        let lanes = if l32 { Lanes::L32 } else { Lanes::L8 };
        let w = lanes.count();
        let v = h(&seed[..rows * dv]);
        let p: Vec<f32> = seed[70 * 128..70 * 128 + g * rows].iter().map(|x| f16::from_f32(x.abs() / 4.0).to_f32()).collect();
        let mut want = vec![0.0f32; g * dv];
        let mut acc = vec![f32::NAN; g * w * dv];
        scalar_kernels().mix_f16(lanes, dv, &mut want, &p, &v, pos0, &mut acc);
        for k in [kernels(), scalar_kernels()] {
            let mut lane_sums = vec![0.0f32; g * w * dv];
            let (mut j, mut c) = (0, 0);
            while j < rows {
                let m = cut[c % cut.len()].min(rows - j);
                let pr: Vec<f32> = (0..g).flat_map(|q| p[q * rows + j..q * rows + j + m].to_vec()).collect();
                k.mix_f16_add(lanes, dv, &pr, &v[j * dv..(j + m) * dv], pos0 + j, &mut lane_sums);
                j += m;
                c += 1;
            }
            let mut got = vec![f32::NAN; g * dv];
            k.fold_lanes(lanes, dv, &lane_sums, &mut got);
            for i in 0..g * dv {
                prop_assert_eq!(want[i].to_bits(), got[i].to_bits(), "{} output {}: {} vs {}", k.isa(), i, want[i], got[i]);
            }
        }
    }
}

proptest! {
    #[test]
    fn softmax_cells_matches_scalar_bitwise(n in 1usize..70, cell0 in 0usize..40,
                                            seed in prop::collection::vec(-30.0f32..30.0, 70), masked in 0usize..3) {
        let mut a = seed[..n].to_vec();
        // Masked cells arrive as -inf and must come out as exact zeros.
        for v in a.iter_mut().take(masked.min(n - 1)) {
            *v = f32::NEG_INFINITY;
        }
        let mut b = a.clone();
        scalar_kernels().softmax_cells(&mut a, cell0);
        kernels().softmax_cells(&mut b, cell0);
        for i in 0..n {
            prop_assert_eq!(a[i].to_bits(), b[i].to_bits(), "{}: {} vs {}", i, a[i], b[i]);
        }
        let sum: f64 = a.iter().map(|&x| x as f64).sum();
        prop_assert!((sum - 1.0).abs() < 1e-5);
        for i in 0..masked.min(n - 1) {
            prop_assert_eq!(a[i], 0.0);
        }
    }

    #[test]
    fn exp_approx_is_close_to_exp(x in -100.0f32..88.0) {
        let got = kestrel_kernels::generic::attn::exp_approx(x) as f64;
        let want = (x as f64).exp();
        prop_assert!((got - want).abs() <= 4e-7 * want + 1e-38, "{} -> {} vs {}", x, got, want);
    }
}

proptest! {
    #[test]
    fn swiglu_matches_scalar_bitwise(n in 0usize..100, seed in prop::collection::vec(-20.0f32..20.0, 200)) {
        let (mut a, up) = (seed[..n].to_vec(), seed[100..100 + n].to_vec());
        let mut b = a.clone();
        scalar_kernels().swiglu(&mut a, &up);
        kernels().swiglu(&mut b, &up);
        for i in 0..n {
            prop_assert_eq!(a[i].to_bits(), b[i].to_bits());
            let x = seed[i] as f64;
            let want = x / (1.0 + (-x).exp()) * up[i] as f64;
            prop_assert!((a[i] as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()));
        }
    }
}

/// Far out of range the approximation still gives 0 and infinity.
#[test]
fn exp_approx_extremes() {
    use kestrel_kernels::generic::attn::exp_approx;
    assert_eq!(exp_approx(f32::NEG_INFINITY), 0.0);
    assert_eq!(exp_approx(-200.0), 0.0);
    assert_eq!(exp_approx(0.0), 1.0);
    assert!(exp_approx(100.0).is_infinite());
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
