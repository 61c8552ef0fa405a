//! `kestrel prune --drop-layers N | --ffn-keep F --calib TEXT`: structured pruning (whole blocks
//! or FFN channels), which makes the model smaller rather than sparse.

use crate::args::EvalArgs;
use crate::util::{human_bytes, human_count, Progress};
use anyhow::Context;
use clap::Args;
use kestrel_compress::gptq;
use kestrel_compress::prune::{Pattern, PruneReport};
use kestrel_compress::sparsegpt::sparsegpt_file;
use kestrel_compress::structured::{structured_prune, Options};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct StructuredArgs {
    /// Remove the N blocks whose input and output hidden states are most alike on --calib text
    #[arg(long = "drop-layers")]
    pub drop_layers: Option<usize>,
    /// Keep this fraction of every block's FFN channels (highest activation-weighted importance)
    #[arg(long = "ffn-keep")]
    pub ffn_keep: Option<f32>,
    /// --ffn-keep rounds the kept channel count to a multiple of this (256: whole k-quant
    /// blocks; 32: legacy Q4_0/Q8_0 blocks)
    #[arg(long = "ffn-multiple", default_value_t = 256)]
    pub ffn_multiple: usize,
    /// Calibration text for --drop-layers / --ffn-keep / --method sparsegpt
    #[arg(long = "calib")]
    pub calib: Option<PathBuf>,
    /// Calibration chunks to use (0 = all)
    #[arg(long = "chunks", default_value_t = 8)]
    pub chunks: usize,
    #[command(flatten)]
    pub eval: EvalArgs,
}

impl StructuredArgs {
    pub fn requested(&self) -> bool {
        self.drop_layers.is_some() || self.ffn_keep.is_some()
    }
}

/// What every calibrated pass needs first: an output path that does not exist yet, the
/// calibration text (`who` names the option that needs it) and the input model, loaded.
fn calibration(
    input: &Path,
    output: &Path,
    a: &StructuredArgs,
    who: &str,
) -> anyhow::Result<(kestrel_engine::Engine, String)> {
    let calib = a
        .calib
        .as_ref()
        .with_context(|| format!("{who} --calib TEXT (calibration text to run the model over)"))?;
    anyhow::ensure!(
        !output.exists(),
        "{} already exists; refusing to overwrite it (remove it first or pick another name)",
        output.display()
    );
    let text =
        std::fs::read_to_string(calib).with_context(|| format!("reading {}", calib.display()))?;
    let engine = a.eval.load(Some(input.to_path_buf()))?;
    Ok((engine, text))
}

pub fn run(input: &Path, output: &Path, a: &StructuredArgs, json: bool) -> anyhow::Result<()> {
    let (engine, text) = calibration(input, output, a, "--drop-layers / --ffn-keep need")?;
    let o = Options {
        drop_layers: a.drop_layers.unwrap_or(0),
        ffn_keep: a.ffn_keep,
        ffn_multiple: a.ffn_multiple,
        n_ctx: a.eval.ctx,
        max_chunks: a.chunks,
    };
    let mut bar = Progress::new("calibrate", 1);
    let r = structured_prune(&engine, input, output, &text, &o, &mut |step, d, t| {
        bar.set_total(t);
        bar.update(d, step)
    })?;
    drop(bar);
    let size = std::fs::metadata(output).map(|m| m.len()).unwrap_or(0);
    if json {
        let mut v = serde_json::json!({
            "output": output.display().to_string(),
            "calibration_chunks": r.chunks,
            "block_similarity": r.similarity,
            "dropped_layers": r.dropped,
            "n_ff": r.n_ff,
            "n_ff_kept": r.n_ff_kept,
            "tensors": r.write.tensors,
            "params_before": r.write.params_before,
            "params_after": r.write.params_after,
            "file_size": size,
        });
        v["peak_rss_bytes"] = crate::util::peak_rss_json();
        println!("{v}");
    } else {
        if !r.similarity.is_empty() {
            let sims: Vec<String> = r.similarity.iter().map(|s| format!("{s:.3}")).collect();
            println!("block input/output cosine: {}", sims.join(" "));
            println!("dropped blocks: {:?}", r.dropped);
        }
        if let Some(k) = r.n_ff_kept {
            println!("FFN channels: kept {k} of {} per block", r.n_ff);
        }
        println!(
            "wrote {} ({}): {} tensors, {} -> {} parameters",
            output.display(),
            human_bytes(size),
            r.write.tensors,
            human_count(r.write.params_before),
            human_count(r.write.params_after)
        );
    }
    Ok(())
}

/// `--method sparsegpt`: Hessians from the calibration text, then the SparseGPT sweep.
pub fn run_sparsegpt(
    input: &Path,
    output: &Path,
    pattern: Pattern,
    a: &StructuredArgs,
) -> anyhow::Result<PruneReport> {
    let (engine, text) = calibration(input, output, a, "--method sparsegpt needs")?;
    let threads = a
        .eval
        .threads
        .unwrap_or_else(kestrel_engine::default_threads);
    let (h, _) =
        crate::commands::quantize::calibrate(&engine, &text, a.eval.ctx, a.chunks, threads)?;
    drop(engine);
    let mut bar = Progress::new("sparsegpt", 1);
    Ok(sparsegpt_file(
        input,
        output,
        pattern,
        &h,
        gptq::DEFAULT_DAMP,
        threads,
        &mut |d, t, _| {
            bar.set_total(t);
            bar.update(d, "")
        },
    )?)
}
