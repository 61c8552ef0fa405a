//! `kestrel bench`: prefill and decode speed, time to first token and peak memory.

mod speculative;

use crate::args::SpecArgs;
use crate::models;
use crate::util::{human_bytes, human_count};
use anyhow::{ensure, Context};
use clap::Args;
use kestrel_engine::bench::{self, BenchConfig, Stat};
use kestrel_kernels::ThreadPool;
use kestrel_model::Model;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

#[derive(Args)]
pub struct BenchArgs {
    /// GGUF model file; repeat for several [default: SmolLM2-135M-Instruct Q4_1, fetched into the cache if missing]
    #[arg(short = 'm', long = "model")]
    models: Vec<PathBuf>,
    /// Prompt lengths to measure prefill on (comma-separated; 0 skips prefill)
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "512"
    )]
    n_prompt: Vec<usize>,
    /// Tokens to decode after the prompt (comma-separated; 0 skips decode)
    #[arg(
        short = 'n',
        long = "n-gen",
        value_delimiter = ',',
        default_value = "128"
    )]
    n_gen: Vec<usize>,
    /// Context depths (comma-separated): random tokens put into the context, untimed and once
    /// per configuration (as llama-bench's -d), before the timed prompt and decode; with -p 0,
    /// decode tok/s is for -n tokens after a context of D tokens
    #[arg(
        short = 'd',
        long = "depth",
        value_delimiter = ',',
        default_value = "0"
    )]
    depth: Vec<usize>,
    /// Thread counts (comma-separated) [default: available cores]
    #[arg(short = 't', long = "threads", value_delimiter = ',')]
    threads: Vec<usize>,
    /// Timed repetitions per configuration, after one warm-up
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    reps: usize,
    /// Prompt tokens per forward micro-batch
    #[arg(short = 'b', long = "batch", default_value_t = 512)]
    batch: usize,
    /// Print one JSON object per configuration (JSON lines) instead of a Markdown table
    #[arg(long = "json")]
    json: bool,
    /// With a drafter, also decode real prompts greedily with and without speculation
    #[command(flatten)]
    spec: SpecArgs,
    /// Prompt for the speculative benchmark (repeatable) [default: a summary, code, a chat answer]
    #[arg(long = "spec-prompt")]
    spec_prompts: Vec<String>,
}

/// Tensor bytes and parameter count, as llama-bench reports them.
fn model_size(m: &Model) -> (u64, u64) {
    let g = &m.gguf;
    g.tensors().iter().fold((0, 0), |(b, p), t| {
        (b + g.tensor_data(t).len() as u64, p + t.n_elements())
    })
}

fn cell(s: &Stat) -> String {
    format!("{:.2} ± {:.2}", s.median, s.stddev)
}

pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    ensure!(a.reps >= 1, "--repetitions must be at least 1");
    ensure!(a.batch >= 1, "--batch must be at least 1");
    let threads = if a.threads.is_empty() {
        vec![kestrel_engine::default_threads()]
    } else {
        a.threads.clone()
    };
    for &t in &threads {
        ensure!(
            (1..=1024).contains(&t),
            "--threads must be between 1 and 1024, got {t}"
        );
    }
    let paths = if a.models.is_empty() {
        vec![models::resolve(None)?]
    } else {
        a.models
            .iter()
            .map(|p| models::resolve(Some(p)))
            .collect::<anyhow::Result<_>>()?
    };
    let mut out = std::io::stdout().lock();
    if !a.json {
        writeln!(
            out,
            "| model | size | params | threads | test | t/s | ttft ms | peak RSS |"
        )?;
        writeln!(
            out,
            "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |"
        )?;
    }
    let tty = std::io::stderr().is_terminal();
    // Each depth with each prompt length (depth-major, as llama-bench orders its tests).
    let depth_prompt: Vec<(usize, usize)> = a
        .depth
        .iter()
        .flat_map(|&d| a.n_prompt.iter().map(move |&p| (d, p)))
        .collect();
    for path in &paths {
        let t_load = std::time::Instant::now();
        let model = Model::load(path).with_context(|| format!("loading {}", path.display()))?;
        let load_ms = t_load.elapsed().as_secs_f64() * 1e3;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let rp = model.repack;
        if !a.json {
            eprintln!(
                "{name}: loaded in {load_ms:.0} ms; repacked {} matrices ({}) in {:.0} ms",
                rp.matrices,
                human_bytes(rp.bytes as u64),
                rp.seconds * 1e3
            );
        }
        let (size, params) = model_size(&model);
        for &t in &threads {
            let pool = ThreadPool::new(t);
            // Memory read speed with these threads, over the weights decode reads.
            let bw = bench::read_bandwidth(&model, &pool);
            for &(nd, np) in &depth_prompt {
                for &ng in &a.n_gen {
                    let cfg = BenchConfig {
                        n_prompt: np,
                        n_gen: ng,
                        n_depth: nd,
                        reps: a.reps,
                        n_batch: a.batch,
                        seed: 0x6b65_7374,
                    };
                    let label = match nd {
                        0 => format!("{name} t={t} p={np} n={ng}"),
                        _ => format!("{name} t={t} d={nd} p={np} n={ng}"),
                    };
                    let r = bench::run(&model, &pool, &cfg, &mut |i| {
                        if tty {
                            eprint!("\r{label}: repetition {}/{}", i + 1, cfg.reps);
                        }
                    })?;
                    if tty {
                        eprint!("\r\x1b[2K");
                    }
                    let rss = bench::peak_rss_bytes();
                    // Decode's share of that speed, at its context depth.
                    let per_tok = bench::decode_bytes_per_token(&model, nd + np + ng / 2);
                    let bw_frac = r.decode_tps.median * per_tok as f64 / bw;
                    if a.json {
                        let st = |s: &Stat| serde_json::json!({"median": s.median, "min": s.min, "max": s.max, "stddev": s.stddev});
                        let v = serde_json::json!({
                            "model": name,
                            "model_path": path.display().to_string(),
                            "model_size_bytes": size,
                            "n_params": params,
                            "threads": t,
                            "n_prompt": np,
                            "n_gen": ng,
                            "depth": nd,
                            "depth_fill_ms": r.depth_fill_ms,
                            "n_batch": a.batch,
                            "repetitions": a.reps,
                            "prefill_tps": r.prefill_tps.median,
                            "decode_tps": r.decode_tps.median,
                            "ttft_ms": r.ttft_ms.median,
                            "peak_rss_bytes": rss,
                            "prefill": st(&r.prefill_tps),
                            "decode": st(&r.decode_tps),
                            "ttft": st(&r.ttft_ms),
                            "isa": kestrel_kernels::kernels().isa(),
                            "load_ms": load_ms,
                            "mem_read_bytes_per_s": bw,
                            "decode_bytes_per_token": per_tok,
                            "decode_bw_fraction": bw_frac,
                            "repacked_matrices": rp.matrices,
                            "repacked_bytes": rp.bytes,
                            "repack_ms": rp.seconds * 1e3,
                            "kestrel_version": env!("CARGO_PKG_VERSION"),
                        });
                        writeln!(out, "{v}")?;
                    } else {
                        let rss = rss.map(human_bytes).unwrap_or_else(|| "?".into());
                        let head = format!(
                            "| {name} | {} | {} | {t} |",
                            human_bytes(size),
                            human_count(params)
                        );
                        if np > 0 {
                            let at = if nd > 0 {
                                format!(" @ d{nd}")
                            } else {
                                String::new()
                            };
                            writeln!(
                                out,
                                "{head} pp{np}{at} | {} | {:.1} | {rss} |",
                                cell(&r.prefill_tps),
                                r.ttft_ms.median
                            )?;
                        }
                        if ng > 0 {
                            let at = if nd + np > 0 {
                                format!(" @ d{}", nd + np)
                            } else {
                                String::new()
                            };
                            writeln!(
                                out,
                                "{head} tg{ng}{at} | {} | | {rss} |",
                                cell(&r.decode_tps)
                            )?;
                            eprintln!(
                                "  decode reads {}/token: {}/s, {:.0}% of the {}/s this machine reads with {t} threads",
                                human_bytes(per_tok),
                                human_bytes((r.decode_tps.median * per_tok as f64) as u64),
                                100.0 * bw_frac,
                                human_bytes(bw as u64)
                            );
                        }
                    }
                    out.flush()?;
                }
            }
        }
    }
    if a.spec.enabled() {
        let b = speculative::SpecBench {
            spec: &a.spec,
            prompts: &a.spec_prompts,
            n_gen: a.n_gen.iter().copied().max().unwrap_or(128).max(1),
            reps: a.reps,
            threads: threads[0],
            json: a.json,
        };
        for path in &paths {
            speculative::run(&b, path, &mut out)?;
        }
    }
    Ok(())
}
