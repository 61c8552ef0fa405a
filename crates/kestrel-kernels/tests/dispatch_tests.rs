use std::time::Instant;

use kestrel_compress::rtn::quantize_row;
use kestrel_kernels::{
    kernels, matmul, scalar_kernels, vec_dot_type, Arith, GgmlType, QMatrix, ThreadPool,
};

#[test]
fn isa_names() {
    assert_eq!(scalar_kernels().isa(), "scalar");
    let isa = kernels().isa();
    assert!(kestrel_kernels::ISAS.contains(&isa), "{isa}");
    // The default table is the best one this CPU has (KESTREL_ISA may pick a lower one).
    if std::env::var_os("KESTREL_ISA").is_none() {
        let best = kestrel_kernels::ISAS
            .iter()
            .find(|i| kestrel_kernels::kernels_for(i).is_some())
            .unwrap();
        assert_eq!(isa, *best);
    }
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c");
        assert_eq!(kestrel_kernels::kernels_for("avx2").is_some(), avx2);
        let avx512 = avx2
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni");
        assert_eq!(
            kestrel_kernels::kernels_for("avx512-vnni").is_some(),
            avx512
        );
        let avxvnni = avx2 && is_x86_feature_detected!("avxvnni");
        assert_eq!(kestrel_kernels::kernels_for("avx-vnni").is_some(), avxvnni);
        for (isa, have) in [
            ("avx2", avx2),
            ("avx512-vnni", avx512),
            ("avx-vnni", avxvnni),
        ] {
            if !have {
                eprintln!("note: this CPU has no {isa}: its kernels are not tested here");
            }
        }
    }
}

#[test]
fn vec_dot_types() {
    use GgmlType::*;
    assert_eq!(vec_dot_type(Q4_0), Q8_0);
    assert_eq!(vec_dot_type(Q5_0), Q8_0);
    assert_eq!(vec_dot_type(Q8_0), Q8_0);
    assert_eq!(vec_dot_type(Q4_1), Q8_1);
    assert_eq!(vec_dot_type(Q5_1), Q8_1);
    assert_eq!(vec_dot_type(F16), F32);
    assert_eq!(vec_dot_type(BF16), F32);
    assert_eq!(vec_dot_type(Q4_K), Q8_K);
}

#[test]
#[should_panic]
fn vec_dot_checks_lengths() {
    let w = vec![0u8; 18];
    let a = vec![0u8; 34];
    kernels().vec_dot(GgmlType::Q4_0, 64, &w, &a);
}

/// Single-thread timing (best of N) of a 1536x576 and a 576x1536 matvec, scalar vs best.
/// `cargo test -p kestrel-kernels --test dispatch_tests -- --ignored --nocapture`
#[test]
#[ignore]
fn bench_matvec() {
    use GgmlType::*;
    let pool = ThreadPool::new(1);
    for ty in [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, F16, BF16, F32, Q4_K, Q6_K] {
        for &(rows, cols) in &[(1536usize, 576usize), (576, 1536), (2048, 2048)] {
            let Some(rb) = ty.row_bytes(cols) else {
                continue;
            };
            let src: Vec<f32> = (0..cols)
                .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            let mut data = vec![0u8; rb * rows];
            for r in 0..rows {
                quantize_row(ty, &src, &mut data[r * rb..(r + 1) * rb]);
            }
            let w = QMatrix {
                ty,
                rows,
                cols,
                data: &data,
                layout: kestrel_kernels::Layout::RowMajor,
            };
            let mut y = vec![0f32; rows];
            let mut scratch = Vec::new();
            let mut line = format!("{ty:>5} {rows}x{cols}:");
            for k in [scalar_kernels(), kernels()] {
                let iters = if k.isa() == "scalar" { 20 } else { 200 };
                matmul(&pool, k, Arith::Decode, &w, &src, 1, &mut y, &mut scratch);
                // best of `iters` (the machine may be shared)
                let mut s = f64::MAX;
                for _ in 0..iters {
                    let t = Instant::now();
                    matmul(&pool, k, Arith::Decode, &w, &src, 1, &mut y, &mut scratch);
                    s = s.min(t.elapsed().as_secs_f64());
                }
                line += &format!(
                    "  {} {:8.1} us {:6.2} GB/s",
                    k.isa(),
                    s * 1e6,
                    data.len() as f64 / s / 1e9
                );
            }
            println!("{line}");
        }
    }
}
