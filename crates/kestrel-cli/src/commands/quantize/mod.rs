//! `kestrel quantize`: write a copy of a model with its weights quantized.

mod budget;

use crate::args::EvalArgs;
use crate::util::{human_bytes, human_count, Progress};
use anyhow::Context;
use clap::Args;
use kestrel_compress::gptq::{self, Hessians};
use kestrel_compress::imatrix::Imatrix;
use kestrel_compress::quantize::{quantize_file, Method, QuantizeOptions, Report};
use kestrel_compress::Ftype;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct QuantizeArgs {
    /// Input GGUF, ideally F32/F16 (never modified)
    input: PathBuf,
    /// Output GGUF (must not exist)
    output: PathBuf,
    /// Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_S/M/L, Q4_K_S/M, Q5_K_S/M, Q6_K (Q3_K, Q4_K,
    /// Q5_K mean the _M mixes), or F32/F16/BF16
    #[arg(long = "type", required_unless_present_any = ["target_bpw", "target_size"])]
    ty: Option<String>,
    /// Importance matrix (GGUF, from `kestrel imatrix` or llama-imatrix) to weight rounding errors
    #[arg(long = "imatrix")]
    imatrix: Option<PathBuf>,
    /// rtn: round to nearest (importance-weighted with --imatrix); awq: activation-aware
    /// channel scaling searched per layer, then rounding (needs --imatrix); gptq: column-by-
    /// column rounding with error compensation from calibration Hessians (needs --calib)
    #[arg(long = "method", default_value = "rtn")]
    method: String,
    /// Calibration text for --method gptq or --target-bpw/--target-size (the input model is run over it)
    #[arg(long = "calib")]
    calib: Option<PathBuf>,
    /// GPTQ: calibration chunks to use (0 = all)
    #[arg(long = "chunks", default_value_t = 16)]
    chunks: usize,
    #[command(flatten)]
    eval: EvalArgs,
    /// GPTQ: damping, as a fraction of the mean Hessian diagonal
    #[arg(long = "damp", default_value_t = kestrel_compress::gptq::DEFAULT_DAMP)]
    damp: f64,
    /// The base type for every quantized tensor, no llama.cpp-style mix
    #[arg(long = "pure")]
    pure: bool,
    /// Print a JSON summary
    #[arg(long = "json")]
    json: bool,
    /// List every tensor's new type
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    #[command(flatten)]
    budget: budget::BudgetArgs,
}

pub fn run(a: QuantizeArgs) -> anyhow::Result<()> {
    if let Some(budget) = a.budget.budget()? {
        anyhow::ensure!(
            a.ty.is_none() && a.method == "rtn" && !a.pure,
            "--target-bpw / --target-size choose the types themselves (round to nearest, \
             importance-weighted with --imatrix): --type, --method and --pure do not apply"
        );
        let c = budget::Common {
            input: &a.input,
            output: &a.output,
            imatrix: a.imatrix.as_ref(),
            calib: a.calib.as_ref(),
            // 0: the available cores.
            threads: a.eval.threads.unwrap_or(0),
            verbose: a.verbose,
        };
        let (r, ftype) = budget::run(c, &a.budget, budget)?;
        summary(&r, ftype, &a.output, a.json, false);
        return Ok(());
    }
    let ftype = Ftype::parse(a.ty.as_deref().unwrap_or_default())?;
    let method = Method::parse(&a.method)?;
    let im = match &a.imatrix {
        Some(p) => Some(Imatrix::load(p)?),
        None => None,
    };
    anyhow::ensure!(
        a.calib.is_none() || method == Method::Gptq,
        "--calib is only used by --method gptq (other methods take --imatrix)"
    );
    anyhow::ensure!(
        a.damp > 0.0 && a.damp.is_finite(),
        "--damp must be a positive number, got {}",
        a.damp
    );
    let hessians = match (method, &a.calib) {
        (Method::Gptq, None) => {
            anyhow::bail!(
                "--method gptq needs --calib TEXT (calibration text to run the model over)"
            )
        }
        (Method::Gptq, Some(calib)) => Some(gptq_hessians(&a, calib)?),
        _ => None,
    };
    let opts = QuantizeOptions {
        method,
        pure: a.pure,
        imatrix: im.as_ref(),
        threads: a.eval.threads.unwrap_or(0),
        hessians: hessians.as_ref(),
        damp: a.damp,
        types: None,
    };
    let mut bar = Progress::new("quantize", 1);
    let r = quantize_file(&a.input, &a.output, ftype, &opts, &mut |d, t, _| {
        bar.set_total(t);
        bar.update(d, "")
    })
    .with_context(|| format!("quantizing {}", a.input.display()))?;
    summary(&r, ftype, &a.output, a.json, a.verbose);
    Ok(())
}

/// Runs the input model over the calibration text and collects the block matrices' Hessians.
fn gptq_hessians(a: &QuantizeArgs, calib: &Path) -> anyhow::Result<Hessians> {
    // Refuse a taken output path before the long calibration run.
    anyhow::ensure!(
        !a.output.exists(),
        "{} already exists; refusing to overwrite it (remove it first or pick another name)",
        a.output.display()
    );
    let threads = a.eval.threads.filter(|&t| t > 0);
    let eval = EvalArgs { threads, ..a.eval };
    let engine = eval.load(Some(a.input.clone()))?;
    let text =
        std::fs::read_to_string(calib).with_context(|| format!("reading {}", calib.display()))?;
    let threads = threads.unwrap_or_else(kestrel_engine::default_threads);
    let (h, chunks) = calibrate(&engine, &text, a.eval.ctx, a.chunks, threads)?;
    eprintln!(
        "GPTQ: Hessians of {} inputs from {chunks} chunks of {} tokens",
        h.map.len(),
        a.eval.ctx
    );
    Ok(h)
}

/// GPTQ's (and SparseGPT's) Hessians of every block matrix's inputs over `chunks` chunks of
/// `ctx` tokens of `text` (0: all), with a progress bar; also the chunks used.
pub(crate) fn calibrate(
    engine: &kestrel_engine::Engine,
    text: &str,
    ctx: usize,
    chunks: usize,
    threads: usize,
) -> anyhow::Result<(Hessians, usize)> {
    let mut bar = Progress::new("calibrate", 1);
    Ok(gptq::collect(
        engine,
        text,
        ctx,
        chunks,
        threads,
        &mut |d, t| {
            bar.set_total(t);
            bar.update(d, "")
        },
    )?)
}

/// What was written, on stdout (or as JSON); shared with `convert`.
pub(crate) fn summary(r: &Report, ftype: Ftype, out: &Path, json: bool, verbose: bool) {
    let n: u64 = r.tensors.iter().map(|t| t.n_elements).sum();
    let mut by_type = std::collections::BTreeMap::<String, usize>::new();
    for t in &r.tensors {
        *by_type.entry(t.to.name().to_string()).or_default() += 1;
    }
    if json {
        let mut v = serde_json::json!({
            "output": out.display().to_string(), "ftype": ftype.name(),
            "bytes_in": r.bytes_in, "bytes_out": r.bytes_out, "n_elements": n,
            "bits_per_weight": r.bits_per_weight(), "tensor_types": by_type,
            "weighted_tensors": r.tensors.iter().filter(|t| t.weighted).count(),
            "gptq_tensors": r.tensors.iter().filter(|t| t.gptq).count(),
            "awq": r.awq.iter().map(|(g, a, gain)| serde_json::json!({
                "group": g, "alpha": a, "error_reduction": gain})).collect::<Vec<_>>(),
            "tensors": r.tensors.iter().map(|t| serde_json::json!({
                "name": t.name, "from": t.from.name(), "to": t.to.name(), "bytes": t.bytes,
                "weighted": t.weighted, "gptq": t.gptq,
                "gptq_output_error": t.gptq_error.map(|e| e.0),
                "rounding_output_error": t.gptq_error.map(|e| e.1)})).collect::<Vec<_>>(),
        });
        v["peak_rss_bytes"] = crate::util::peak_rss_json();
        println!("{v}");
        return;
    }
    if verbose {
        for t in &r.tensors {
            println!(
                "{:40} {:>6} -> {:<6} {:>10}{}",
                t.name,
                t.from.name(),
                t.to.name(),
                human_bytes(t.bytes as u64),
                &match t.gptq_error {
                    Some((g, w)) => format!(
                        "  (gptq: output error {:.1}% of rounding's)",
                        100.0 * g / w.max(f64::MIN_POSITIVE)
                    ),
                    None if t.gptq => "  (gptq)".to_string(),
                    None if t.weighted => "  (imatrix)".to_string(),
                    None => String::new(),
                }
            );
        }
    }
    if !r.awq.is_empty() {
        let mean_alpha = r.awq.iter().map(|x| x.1 as f64).sum::<f64>() / r.awq.len() as f64;
        let mean_gain = r.awq.iter().map(|x| x.2).sum::<f64>() / r.awq.len() as f64;
        println!(
            "AWQ: {} groups, mean alpha {mean_alpha:.2}, weighted weight error {:.1}% lower than unscaled",
            r.awq.len(),
            100.0 * mean_gain
        );
    }
    let n_gptq = r.tensors.iter().filter(|t| t.gptq).count();
    if n_gptq > 0 {
        let (g, w) = r
            .tensors
            .iter()
            .filter_map(|t| t.gptq_error)
            .fold((0.0, 0.0), |(a, b), (g, w)| (a + g, b + w));
        println!(
            "GPTQ: {n_gptq} tensors rounded with error compensation; output error on the calibration inputs {:.1}% of importance-weighted rounding's (sampled rows, summed)",
            100.0 * g / w.max(f64::MIN_POSITIVE)
        );
    }
    let types: Vec<String> = by_type.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    println!(
        "wrote {} ({}): {} -> {}, {} weights, {:.2} bits per weight; tensors {}",
        out.display(),
        ftype,
        human_bytes(r.bytes_in),
        human_bytes(r.bytes_out),
        human_count(n),
        r.bits_per_weight(),
        types.join(", ")
    );
}
