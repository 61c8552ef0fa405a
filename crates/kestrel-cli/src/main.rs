//! `kestrel`: run, chat, tokenize, logits, perplexity, inspect, bench, serve, convert, quantize,
//! imatrix, kld, prune, lowrank, plan-split.

mod bench_spec;
mod cmd_bench;
mod cmd_chat;
mod cmd_imatrix;
mod cmd_inspect;
mod cmd_kld;
mod cmd_logits;
mod cmd_lowrank;
mod cmd_perplexity;
mod cmd_plan_split;
mod cmd_prune;
mod cmd_prune_structured;
mod cmd_quantize;
mod cmd_quantize_budget;
mod cmd_run;
mod cmd_serve;
mod cmd_split;
mod cmd_tokenize;
mod models;
mod route_args;
mod run_route;
mod run_verify;
mod spec_args;
mod util;

use clap::{Args, Parser, Subcommand};
use kestrel_engine::{Engine, EngineConfig, SamplerConfig};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "kestrel",
    version,
    about = "On-device language-model engine: run GGUF models fast on the CPU."
)]
struct Cli {
    /// Keep the weights in the file's layout instead of repacking Q4_K / Q6_K / Q4_0 / Q8_0
    /// matrices into 8-row interleaved panels at load (slower; the same bits except Q4_0, whose
    /// repacked kernels sum in the scalar order; also KESTREL_NO_REPACK=1).
    #[arg(long, global = true)]
    no_repack: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate a continuation of a prompt, streamed to stdout.
    Run(cmd_run::RunArgs),
    /// Interactive chat using the model's chat template; keeps the conversation.
    Chat(cmd_chat::ChatArgs),
    /// Print the token ids of a text.
    Tokenize(cmd_tokenize::TokenizeArgs),
    /// Print the top logits at every prompt position (the golden logits.json format).
    Logits(cmd_logits::LogitsArgs),
    /// Perplexity of a text file, computed as llama.cpp's llama-perplexity does.
    Perplexity(cmd_perplexity::PerplexityArgs),
    /// Show a GGUF file's metadata and tensor table.
    Inspect(cmd_inspect::InspectArgs),
    /// Measure prefill and decode speed, time to first token and peak memory (as llama-bench).
    Bench(cmd_bench::BenchArgs),
    /// OpenAI-compatible HTTP server (chat, completions, embeddings) with continuous batching.
    Serve(cmd_serve::ServeArgs),
    /// Write a copy of a model with its weights in F32, F16 or BF16.
    Convert(cmd_quantize::ConvertArgs),
    /// Quantize a model (llama.cpp's block formats and type mixes), optionally with an importance matrix.
    Quantize(cmd_quantize::QuantizeArgs),
    /// Collect an importance matrix (mean squared matmul inputs) over calibration text.
    Imatrix(cmd_imatrix::ImatrixArgs),
    /// KL-divergence, top-1 agreement and perplexity of a model against a base model.
    Kld(cmd_kld::KldArgs),
    /// Prune the block matrices (magnitude or wanda; unstructured or N:M), or drop whole blocks / FFN channels.
    Prune(cmd_prune::PruneArgs),
    /// Profile per-layer compute and pick the device/server split layer for a network.
    PlanSplit(cmd_plan_split::PlanSplitArgs),
    /// Replace block weight matrices by two low-rank factors (truncated SVD), run as two matmuls.
    Lowrank(cmd_lowrank::LowrankArgs),
}

/// Options shared by every verb that loads a model.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// GGUF model file [default: SmolLM2-135M-Instruct Q4_1, fetched into the cache if missing]
    #[arg(short = 'm', long = "model")]
    pub model: Option<PathBuf>,
    /// Threads for the forward pass [default: available cores]
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Context length in tokens [default: min(training context, 4096)]
    #[arg(short = 'c', long = "ctx")]
    pub ctx: Option<usize>,
    /// Prompt tokens per forward micro-batch
    #[arg(short = 'b', long = "batch", default_value_t = 512)]
    pub batch: usize,
}

impl ModelArgs {
    pub fn load(&self) -> anyhow::Result<Engine> {
        if let Some(t) = self.threads {
            anyhow::ensure!(
                (1..=1024).contains(&t),
                "--threads must be between 1 and 1024, got {t}"
            );
        }
        let path = models::resolve(self.model.as_deref())?;
        let cfg = EngineConfig {
            // 0 asks the engine for its default.
            n_ctx: self.ctx.unwrap_or(0),
            n_batch: self.batch,
            n_threads: self.threads.unwrap_or_else(kestrel_engine::default_threads),
        };
        Engine::load(&path, &cfg).map_err(|e| anyhow::anyhow!("loading {}: {e}", path.display()))
    }
}

/// Sampling options shared by run and chat.
#[derive(Args, Clone, Debug)]
pub struct SampleArgs {
    /// Temperature; 0 is greedy
    #[arg(long = "temp", default_value_t = 0.8, allow_negative_numbers = true)]
    pub temp: f32,
    /// Keep the k most likely tokens (0 = off)
    #[arg(long = "top-k", default_value_t = 40)]
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1 = off)
    #[arg(long = "top-p", default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than min-p times the best one (0 = off)
    #[arg(long = "min-p", default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalize recently seen tokens (1 = off)
    #[arg(long = "repeat-penalty", default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// How many recent tokens the repeat penalty considers
    #[arg(long = "repeat-last-n", default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Random seed [default: from the clock]
    #[arg(short = 's', long = "seed")]
    pub seed: Option<u64>,
}

impl SampleArgs {
    pub fn config(&self) -> SamplerConfig {
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        });
        SamplerConfig {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            seed,
        }
    }
}

fn main() {
    let cli = Cli::parse();
    if cli.no_repack {
        kestrel_model::set_repack_default(false);
    }
    let r = match cli.cmd {
        Cmd::Run(a) => cmd_run::run(a),
        Cmd::Chat(a) => cmd_chat::run(a),
        Cmd::Tokenize(a) => cmd_tokenize::run(a),
        Cmd::Logits(a) => cmd_logits::run(a),
        Cmd::Perplexity(a) => cmd_perplexity::run(a),
        Cmd::Inspect(a) => cmd_inspect::run(a),
        Cmd::Bench(a) => cmd_bench::run(a),
        Cmd::Serve(a) => cmd_serve::run(a),
        Cmd::Convert(a) => cmd_quantize::run_convert(a),
        Cmd::Quantize(a) => cmd_quantize::run_quantize(a),
        Cmd::Imatrix(a) => cmd_imatrix::run(a),
        Cmd::Kld(a) => cmd_kld::run(a),
        Cmd::Prune(a) => cmd_prune::run(a),
        Cmd::PlanSplit(a) => cmd_plan_split::run(a),
        Cmd::Lowrank(a) => cmd_lowrank::run(a),
    };
    if let Err(e) = r {
        eprintln!("kestrel: error: {e:#}");
        std::process::exit(1);
    }
}
