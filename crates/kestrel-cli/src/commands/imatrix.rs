//! `kestrel imatrix`: collect an importance matrix over calibration text.

use crate::args::EvalArgs;
use crate::util::Progress;
use anyhow::Context;
use clap::Args;
use kestrel_compress::imatrix::collect;
use std::path::PathBuf;

#[derive(Args)]
pub struct ImatrixArgs {
    /// GGUF model file [default: SmolLM2-135M-Instruct Q4_1, fetched into the cache if missing]
    #[arg(short = 'm', long = "model")]
    model: Option<PathBuf>,
    /// Calibration text
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// Output file (llama.cpp's GGUF imatrix format; must not exist)
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
    #[command(flatten)]
    eval: EvalArgs,
    /// Use at most this many chunks (0 = all)
    #[arg(long = "chunks", default_value_t = 0)]
    chunks: usize,
}

pub fn run(a: ImatrixArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !a.output.exists(),
        "{} already exists; refusing to overwrite it",
        a.output.display()
    );
    let engine = a.eval.load(a.model.clone())?;
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    let mut bar = Progress::new("imatrix", 1);
    let im = collect(
        &engine,
        &text,
        &a.file,
        a.eval.ctx,
        a.chunks,
        &mut |d, t| {
            bar.set_total(t);
            bar.update(d, "")
        },
    )?;
    im.save(&a.output)?;
    println!(
        "wrote {}: {} matrices from {} chunks of {} tokens",
        a.output.display(),
        im.entries.len(),
        im.chunk_count,
        im.chunk_size
    );
    eprintln!("[{}]", crate::util::peak_rss_text());
    Ok(())
}
