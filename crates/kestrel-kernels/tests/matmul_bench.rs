//! Matmul throughput per weight type, instruction set and batch, one thread, best of several
//! runs (a figure-printing benchmark, not a timed test):
//! `cargo test --release -p kestrel-kernels --test matmul_bench -- --ignored --nocapture`
//! `KESTREL_BENCH_TYPES=Q4_K,Q6_K` limits the types; `KESTREL_BENCH_SHAPE=8192x2048` and
//! `KESTREL_BENCH_BATCHES=1,512` change the shape and the batches; `KESTREL_BENCH_ARITH=decode`
//! takes the decode order for every column. Types with an interleaved layout (Q4_K) are
//! measured in the file's layout and repacked (`x8`).

use std::time::Instant;

use kestrel_compress::rtn::quantize_row;
use kestrel_kernels::{kernels_for, matmul, Arith, GgmlType, QMatrix, ThreadPool, ISAS};

#[test]
#[ignore]
fn matmul_throughput() {
    use GgmlType::*;
    let pool = ThreadPool::new(1);
    let want: Option<Vec<String>> = std::env::var("KESTREL_BENCH_TYPES")
        .ok()
        .map(|s| s.split(',').map(|t| t.trim().to_uppercase()).collect());
    // KESTREL_BENCH_SHAPE=ROWSxCOLS and KESTREL_BENCH_BATCHES=1,8,... change the defaults.
    let (rows, cols) = std::env::var("KESTREL_BENCH_SHAPE")
        .ok()
        .and_then(|s| {
            let (r, c) = s.split_once('x')?;
            Some((r.trim().parse().ok()?, c.trim().parse().ok()?))
        })
        .unwrap_or((2048usize, 2048usize));
    let batches: Vec<usize> = std::env::var("KESTREL_BENCH_BATCHES")
        .ok()
        .and_then(|s| s.split(',').map(|b| b.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 8, 64, 256]);
    // KESTREL_BENCH_ARITH=decode measures the decode order of every column.
    let arith = match std::env::var("KESTREL_BENCH_ARITH").as_deref() {
        Ok("decode") => Arith::Decode,
        _ => Arith::Prompt,
    };
    for ty in [Q4_K, Q6_K, Q4_0, Q8_0, Q5_0, Q4_1] {
        if want.as_ref().is_some_and(|w| !w.contains(&ty.to_string())) {
            continue;
        }
        let rb = ty.row_bytes(cols).unwrap();
        let mut data = vec![0u8; rb * rows];
        let mut src = vec![0f32; cols];
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        for r in 0..rows {
            for v in src.iter_mut() {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                *v = (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
            }
            quantize_row(ty, &src, &mut data[r * rb..(r + 1) * rb]);
        }
        let row_major = QMatrix::new(ty, rows, cols, &data);
        // Types with an interleaved layout are measured in both.
        let packed = kestrel_kernels::repack(ty, rows, cols, &data);
        let mut layouts = vec![("", row_major)];
        if let Some(p) = &packed {
            let x8 = QMatrix {
                data: p,
                layout: kestrel_kernels::Layout::X8,
                ..row_major
            };
            layouts.push((" x8", x8));
        }
        for (&batch, (tag, w)) in batches
            .iter()
            .flat_map(|b| layouts.iter().map(move |l| (b, *l)))
        {
            let x: Vec<f32> = (0..batch * cols)
                .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            let mut y = vec![0f32; batch * rows];
            let mut line = format!("{ty:>5}{tag:3} {rows}x{cols} batch {batch:>3}:");
            for isa in ISAS {
                let Some(k) = kernels_for(isa) else { continue };
                if isa == "scalar" && batch > 8 {
                    continue;
                }
                let mut scratch = Vec::new();
                let reps = (256 / batch).clamp(1, 32);
                let mut best = f64::MAX;
                for _ in 0..5 {
                    let t = Instant::now();
                    for _ in 0..reps {
                        matmul(&pool, k, arith, &w, &x, batch, &mut y, &mut scratch);
                    }
                    best = best.min(t.elapsed().as_secs_f64() / reps as f64);
                }
                let gmacs = (rows * cols * batch) as f64 / best / 1e9;
                let gbs = (rb * rows) as f64 / best / 1e9;
                line += &format!("  {isa} {gmacs:7.2} GMAC/s ({gbs:5.1} GB/s weights)");
            }
            eprintln!("{line}");
        }
    }
}
