//! Calibration Hessians for GPTQ: for every block matrix, H = sum over calibration tokens of
//! x x^T, x the matrix's input row. Matrices that read the same input share one H (q/k/v read
//! the attention norm's output, gate/up the FFN norm's), so those are stored once.

use crate::{CompressError, Result};
use kestrel_engine::{eval, Engine};
use kestrel_model::MatmulObserver;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The name whose Hessian `weight` uses: attn_k/attn_v share attn_q's input, ffn_up shares
/// ffn_gate's (true of the pre-norm blocks kestrel runs).
pub fn input_key(weight: &str) -> String {
    let base = weight.split('[').next().unwrap_or(weight);
    for (from, to) in [
        (".attn_k.weight", ".attn_q.weight"),
        (".attn_v.weight", ".attn_q.weight"),
        (".ffn_up.weight", ".ffn_gate.weight"),
    ] {
        if let Some(p) = base.strip_suffix(from) {
            return format!("{p}{to}");
        }
    }
    base.to_string()
}

/// One accumulated Hessian: the upper triangle of sum x x^T (f32 while collecting; a chunk
/// of 512 tokens adds at most 512 terms per entry) and the token count.
pub struct Hessian {
    pub n: usize,
    upper: Vec<f32>,
    pub tokens: u64,
}

impl Hessian {
    fn new(n: usize) -> Hessian {
        Hessian {
            n,
            upper: vec![0.0; n * n],
            tokens: 0,
        }
    }

    /// The full symmetric matrix, divided by the token count (the scale does not change
    /// GPTQ's result but keeps the damping's meaning).
    pub fn full_f64(&self) -> Vec<f64> {
        let n = self.n;
        let s = 1.0 / self.tokens.max(1) as f64;
        let mut h = vec![0.0f64; n * n];
        for i in 0..n {
            for j in i..n {
                let v = self.upper[i * n + j] as f64 * s;
                h[i * n + j] = v;
                h[j * n + i] = v;
            }
        }
        h
    }

    /// The GPTQ factor of this Hessian with damping `damp`.
    pub fn factor(&self, damp: f64) -> Result<super::Factor> {
        super::Factor::new(&self.full_f64(), self.n, damp)
    }

    /// H += X^T X for `x` of `rows` rows of `n`, upper triangle only, on `threads` threads.
    fn add(&mut self, x: &[f32], rows: usize, threads: usize) {
        let n = self.n;
        // Rows of H split so each thread gets about the same share of the triangle.
        let threads = threads.clamp(1, 16).min(n.max(1));
        let mut bounds = vec![0usize];
        let total = (n * (n + 1) / 2) as f64;
        let mut acc = 0.0;
        for i in 0..n {
            acc += (n - i) as f64;
            if acc >= total * bounds.len() as f64 / threads as f64 && bounds.len() < threads {
                bounds.push(i + 1);
            }
        }
        bounds.push(n);
        bounds.dedup();
        let mut parts = Vec::new();
        let mut rest: &mut [f32] = &mut self.upper;
        for w in bounds.windows(2) {
            let (a, b) = rest.split_at_mut((w[1] - w[0]) * n);
            parts.push((w[0], a));
            rest = b;
        }
        std::thread::scope(|s| {
            for (i0, part) in parts {
                s.spawn(move || syrk_rows(part, i0, n, x, rows));
            }
        });
        self.tokens += rows as u64;
    }
}

/// For H rows i0.. (`part`), H[i][j] += sum_t x[t][i] x[t][j] for j >= i, eight tokens per
/// pass over H so each H entry is loaded once per eight multiply-adds.
fn syrk_rows(part: &mut [f32], i0: usize, n: usize, x: &[f32], rows: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        unsafe { syrk_rows_avx2(part, i0, n, x, rows) };
        return;
    }
    syrk_rows_plain(part, i0, n, x, rows);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn syrk_rows_avx2(part: &mut [f32], i0: usize, n: usize, x: &[f32], rows: usize) {
    // Same code, compiled with 256-bit vectors.
    syrk_rows_plain(part, i0, n, x, rows)
}

#[inline(always)]
fn syrk_rows_plain(part: &mut [f32], i0: usize, n: usize, x: &[f32], rows: usize) {
    let m = part.len() / n;
    let mut t = 0;
    while t < rows {
        let k = (rows - t).min(8);
        let xs: Vec<&[f32]> = (t..t + k).map(|r| &x[r * n..(r + 1) * n]).collect();
        for li in 0..m {
            let i = i0 + li;
            let h = &mut part[li * n + i..li * n + n];
            if k == 8 {
                let a: [f32; 8] = std::array::from_fn(|r| xs[r][i]);
                let r: [&[f32]; 8] = std::array::from_fn(|r| &xs[r][i..n]);
                for j in 0..h.len() {
                    h[j] += a[0] * r[0][j]
                        + a[1] * r[1][j]
                        + a[2] * r[2][j]
                        + a[3] * r[3][j]
                        + a[4] * r[4][j]
                        + a[5] * r[5][j]
                        + a[6] * r[6][j]
                        + a[7] * r[7][j];
                }
            } else {
                for xr in &xs {
                    let a = xr[i];
                    for (hv, xv) in h.iter_mut().zip(&xr[i..n]) {
                        *hv += a * xv;
                    }
                }
            }
        }
        t += k;
    }
}

/// Hessians by input key (see `input_key`), for the `blk.*` matrices only.
#[derive(Default)]
pub struct Hessians {
    pub map: BTreeMap<String, Hessian>,
}

impl std::fmt::Debug for Hessians {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The matrices are large: list the inputs and sizes only.
        f.debug_map()
            .entries(self.map.iter().map(|(k, h)| (k, (h.n, h.tokens))))
            .finish()
    }
}

impl Hessians {
    pub fn get(&self, weight: &str) -> Option<&Hessian> {
        self.map.get(&input_key(weight))
    }
}

/// Observer that accumulates the Hessians during forward passes.
pub struct HessianCollector {
    inner: Mutex<Hessians>,
    threads: usize,
}

impl HessianCollector {
    pub fn new(threads: usize) -> HessianCollector {
        HessianCollector {
            inner: Mutex::new(Hessians::default()),
            threads: threads.max(1),
        }
    }

    pub fn into_hessians(self) -> Hessians {
        self.inner.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

impl MatmulObserver for HessianCollector {
    fn observe(&self, weight: &str, x: &[f32], n: usize, cols: usize) {
        let base = weight.split('[').next().unwrap_or(weight);
        // Shared inputs are counted once (under the first matrix's name); slices of a fused
        // weight (name[r0..r1]) see the same input as their first slice.
        let key = input_key(base);
        let first_slice = !weight.contains('[') || weight.contains("[0..");
        if !base.starts_with("blk.") || key != base || !first_slice {
            return;
        }
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let h = m.map.entry(key).or_insert_with(|| Hessian::new(cols));
        if h.n != cols || x.len() < n * cols {
            return;
        }
        h.add(&x[..n * cols], n, self.threads);
    }
}

/// Runs `engine` over up to `max_chunks` chunks of `n_ctx` tokens of `text` (0 = all) and
/// collects the Hessians. `progress(done, total)` after each chunk.
pub fn collect(
    engine: &Engine,
    text: &str,
    n_ctx: usize,
    max_chunks: usize,
    threads: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Hessians, usize)> {
    let tokens = eval::tokenize_for_perplexity(engine, text)?;
    let available = tokens.len() / n_ctx.max(1);
    if n_ctx < 16 || available == 0 {
        return Err(CompressError::Invalid(format!(
            "calibration text has {} tokens; GPTQ needs at least one chunk of {n_ctx} (and chunks of at least 16)",
            tokens.len()
        )));
    }
    let n = if max_chunks == 0 {
        available
    } else {
        available.min(max_chunks)
    };
    let bos = engine
        .tokenizer
        .add_bos()
        .then(|| engine.tokenizer.bos())
        .flatten();
    let col = HessianCollector::new(threads);
    let mut session = engine.model.new_session(n_ctx, n_ctx);
    for c in 0..n {
        let mut chunk = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
        if let Some(b) = bos {
            chunk[0] = b;
        }
        session.reset();
        // Only the block matrices matter: one logit row keeps the output head cheap.
        engine
            .model
            .forward_observed(&mut session, &engine.pool, &chunk, n_ctx - 1, &col)?;
        progress(c + 1, n);
    }
    Ok((col.into_hessians(), n))
}
