//! `kestrel lowrank`: replace block weight matrices by low-rank factor pairs (truncated SVD).

use crate::util::{human_bytes, human_count, Progress};
use clap::Args;
use kestrel_compress::imatrix::Imatrix;
use kestrel_compress::lowrank::{lowrank_file, LowrankOptions, LowrankReport, RankRule};
use kestrel_gguf::GgmlType;
use std::path::PathBuf;

#[derive(Args)]
pub struct LowrankArgs {
    /// Input GGUF (float weights recommended; never modified)
    input: PathBuf,
    /// Output GGUF (must not exist)
    output: PathBuf,
    /// Keep at most this rank per matrix
    #[arg(
        long = "rank",
        conflicts_with = "energy",
        required_unless_present = "energy"
    )]
    rank: Option<usize>,
    /// Keep the smallest rank holding this fraction (0, 1] of each matrix's squared singular values
    #[arg(long = "energy")]
    energy: Option<f64>,
    /// Comma-separated globs of the block matrices to factor, e.g. "ffn_*" or "attn_q*,attn_k*"
    /// (matched with and without the "blk.N." prefix) [default: all seven block matrices]
    #[arg(long = "tensors")]
    tensors: Option<String>,
    /// Importance matrix (kestrel imatrix): factor W diag(sqrt(E[x^2])) so the error is weighted
    /// by input size
    #[arg(long = "imatrix")]
    imatrix: Option<PathBuf>,
    /// Factor storage: f32, f16 or q8_0 (q8_0 rounds the rank up to a multiple of 32)
    #[arg(long = "type", default_value = "f32")]
    ty: String,
    /// Factor even matrices that would not get smaller (to check exactness at full rank)
    #[arg(long = "always")]
    always: bool,
    /// Worker threads [default: available cores]
    #[arg(short = 't', long = "threads")]
    threads: Option<usize>,
    /// Print a JSON summary
    #[arg(long = "json")]
    json: bool,
}

pub fn run(a: LowrankArgs) -> anyhow::Result<()> {
    let rule = match (a.rank, a.energy) {
        (Some(r), None) => RankRule::Rank(r),
        (None, Some(e)) => RankRule::Energy(e),
        _ => anyhow::bail!("give exactly one of --rank R or --energy E"),
    };
    let ty = match a.ty.to_ascii_lowercase().as_str() {
        "f32" => GgmlType::F32,
        "f16" => GgmlType::F16,
        "q8_0" => GgmlType::Q8_0,
        t => anyhow::bail!("--type {t}: expected f32, f16 or q8_0"),
    };
    let im = match &a.imatrix {
        Some(p) => Some(Imatrix::load(p)?),
        None => None,
    };
    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let opts = LowrankOptions {
        rule,
        tensors: a.tensors.clone(),
        ty,
        always: a.always,
        threads,
    };
    let mut bar = Progress::new("lowrank (SVD)", 1);
    let rep = lowrank_file(
        &a.input,
        &a.output,
        &opts,
        im.as_ref(),
        &mut |d, t, name| {
            bar.set_total(t);
            bar.update(d, name)
        },
    )?;
    let size = std::fs::metadata(&a.output).map(|m| m.len()).unwrap_or(0);
    print_report(&rep, &a, size);
    Ok(())
}

fn print_report(r: &LowrankReport, a: &LowrankArgs, size: u64) {
    if a.json {
        let fact: Vec<_> = r
            .factored
            .iter()
            .map(|f| {
                serde_json::json!({"name": f.name, "rows": f.rows, "cols": f.cols,
                    "rank": f.rank, "energy": f.energy})
            })
            .collect();
        let skipped: Vec<_> = r
            .skipped
            .iter()
            .map(|(n, rank)| serde_json::json!({"name": n, "rank": rank}))
            .collect();
        let mut v = serde_json::json!({
            "output": a.output.display().to_string(), "file_size": size,
            "params_before": r.params_before, "params_after": r.params_after,
            "factored": fact, "skipped": skipped,
        });
        v["peak_rss_bytes"] = crate::util::peak_rss_json();
        println!("{v}");
        return;
    }
    for f in &r.factored {
        println!(
            "{:<28} {:>5} x {:<5} rank {:>4}  energy {:.4}",
            f.name, f.rows, f.cols, f.rank, f.energy
        );
    }
    if !r.skipped.is_empty() {
        println!(
            "{} selected matrices left whole (their rank would save nothing)",
            r.skipped.len()
        );
    }
    let mean_e = r.factored.iter().map(|f| f.energy).sum::<f64>() / r.factored.len().max(1) as f64;
    println!(
        "wrote {} ({}): {} matrices factored (mean energy kept {:.4}), parameters {} -> {}",
        a.output.display(),
        human_bytes(size),
        r.factored.len(),
        mean_e,
        human_count(r.params_before),
        human_count(r.params_after)
    );
}
