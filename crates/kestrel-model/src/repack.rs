//! Load-time repacking of the weight matrices into the kernels' interleaved layout
//! (`kestrel_kernels::repack`): 8 rows per stream, which decode and prompt kernels read with
//! shared activation loads and outputs in the lanes. The results are bit-identical to the
//! file's layout; the copy replaces the file's pages in memory (they are released).

use crate::decoder::Decoder;
use crate::weights::Matrix;
use kestrel_gguf::GgufFile;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// How a model is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Repack the matrices that have an interleaved layout (Q4_K, Q6_K, Q4_0, Q8_0). On by default; off with
    /// `KESTREL_NO_REPACK=1` or [`set_repack_default`] (the CLI's `--no-repack`).
    pub repack: bool,
}

/// 0: not set (read `KESTREL_NO_REPACK`), 1: off, 2: on.
static REPACK_DEFAULT: AtomicU8 = AtomicU8::new(0);

/// Sets whether [`LoadOptions::default`] repacks, for every later load in this process.
pub fn set_repack_default(on: bool) {
    REPACK_DEFAULT.store(if on { 2 } else { 1 }, Ordering::Relaxed);
}

impl Default for LoadOptions {
    fn default() -> Self {
        let repack = match REPACK_DEFAULT.load(Ordering::Relaxed) {
            1 => false,
            2 => true,
            _ => !std::env::var("KESTREL_NO_REPACK").is_ok_and(|v| !v.is_empty() && v != "0"),
        };
        LoadOptions { repack }
    }
}

/// What repacking did at load.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RepackStats {
    pub matrices: usize,
    /// Bytes of the interleaved copies (resident instead of the file's pages).
    pub bytes: usize,
    pub seconds: f64,
}

/// Repacks every weight matrix of `d`: the layers' linear weights, the output head and the
/// embedding table (its rows are looked up from either layout; a tied head shares its copy).
/// Spread over the machine's cores, largest matrices first, each thread taking the next.
pub(crate) fn repack_decoder(g: &GgufFile, d: &mut Decoder) -> RepackStats {
    let t0 = Instant::now();
    let tied = d.output.name == d.tok_embd.name;
    let mut mats: Vec<&mut Matrix> = Vec::new();
    for l in d.layers.iter_mut() {
        for lin in l.linears_mut() {
            mats.push(&mut lin.w);
            if let Some(a) = lin.a.as_mut() {
                mats.push(a);
            }
        }
    }
    mats.push(&mut d.tok_embd);
    if !tied {
        mats.push(&mut d.output);
    }
    mats.retain(|m| kestrel_kernels::has_x8_layout(m.ty));
    // Largest first, each thread taking the next matrix as it finishes one: the embedding
    // table alone can be a quarter of the work.
    mats.sort_by_key(|m| std::cmp::Reverse(m.row_bytes() * m.rows));
    let nt = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(mats.len().max(1));
    let jobs: Vec<Mutex<&mut Matrix>> = mats.into_iter().map(Mutex::new).collect();
    let next = AtomicUsize::new(0);
    // (matrices, bytes) each thread repacked.
    let (matrices, bytes) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..nt)
            .map(|_| {
                s.spawn(|| {
                    let (mut n, mut bytes) = (0, 0);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(m) = jobs.get(i) else {
                            break (n, bytes);
                        };
                        // Each index is taken once, so the lock is never contended.
                        let b = m.lock().expect("repack job").repack(g);
                        n += usize::from(b > 0);
                        bytes += b;
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|j| j.join().expect("repack thread panicked"))
            .fold((0, 0), |(n, b), (n1, b1)| (n + n1, b + b1))
    });
    if tied {
        d.output = d.tok_embd.clone();
    }
    RepackStats {
        matrices,
        bytes,
        seconds: t0.elapsed().as_secs_f64(),
    }
}
