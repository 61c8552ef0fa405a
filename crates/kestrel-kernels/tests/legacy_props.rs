//! Property tests: AVX2 kernels vs their scalar twins, scalar dots vs dequantized dots,
//! AVX2 activation quantizers vs scalar bytes.

use kestrel_compress::rtn::quantize_row;
use kestrel_kernels::generic::{float, legacy};
use kestrel_kernels::{dequantize_row, kernels, scalar_kernels, vec_dot_type, GgmlType};
use proptest::prelude::*;

const WEIGHT_TYPES: [GgmlType; 8] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
];

/// A random finite f16 in a sane range (scales of real models), as bits.
fn f16_bits(u: u16) -> [u8; 2] {
    // exponent 1..=21 (2^-14 .. 2^6), any mantissa, any sign
    let sign = u & 0x8000;
    let exp = 1 + (u >> 10) % 21;
    let mant = u & 0x3FF;
    (sign | (exp << 10) | mant).to_le_bytes()
}

/// Random weight row bytes of `ty` with `nb` blocks of 32: random payload bytes with random
/// finite f16 scales (for float types: random finite values).
fn weight_row(ty: GgmlType, n: usize, bytes: &[u8]) -> Vec<u8> {
    let rb = ty.row_bytes(n).unwrap();
    let mut w: Vec<u8> = bytes.iter().cycle().take(rb).copied().collect();
    let mut rng = bytes
        .iter()
        .fold(0x12345u64, |h, &b| h.wrapping_mul(0x100000001B3) ^ b as u64);
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    match ty {
        GgmlType::F32 => {
            for c in w.chunks_exact_mut(4) {
                let v = ((next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0;
                c.copy_from_slice(&v.to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for c in w.chunks_exact_mut(2) {
                c.copy_from_slice(&f16_bits(next() as u16));
            }
        }
        GgmlType::BF16 => {
            for c in w.chunks_exact_mut(2) {
                let v = ((next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0;
                c.copy_from_slice(&((v.to_bits() >> 16) as u16).to_le_bytes());
            }
        }
        _ => {
            let bs = ty.type_size();
            let has_m = matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1);
            for blk in w.chunks_exact_mut(bs) {
                let d = f16_bits(next() as u16);
                blk[..2].copy_from_slice(&d);
                if has_m {
                    blk[2..4].copy_from_slice(&f16_bits(next() as u16));
                }
            }
        }
    }
    w
}

fn acts(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    let vdt = vec_dot_type(ty);
    let mut a = vec![0u8; vdt.row_bytes(x.len()).unwrap()];
    quantize_row(vdt, x, &mut a);
    a
}

/// |sum| of absolute products of the dequantized operands: the scale for tolerances.
fn deq_dot(ty: GgmlType, n: usize, w: &[u8], a: &[u8]) -> (f64, f64, f64) {
    let vdt = vec_dot_type(ty);
    let mut wf = vec![0f32; n];
    let mut af = vec![0f32; n];
    dequantize_row(ty, w, &mut wf);
    dequantize_row(vdt, a, &mut af);
    let (mut s, mut sa) = (0f64, 0f64);
    for i in 0..n {
        let p = wf[i] as f64 * af[i] as f64;
        s += p;
        sa += p.abs();
    }
    // Q8_1's s is an f16: its rounding times the weight mins
    let mut extra = 0f64;
    if vdt == GgmlType::Q8_1 {
        let bs = ty.type_size();
        for (blk, xs) in af.chunks(32).enumerate() {
            let m = half::f16::from_le_bytes([w[blk * bs + 2], w[blk * bs + 3]]).to_f32() as f64;
            extra += m.abs() * xs.iter().map(|v| v.abs() as f64).sum::<f64>() / 1024.0;
        }
    }
    (s, sa, extra)
}

fn have_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if kernels().isa() == "avx2" {
            return true;
        }
    }
    eprintln!("note: no AVX2 on this CPU; SIMD-vs-scalar checks skipped");
    false
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn simd_dot_equals_scalar(ti in 0usize..8, nb in 1usize..=64, seed in proptest::collection::vec(any::<u8>(), 64),
                              x in proptest::collection::vec(-10.0f32..10.0, 64 * 32)) {
        let ty = WEIGHT_TYPES[ti];
        let n = nb * 32;
        let w = weight_row(ty, n, &seed);
        let a = acts(ty, &x[..n]);
        let s = scalar_kernels().vec_dot(ty, n, &w, &a) as f64;
        let (_, sa, extra) = deq_dot(ty, n, &w, &a);
        if have_avx2() {
            let v = kernels().vec_dot(ty, n, &w, &a) as f64;
            prop_assert!((v - s).abs() <= 2e-6 * sa + 1e-30, "{ty} n {n}: simd {v} scalar {s} (scale {sa})");
        }
        let _ = extra;
    }

    #[test]
    fn scalar_dot_equals_dequantized(ti in 0usize..8, nb in 1usize..=64, seed in proptest::collection::vec(any::<u8>(), 64),
                                     x in proptest::collection::vec(-10.0f32..10.0, 64 * 32)) {
        let ty = WEIGHT_TYPES[ti];
        let n = nb * 32;
        let w = weight_row(ty, n, &seed);
        let a = acts(ty, &x[..n]);
        let s = scalar_kernels().vec_dot(ty, n, &w, &a) as f64;
        let (r, sa, extra) = deq_dot(ty, n, &w, &a);
        prop_assert!((r - s).abs() <= 1e-5 * sa + extra + 1e-30, "{ty} n {n}: scalar {s} dequantized {r} (scale {sa})");
    }

    #[test]
    fn simd_q8_quantizers_equal_scalar(nb in 1usize..=64, x in proptest::collection::vec(-1000.0f32..1000.0, 64 * 32),
                                       scale_exp in -20i32..20, ties in any::<bool>()) {
        let n = nb * 32;
        let sc = (2.0f32).powi(scale_exp);
        // `ties`: values on half-steps so that many x / d land exactly on .5
        let xs: Vec<f32> = x[..n].iter().map(|&v| if ties { (v * 2.0).round() * 0.5 * sc } else { v * sc }).collect();
        for ty in [GgmlType::Q8_0, GgmlType::Q8_1] {
            let mut s = vec![0u8; ty.row_bytes(n).unwrap()];
            let mut v = s.clone();
            // the scalar twin of the inference-time activation quantizer
            scalar_kernels().quantize_row(ty, &xs, &mut s);
            if have_avx2() {
                kernels().quantize_row(ty, &xs, &mut v);
                prop_assert_eq!(&s, &v);
            }
        }
    }
}

#[test]
fn q8_quantizers_zero_and_constant_blocks() {
    for x in [
        vec![0f32; 64],
        vec![0.5f32; 64],
        (0..64).map(|i| i as f32 - 31.5).collect::<Vec<_>>(),
    ] {
        for ty in [GgmlType::Q8_0, GgmlType::Q8_1] {
            let mut s = vec![0u8; ty.row_bytes(64).unwrap()];
            let mut v = s.clone();
            quantize_row(ty, &x, &mut s);
            kernels().quantize_row(ty, &x, &mut v);
            assert_eq!(s, v);
        }
    }
}

#[test]
fn generic_names_exist() {
    // the documented per-type scalar entry points
    let x: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut q = vec![0u8; 2 * 36];
    legacy::quantize_row_q8_1(&x, &mut q);
    let mut b = vec![0u8; 2 * 34];
    legacy::quantize_row_q8_0(&x, &mut b);
    let mut ba = vec![0u8; 2 * 34];
    legacy::quantize_act_q8_0(&x, &mut ba);
    let mut qa = vec![0u8; 2 * 36];
    legacy::quantize_act_q8_1(&x, &mut qa);
    // Reference and inference-time quantizers agree up to a last-bit scale and ties.
    let (mut r, mut a) = (vec![0f32; 64], vec![0f32; 64]);
    legacy::dequantize_row_q8_0(&b, &mut r);
    legacy::dequantize_row_q8_0(&ba, &mut a);
    assert!(r
        .iter()
        .zip(&a)
        .all(|(x, y)| (x - y).abs() <= 0.01 * x.abs().max(0.05)));
    let mut w = vec![0u8; 2 * 18];
    kestrel_compress::rtn::legacy::quantize_row_q4_0(&x, &mut w);
    let d = legacy::vec_dot_q4_0(64, &w, &b);
    let mut wf = vec![0f32; 64];
    legacy::dequantize_row_q4_0(&w, &mut wf);
    let mut fb = vec![0u8; 64 * 4];
    float::quantize_row_f32(&x, &mut fb);
    let e = float::vec_dot_f32(64, &fb, &fb);
    assert!(d.is_finite() && e > 0.0);
}
