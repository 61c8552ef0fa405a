//! `kestrel`: run, chat, tokenize, logits, perplexity, inspect, bench, serve, convert, quantize,
//! imatrix, kld, prune, lowrank, plan-split.

mod args;
mod commands;
mod models;
mod util;

use clap::{Parser, Subcommand};
use commands as c;

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
    Run(c::run::RunArgs),
    /// Interactive chat using the model's chat template; keeps the conversation.
    Chat(c::chat::ChatArgs),
    /// Print the token ids of a text.
    Tokenize(c::tokenize::TokenizeArgs),
    /// Print the top logits at every prompt position (the golden logits.json format).
    Logits(c::logits::LogitsArgs),
    /// Perplexity of a text file, computed as llama.cpp's llama-perplexity does.
    Perplexity(c::perplexity::PerplexityArgs),
    /// Show a GGUF file's metadata and tensor table.
    Inspect(c::inspect::InspectArgs),
    /// Measure prefill and decode speed, time to first token and peak memory (as llama-bench).
    Bench(c::bench::BenchArgs),
    /// OpenAI-compatible HTTP server (chat, completions, embeddings) with continuous batching.
    Serve(c::serve::ServeArgs),
    /// Write a copy of a model with its weights in F32, F16 or BF16.
    Convert(c::convert::ConvertArgs),
    /// Quantize a model (llama.cpp's block formats and type mixes), optionally with an importance matrix.
    Quantize(c::quantize::QuantizeArgs),
    /// Collect an importance matrix (mean squared matmul inputs) over calibration text.
    Imatrix(c::imatrix::ImatrixArgs),
    /// KL-divergence, top-1 agreement and perplexity of a model against a base model.
    Kld(c::kld::KldArgs),
    /// Prune the block matrices (magnitude or wanda; unstructured or N:M), or drop whole blocks / FFN channels.
    Prune(c::prune::PruneArgs),
    /// Profile per-layer compute and pick the device/server split layer for a network.
    PlanSplit(c::plan_split::PlanSplitArgs),
    /// Replace block weight matrices by two low-rank factors (truncated SVD), run as two matmuls.
    Lowrank(c::lowrank::LowrankArgs),
}

/// Writing to a closed pipe (`kestrel inspect --json MODEL | head`) ends the process quietly,
/// as it ends a C tool, instead of with a panic or an error message: Rust starts programs with
/// SIGPIPE ignored, so restore the default. Not for `serve`: a server must not die of a signal
/// a client's socket can cause (its sockets write with MSG_NOSIGNAL anyway).
#[cfg(unix)]
fn quiet_broken_pipes() {
    // SAFETY: setting a signal's disposition to the default is async-signal-safe and done
    // before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn quiet_broken_pipes() {}

fn main() {
    let cli = Cli::parse();
    if !matches!(cli.cmd, Cmd::Serve(_)) {
        quiet_broken_pipes();
    }
    if cli.no_repack {
        kestrel_model::set_repack_default(false);
    }
    let r = match cli.cmd {
        Cmd::Run(a) => c::run::run(a),
        Cmd::Chat(a) => c::chat::run(a),
        Cmd::Tokenize(a) => c::tokenize::run(a),
        Cmd::Logits(a) => c::logits::run(a),
        Cmd::Perplexity(a) => c::perplexity::run(a),
        Cmd::Inspect(a) => c::inspect::run(a),
        Cmd::Bench(a) => c::bench::run(a),
        Cmd::Serve(a) => c::serve::run(a),
        Cmd::Convert(a) => c::convert::run(a),
        Cmd::Quantize(a) => c::quantize::run(a),
        Cmd::Imatrix(a) => c::imatrix::run(a),
        Cmd::Kld(a) => c::kld::run(a),
        Cmd::Prune(a) => c::prune::run(a),
        Cmd::PlanSplit(a) => c::plan_split::run(a),
        Cmd::Lowrank(a) => c::lowrank::run(a),
    };
    if let Err(e) = r {
        eprintln!("kestrel: error: {e:#}");
        std::process::exit(1);
    }
}
