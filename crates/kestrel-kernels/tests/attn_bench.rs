//! Attention inner-loop throughput per instruction set, one thread, best of several runs (a
//! figure-printing benchmark, not a timed test): the q·k dots and the value mix of a block of
//! queries over one chunk of cached keys, as the prompt path (`kestrel-model`'s
//! `attend::blocked`) calls them, in GMAC/s.
//! `cargo test --release -p kestrel-kernels --test attn_bench -- --ignored --nocapture`
//! `KESTREL_BENCH_ATTN=QUERIESxKEYSxDIM` changes the shape (default 16x64x128).

use std::time::Instant;

use half::f16;
use kestrel_kernels::{kernels_for, Lanes, ISAS};

#[test]
#[ignore]
fn attention_throughput() {
    let (g, n, d) = std::env::var("KESTREL_BENCH_ATTN")
        .ok()
        .and_then(|s| {
            let v: Vec<usize> = s.split('x').filter_map(|x| x.trim().parse().ok()).collect();
            (v.len() == 3).then(|| (v[0], v[1], v[2]))
        })
        .unwrap_or((16, 64, 128));
    let val = |i: usize| f16::from_f32(((i * 7919) % 1000) as f32 / 1000.0 - 0.5);
    let q: Vec<f16> = (0..g * d).map(val).collect();
    let rows: Vec<f16> = (0..n * d).map(|i| val(i + 17)).collect();
    let p: Vec<f32> = (0..g * n).map(|i| val(i + 5).to_f32().abs()).collect();
    let macs = (g * n * d) as f64;
    let reps = ((2e8 / macs) as usize).max(1);
    println!("attention kernels, {g} queries x {n} keys x {d} dims, one thread, GMAC/s:");
    for isa in ISAS {
        // The scalar twins are references (software FMA), not contenders.
        let Some(k) = kernels_for(isa).filter(|_| isa != "scalar") else {
            continue;
        };
        for lanes in [Lanes::L8, Lanes::L32] {
            let w = lanes.count();
            let mut out = vec![0.0f32; g * n];
            let mut acc = vec![0.0f32; g * w * d];
            let best = |f: &mut dyn FnMut()| {
                (0..5)
                    .map(|_| {
                        let t = Instant::now();
                        for _ in 0..reps {
                            f();
                        }
                        macs * reps as f64 / t.elapsed().as_secs_f64() / 1e9
                    })
                    .fold(0.0f64, f64::max)
            };
            let dot = best(&mut || k.dot_f16_rows(lanes, d, &q, &rows, &mut out));
            let mix = best(&mut || k.mix_f16_add(lanes, d, &p, &rows, 3, &mut acc));
            println!("  {isa:<12} {lanes:?}: q.k {dot:6.1}   mix {mix:6.1}");
            std::hint::black_box((&out, &acc));
        }
    }
}
