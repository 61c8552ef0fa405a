//! Rough throughput of the k-quant dot products (ignored by default):
//! `cargo test --release -p kestrel-kernels --test kquants_bench -- --ignored --nocapture`

use kestrel_kernels::generic::kquants as kq;
use std::time::Instant;

use kestrel_kernels::generic::kquants::QK_K;

fn lcg(seed: &mut u64) -> u32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*seed >> 33) as u32
}

#[test]
#[ignore]
fn kquants_bench_vec_dot() {
    let n = 4096usize;
    let rows = 512usize;
    let mut seed = 7u64;
    let x: Vec<f32> = (0..n)
        .map(|_| (lcg(&mut seed) as f32 / u32::MAX as f32) - 0.5)
        .collect();
    let mut a = vec![0u8; n / QK_K * 292];
    kq::quantize_row_q8_k(&x, &mut a);
    type F = fn(usize, &[u8], &[u8]) -> f32;
    let cases: [(&str, usize, usize, F); 5] = [
        ("q2_k", 84, 80, kq::vec_dot_q2_k),
        ("q3_k", 110, 108, kq::vec_dot_q3_k),
        ("q4_k", 144, 0, kq::vec_dot_q4_k),
        ("q5_k", 176, 0, kq::vec_dot_q5_k),
        ("q6_k", 210, 208, kq::vec_dot_q6_k),
    ];
    for (name, bs, doff, scalar) in cases {
        let mut w: Vec<u8> = (0..rows * n / QK_K * bs)
            .map(|_| lcg(&mut seed) as u8)
            .collect();
        for b in w.chunks_exact_mut(bs) {
            b[doff..doff + 2].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
        }
        let rb = n / QK_K * bs;
        let time = |f: &dyn Fn(&[u8]) -> f32| {
            let mut best = f64::MAX;
            let mut s = 0.0;
            for _ in 0..5 {
                let t = Instant::now();
                for r in 0..rows {
                    s += f(&w[r * rb..(r + 1) * rb]);
                }
                best = best.min(t.elapsed().as_secs_f64());
            }
            (best, s)
        };
        let (ts, _) = time(&|wr| scalar(n, wr, &a));
        let mut line = format!("{name}: scalar {:7.2} GB/s", (rows * rb) as f64 / ts / 1e9);
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            use kestrel_kernels::arch::x86_64::kquants as simd;
            let f: unsafe fn(usize, &[u8], &[u8]) -> f32 = match name {
                "q2_k" => simd::vec_dot_q2_k,
                "q3_k" => simd::vec_dot_q3_k,
                "q4_k" => kestrel_kernels::arch::x86_64::kq_panel::avx2::vec_dot_q4_k,
                "q5_k" => simd::vec_dot_q5_k,
                _ => kestrel_kernels::arch::x86_64::kq_panel::avx2::vec_dot_q6_k,
            };
            // SAFETY: features detected above.
            let (tv, _) = time(&|wr| unsafe { f(n, wr, &a) });
            line += &format!(
                "  avx2 {:7.2} GB/s  ({:.1}x)",
                (rows * rb) as f64 / tv / 1e9,
                ts / tv
            );
        }
        println!("{line}");
    }
}
