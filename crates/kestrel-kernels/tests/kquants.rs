//! K-quant tests: dequantization against gguf-py fixtures (and the real model's
//! bytes when available), Q8_K quantization, scalar dot products against
//! dequantize-then-dot, AVX2 dot products against their scalar twins, and the
//! reference weight quantizers.

use half::f16;
use kestrel_kernels::generic::kquants as kq;
use proptest::prelude::*;

use kestrel_kernels::generic::kquants::QK_K;

struct Fixture {
    raw: Vec<u8>,
    floats: Vec<f32>,
}

fn fixture_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("kquants_{name}.bin"))
}

fn load_fixture(name: &str) -> Fixture {
    let b = std::fs::read(fixture_path(name))
        .expect("fixture missing: run tests/fixtures/gen_kquants.py");
    let n = u32::from_le_bytes(b[0..4].try_into().unwrap()) as usize;
    let nb = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
    let raw = b[8..8 + nb].to_vec();
    let floats = b[8 + nb..8 + nb + 4 * n]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    Fixture { raw, floats }
}

fn check_bit_exact(name: &str, deq: fn(&[u8], &mut [f32])) {
    let fx = load_fixture(name);
    let mut out = vec![f32::NAN; fx.floats.len()];
    deq(&fx.raw, &mut out);
    for (i, (a, b)) in out.iter().zip(&fx.floats).enumerate() {
        assert_eq!(
            a.to_bits(),
            b.to_bits(),
            "{name}: element {i}: ours {a} vs gguf-py {b}"
        );
    }
}

#[test]
fn kquants_dequant_q2_k_matches_gguf_py() {
    check_bit_exact("q2_k", kq::dequantize_row_q2_k);
}
#[test]
fn kquants_dequant_q3_k_matches_gguf_py() {
    check_bit_exact("q3_k", kq::dequantize_row_q3_k);
}
#[test]
fn kquants_dequant_q4_k_matches_gguf_py() {
    check_bit_exact("q4_k", kq::dequantize_row_q4_k);
}
#[test]
fn kquants_dequant_q5_k_matches_gguf_py() {
    check_bit_exact("q5_k", kq::dequantize_row_q5_k);
}
#[test]
fn kquants_dequant_q6_k_matches_gguf_py() {
    check_bit_exact("q6_k", kq::dequantize_row_q6_k);
}
#[test]
fn kquants_dequant_model_rows_match_gguf_py() {
    check_bit_exact("model_q4_k", kq::dequantize_row_q4_k);
    check_bit_exact("model_q6_k", kq::dequantize_row_q6_k);
}

/// The fixture's model rows are the bytes really stored in the GGUF (offsets in
/// kquants_model_rows.txt). Skipped when the model is not on this machine.
#[test]
fn kquants_model_row_bytes_match_model_file() {
    use std::io::{Read, Seek, SeekFrom};
    let Some(home) = std::env::var_os("HOME") else {
        return;
    };
    let model = std::path::Path::new(&home).join(".cache/kestrel/models/gemma-3-270m-q4_k_m.gguf");
    let Ok(mut f) = std::fs::File::open(&model) else {
        eprintln!(
            "note: {} absent; skipping model byte check",
            model.display()
        );
        return;
    };
    let rows = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/kquants_model_rows.txt"),
    )
    .unwrap();
    let mut got: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    for line in rows.lines().filter(|l| !l.trim().is_empty()) {
        let field = |k: &str| -> u64 {
            line.split_whitespace()
                .find_map(|t| t.strip_prefix(k))
                .unwrap()
                .parse()
                .unwrap()
        };
        let ty = line.split_whitespace().nth(1).unwrap().to_ascii_lowercase();
        let (offset, len) = (field("offset="), field("bytes=") as usize);
        let mut buf = vec![0u8; len];
        f.seek(SeekFrom::Start(offset)).unwrap();
        f.read_exact(&mut buf).unwrap();
        got.entry(format!("model_{ty}"))
            .or_default()
            .extend_from_slice(&buf);
    }
    for (name, bytes) in got {
        assert_eq!(
            bytes,
            load_fixture(&name).raw,
            "{name}: fixture bytes differ from model file"
        );
    }
}

#[test]
fn kquants_nearest_int_is_round_half_even() {
    assert_eq!(kq::nearest_int(2.5), 2);
    assert_eq!(kq::nearest_int(3.5), 4);
    assert_eq!(kq::nearest_int(-2.5), -2);
    assert_eq!(kq::nearest_int(-0.5), 0);
    assert_eq!(kq::nearest_int(126.49), 126);
    assert_eq!(kq::nearest_int(-127.0), -127);
}

#[test]
fn kquants_q8_k_known_block() {
    // The signed extreme always maps to -127 (iscale = -127/max); with max = -127
    // iscale is exactly 1, so ties show the round-half-to-even.
    let mut x = vec![0.0f32; QK_K];
    x[0] = -127.0;
    x[1] = 0.5;
    x[2] = 1.5;
    x[3] = 2.5;
    x[4] = -0.5;
    x[5] = 126.5;
    let mut q = vec![0u8; 292];
    kq::quantize_row_q8_k(&x, &mut q);
    let d = f32::from_le_bytes(q[0..4].try_into().unwrap());
    assert_eq!(d, 1.0);
    let qs: Vec<i8> = q[4..260].iter().map(|&b| b as i8).collect();
    assert_eq!(&qs[..7], &[-127, 0, 2, 2, 0, 126, 0]);
    let bsum0 = i16::from_le_bytes([q[260], q[261]]);
    assert_eq!(bsum0, -127 + 2 + 2 + 126);
    // Positive extreme: iscale < 0, so it becomes -127 and d < 0.
    let mut x = vec![0.0f32; QK_K];
    x[17] = 3.0;
    x[18] = -3.0;
    kq::quantize_row_q8_k(&x, &mut q);
    let d = f32::from_le_bytes(q[0..4].try_into().unwrap());
    assert_eq!(d, 1.0 / (-127.0f32 / 3.0));
    assert_eq!((q[4 + 17] as i8, q[4 + 18] as i8), (-127, 127));
    // All zero -> all-zero block.
    let z = vec![0.0f32; QK_K];
    let mut qz = vec![0xAAu8; 292];
    kq::quantize_row_q8_k(&z, &mut qz);
    assert!(qz.iter().all(|&b| b == 0));
}

// ---------------------------------------------------------------------------
// Random data helpers
// ---------------------------------------------------------------------------

/// Block size and (offset, signed) of each f16 super-scale field per format.
fn layout(fmt: &str) -> (usize, &'static [(usize, bool)]) {
    match fmt {
        "q2_k" => (84, &[(80, false), (82, false)]),
        "q3_k" => (110, &[(108, true)]),
        "q4_k" => (144, &[(0, false), (2, false)]),
        "q5_k" => (176, &[(0, false), (2, false)]),
        "q6_k" => (210, &[(208, true)]),
        _ => unreachable!(),
    }
}

/// Random block bytes with sane f16 scales; `seeds` supplies the randomness.
fn make_weights(fmt: &str, nb: usize, bytes: &[u8], scales: &[(f32, bool)]) -> Vec<u8> {
    let (bs, offs) = layout(fmt);
    let mut w: Vec<u8> = bytes.iter().copied().cycle().take(nb * bs).collect();
    let mut k = 0;
    for b in 0..nb {
        for &(o, signed) in offs {
            let (mag, neg) = scales[k % scales.len()];
            k += 1;
            let v = if signed && neg { -mag } else { mag };
            w[b * bs + o..b * bs + o + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
        }
    }
    w
}

fn quantize_acts(x: &[f32]) -> Vec<u8> {
    let mut a = vec![0u8; x.len() / QK_K * 292];
    kq::quantize_row_q8_k(x, &mut a);
    a
}

type DotFn = fn(usize, &[u8], &[u8]) -> f32;
type DeqFn = fn(&[u8], &mut [f32]);

fn scalar_fns(fmt: &str) -> (DeqFn, DotFn) {
    match fmt {
        "q2_k" => (kq::dequantize_row_q2_k, kq::vec_dot_q2_k),
        "q3_k" => (kq::dequantize_row_q3_k, kq::vec_dot_q3_k),
        "q4_k" => (kq::dequantize_row_q4_k, kq::vec_dot_q4_k),
        "q5_k" => (kq::dequantize_row_q5_k, kq::vec_dot_q5_k),
        "q6_k" => (kq::dequantize_row_q6_k, kq::vec_dot_q6_k),
        _ => unreachable!(),
    }
}

const FORMATS: [&str; 5] = ["q2_k", "q3_k", "q4_k", "q5_k", "q6_k"];

/// (super-blocks, weight byte pattern, f16 scales, activations, activation scale)
type Case = (usize, Vec<u8>, Vec<(f32, bool)>, Vec<f32>, f32);

fn arb_case() -> impl Strategy<Value = Case> {
    (1usize..=16).prop_flat_map(|nb| {
        (
            Just(nb),
            proptest::collection::vec(any::<u8>(), 64..=512),
            proptest::collection::vec((1e-3f32..1e-1f32, any::<bool>()), 1..=8),
            proptest::collection::vec(-1.0f32..1.0f32, nb * QK_K),
            prop_oneof![Just(1.0f32), 1e-3f32..1e3f32],
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn kquants_q8_k_round_trip_and_bsums(
        nb in 1usize..=16,
        seed in proptest::collection::vec(-1.0f32..1.0f32, 16 * QK_K),
        scale in prop_oneof![Just(1.0f32), 1e-6f32..1e4f32],
        zero_block in any::<bool>(),
    ) {
        let mut x: Vec<f32> = seed[..nb * QK_K].iter().map(|v| v * scale).collect();
        if zero_block { x[..QK_K].fill(0.0); }
        let a = quantize_acts(&x);
        let mut y = vec![0.0f32; x.len()];
        kq::dequantize_row_q8_k(&a, &mut y);
        for b in 0..nb {
            let blk = &a[b * 292..(b + 1) * 292];
            let d = f32::from_le_bytes(blk[0..4].try_into().unwrap());
            for g in 0..16 {
                let s: i32 = blk[4 + 16 * g..4 + 16 * g + 16].iter().map(|&v| v as i8 as i32).sum();
                let bs = i16::from_le_bytes([blk[260 + 2 * g], blk[261 + 2 * g]]) as i32;
                prop_assert_eq!(s, bs);
            }
            for j in 0..QK_K {
                let i = b * QK_K + j;
                let err = (x[i] - y[i]).abs();
                // Half a step, plus the f32 rounding of x and of d * q at x's magnitude.
                let slack = x[i].abs() * 4.0 * f32::EPSILON + f32::MIN_POSITIVE;
                prop_assert!(err <= d.abs() * 0.5 * (1.0 + 1e-5) + slack,
                    "block {} elem {}: x={} y={} d={}", b, j, x[i], y[i], d);
            }
        }
    }

    #[test]
    fn kquants_scalar_dot_matches_dequantized_dot(case in arb_case()) {
        let (nb, bytes, scales, xs, xscale) = case;
        let x: Vec<f32> = xs.iter().map(|v| v * xscale).collect();
        let a = quantize_acts(&x);
        let mut af = vec![0.0f32; x.len()];
        kq::dequantize_row_q8_k(&a, &mut af);
        for fmt in FORMATS {
            let (deq, dot) = scalar_fns(fmt);
            let w = make_weights(fmt, nb, &bytes, &scales);
            let mut wf = vec![0.0f32; nb * QK_K];
            deq(&w, &mut wf);
            let reference: f64 = wf.iter().zip(&af).map(|(&p, &q)| p as f64 * q as f64).sum();
            let mag: f64 = wf.iter().zip(&af).map(|(&p, &q)| (p as f64 * q as f64).abs()).sum();
            let got = dot(nb * QK_K, &w, &a) as f64;
            prop_assert!((got - reference).abs() <= 2e-5 * mag + 1e-30,
                "{}: nb={} got {} want {} (sum|.|={})", fmt, nb, got, reference, mag);
        }
    }

    #[test]
    fn kquants_avx2_dot_matches_scalar(case in arb_case()) {
        #[cfg(target_arch = "x86_64")]
        {
            if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
                eprintln!("note: no AVX2+FMA on this CPU; AVX2 k-quant dots not tested");
                return Ok(());
            }
            use kestrel_kernels::arch::x86_64::{kq_panel::avx2 as panel, kquants as simd};
            let (nb, bytes, scales, xs, xscale) = case;
            let x: Vec<f32> = xs.iter().map(|v| v * xscale).collect();
            let a = quantize_acts(&x);
            let mut af = vec![0.0f32; x.len()];
            kq::dequantize_row_q8_k(&a, &mut af);
            type SimdDot = unsafe fn(usize, &[u8], &[u8]) -> f32;
            let simd_fns: [(&str, SimdDot); 5] = [
                ("q2_k", simd::vec_dot_q2_k),
                ("q3_k", simd::vec_dot_q3_k),
                ("q4_k", panel::vec_dot_q4_k),
                ("q5_k", simd::vec_dot_q5_k),
                ("q6_k", panel::vec_dot_q6_k),
            ];
            for (fmt, sdot) in simd_fns {
                let (deq, dot) = scalar_fns(fmt);
                let w = make_weights(fmt, nb, &bytes, &scales);
                let mut wf = vec![0.0f32; nb * QK_K];
                deq(&w, &mut wf);
                let mag: f64 = wf.iter().zip(&af).map(|(&p, &q)| (p as f64 * q as f64).abs()).sum();
                let want = dot(nb * QK_K, &w, &a) as f64;
                // SAFETY: AVX2 and FMA were detected above.
                let got = unsafe { sdot(nb * QK_K, &w, &a) } as f64;
                prop_assert!((got - want).abs() <= 1e-5 * mag + 1e-30,
                    "{}: nb={} avx2 {} scalar {} (sum|.|={})", fmt, nb, got, want, mag);
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        { let _ = case; }
    }
}
