//! Throughput measurement in the manner of llama-bench: a prompt of random tokens evaluated in
//! one go (prefill), then single-token decode steps on top of it, repeated after a warm-up.
//! With a depth, the context first holds that many random tokens (filled once, untimed, and
//! kept for every repetition, as llama-bench's `-d` does), and both figures are measured on top.

use crate::{EngineError, Result};
use kestrel_kernels::ThreadPool;
use kestrel_model::{Model, Session};
use std::time::Instant;

/// One benchmark configuration.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub n_prompt: usize,
    pub n_gen: usize,
    /// Tokens already in the context before the timed prompt (0: an empty context).
    pub n_depth: usize,
    pub reps: usize,
    /// Prompt tokens per forward micro-batch.
    pub n_batch: usize,
    /// Seeds the random prompt, so every run and every configuration sees the same tokens.
    pub seed: u64,
}

/// The timings of one repetition.
#[derive(Clone, Copy, Debug, Default)]
pub struct BenchSample {
    pub prefill_ms: f64,
    pub decode_ms: f64,
    /// Prefill plus choosing the first token.
    pub ttft_ms: f64,
}

/// Median and spread of one figure over the repetitions.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub stddev: f64,
}

impl Stat {
    pub fn of(xs: &[f64]) -> Stat {
        if xs.is_empty() {
            return Stat::default();
        }
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            0.5 * (v[n / 2 - 1] + v[n / 2])
        };
        let mean = v.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Stat {
            median,
            min: v[0],
            max: v[n - 1],
            stddev: var.sqrt(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct BenchResult {
    pub samples: Vec<BenchSample>,
    pub prefill_tps: Stat,
    pub decode_tps: Stat,
    pub ttft_ms: Stat,
    /// The one untimed fill of the context to `n_depth` tokens (0 without a depth).
    pub depth_fill_ms: f64,
}

/// A small deterministic generator for the prompt (xorshift64*): the tokens only need to be
/// spread over the vocabulary, not to be good random numbers.
fn random_tokens(n: usize, n_vocab: usize, seed: u64) -> Vec<u32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize as u32 % n_vocab as u32
        })
        .collect()
}

fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
}

/// One repetition: go back to the first `depth` positions of the sequence (0: a fresh one), prefill
/// `prompt` on top, then decode `n_gen` tokens greedily.
fn run_once(
    model: &Model,
    pool: &ThreadPool,
    s: &mut Session,
    depth: usize,
    prompt: &[u32],
    n_gen: usize,
) -> Result<BenchSample> {
    if depth == 0 {
        s.reset();
    } else {
        s.truncate(depth);
    }
    let mut out = BenchSample::default();
    let t0 = Instant::now();
    let mut next = prompt.first().copied().unwrap_or(0);
    if !prompt.is_empty() {
        model.forward(s, pool, prompt, prompt.len() - 1)?;
        out.prefill_ms = t0.elapsed().as_secs_f64() * 1e3;
        next = argmax(s.last_logits());
        out.ttft_ms = t0.elapsed().as_secs_f64() * 1e3;
    }
    let t1 = Instant::now();
    for _ in 0..n_gen {
        model.forward(s, pool, &[next], 0)?;
        next = argmax(s.last_logits());
    }
    out.decode_ms = t1.elapsed().as_secs_f64() * 1e3;
    Ok(out)
}

/// Run `cfg.reps` timed repetitions after one warm-up. `on_rep` sees each repetition's index as
/// it finishes (for progress display).
pub fn run(
    model: &Model,
    pool: &ThreadPool,
    cfg: &BenchConfig,
    on_rep: &mut dyn FnMut(usize),
) -> Result<BenchResult> {
    let hp = model.hparams();
    if cfg.n_prompt == 0 && cfg.n_gen == 0 {
        return Err(EngineError::Invalid(
            "nothing to measure: both the prompt and generation lengths are 0".into(),
        ));
    }
    if cfg.reps == 0 {
        return Err(EngineError::Invalid(
            "repetitions must be at least 1".into(),
        ));
    }
    // The context holds exactly what the test needs (as llama-bench sizes its own).
    let n_ctx = cfg.n_depth + cfg.n_prompt.max(1) + cfg.n_gen;
    if n_ctx > hp.n_ctx_train {
        let what = if cfg.n_depth > 0 {
            "depth + prompt + generation"
        } else {
            "prompt + generation"
        };
        return Err(EngineError::Invalid(format!(
            "{what} = {n_ctx} tokens exceeds the model's training context {}",
            hp.n_ctx_train
        )));
    }
    let prompt = random_tokens(cfg.n_prompt, hp.n_vocab, cfg.seed);
    let mut s = model.new_session(n_ctx, cfg.n_batch.max(1));
    let mut depth_fill_ms = 0.0;
    if cfg.n_depth > 0 {
        // Different tokens from the prompt's, so the prompt does not repeat its own context.
        let fill = random_tokens(cfg.n_depth, hp.n_vocab, cfg.seed ^ 0x6465_7074_68);
        let t0 = Instant::now();
        model.forward(&mut s, pool, &fill, fill.len() - 1)?;
        depth_fill_ms = t0.elapsed().as_secs_f64() * 1e3;
    }
    run_once(model, pool, &mut s, cfg.n_depth, &prompt, cfg.n_gen.min(4))?;
    let mut samples = Vec::with_capacity(cfg.reps);
    for r in 0..cfg.reps {
        samples.push(run_once(
            model,
            pool,
            &mut s,
            cfg.n_depth,
            &prompt,
            cfg.n_gen,
        )?);
        on_rep(r);
    }
    let tps = |n: usize, ms: f64| if ms > 0.0 { n as f64 * 1e3 / ms } else { 0.0 };
    let pre: Vec<f64> = samples
        .iter()
        .map(|x| tps(cfg.n_prompt, x.prefill_ms))
        .collect();
    let dec: Vec<f64> = samples
        .iter()
        .map(|x| tps(cfg.n_gen, x.decode_ms))
        .collect();
    let ttft: Vec<f64> = samples.iter().map(|x| x.ttft_ms).collect();
    Ok(BenchResult {
        prefill_tps: Stat::of(&pre),
        decode_tps: Stat::of(&dec),
        ttft_ms: Stat::of(&ttft),
        depth_fill_ms,
        samples,
    })
}

/// The weight bytes one decode step reads: every matrix of the layers and the output head, in
/// the layout the matmuls use (the embedding table only for one row, so not counted unless it
/// is the tied head), plus the f16 KV cache of `ctx` positions.
pub fn decode_bytes_per_token(model: &Model, ctx: usize) -> u64 {
    let mut bytes: u64 = weight_slices(model).iter().map(|s| s.len() as u64).sum();
    let hp = &model.dec.hp;
    bytes += (hp.n_layer * (hp.n_embd_k() + hp.n_embd_v()) * 2 * ctx) as u64;
    bytes
}

/// The matrices one decode step reads, as byte slices (see [`decode_bytes_per_token`]).
fn weight_slices(model: &Model) -> Vec<&[u8]> {
    let (g, d) = (&*model.gguf, &model.dec);
    let mut v = Vec::new();
    for l in &d.layers {
        for lin in l.linears() {
            v.push(lin.w.view(g).data);
            if let Some(a) = &lin.a {
                v.push(a.view(g).data);
            }
        }
    }
    v.push(d.output.view(g).data);
    v
}

/// Read bandwidth of this machine with `pool`'s threads, in bytes per second: each thread sums
/// its share of the model's weights (what decode reads, already resident), best of 3 passes.
/// Decode tok/s times [`decode_bytes_per_token`] over this is how close decode runs to memory
/// speed.
pub fn read_bandwidth(model: &Model, pool: &ThreadPool) -> f64 {
    let slices = weight_slices(model);
    let total: usize = slices.iter().map(|s| s.len()).sum();
    let sink = std::sync::atomic::AtomicU64::new(0);
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        pool.run(&|tid, nt| {
            let mut acc = [0u64; 4];
            for s in &slices {
                let (lo, hi) = (
                    s.len() * tid / nt / 32 * 32,
                    s.len() * (tid + 1) / nt / 32 * 32,
                );
                for c in s[lo..hi].chunks_exact(32) {
                    for (k, a) in acc.iter_mut().enumerate() {
                        let w = u64::from_le_bytes(c[8 * k..8 * k + 8].try_into().unwrap());
                        *a = a.wrapping_add(w);
                    }
                }
            }
            // Keeps the sums (so the reads) from being optimized away.
            sink.fetch_add(
                acc.iter().fold(0, |x, &y| x ^ y),
                std::sync::atomic::Ordering::Relaxed,
            );
        });
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(sink.load(std::sync::atomic::Ordering::Relaxed));
    total as f64 / best
}

/// The process's peak resident set so far (VmHWM), where the OS reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_median_and_spread() {
        let s = Stat::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert!((s.stddev - 1.0).abs() < 1e-12);
        assert_eq!(Stat::of(&[1.0, 2.0, 3.0, 10.0]).median, 2.5);
        assert_eq!(Stat::of(&[]), Stat::default());
    }

    #[test]
    fn random_prompt_is_deterministic_and_in_range() {
        let a = random_tokens(1000, 49152, 7);
        assert_eq!(a, random_tokens(1000, 49152, 7));
        assert!(a.iter().all(|&t| t < 49152));
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert!(distinct.len() > 900, "{} distinct of 1000", distinct.len());
    }

    #[test]
    fn peak_rss_is_reported_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_bytes().unwrap() > 1 << 20);
        }
    }
}
