//! `kestrel prune`: zero the least important weights of the block matrices.

mod structured;

use crate::util::{human_count, Progress};
use clap::Args;
use kestrel_compress::imatrix::Imatrix;
use kestrel_compress::prune::{prune_file, Pattern, PruneMethod, PruneReport};
use std::path::PathBuf;
use structured::StructuredArgs;

#[derive(Args)]
pub struct PruneArgs {
    /// Input GGUF with float weights (F32/F16/BF16; never modified)
    input: PathBuf,
    /// Output GGUF (must not exist)
    output: PathBuf,
    /// magnitude (|w|), wanda (|w| * input-column norm; needs --imatrix) or sparsegpt
    /// (calibration Hessian with error compensation; needs --calib)
    #[arg(long = "method", default_value = "wanda")]
    method: String,
    /// Fraction of each row's weights to drop (unstructured)
    #[arg(long = "sparsity", default_value_t = 0.5)]
    sparsity: f32,
    /// N:M structured sparsity instead (e.g. 2:4 keeps 2 of every 4)
    #[arg(long = "pattern")]
    pattern: Option<String>,
    /// Importance matrix (kestrel imatrix) holding the activation norms wanda needs
    #[arg(long = "imatrix")]
    imatrix: Option<PathBuf>,
    /// Print a JSON summary
    #[arg(long = "json")]
    json: bool,
    #[command(flatten)]
    structured: StructuredArgs,
}

pub fn run(a: PruneArgs) -> anyhow::Result<()> {
    if a.structured.requested() {
        anyhow::ensure!(
            a.pattern.is_none() && a.imatrix.is_none(),
            "--drop-layers / --ffn-keep are structured pruning: --pattern and --imatrix do not apply"
        );
        return structured::run(&a.input, &a.output, &a.structured, a.json);
    }
    let pattern = match &a.pattern {
        Some(p) => Pattern::parse_nm(p)?,
        None => Pattern::Unstructured(a.sparsity),
    };
    let method = match a.method.as_str() {
        "magnitude" => PruneMethod::Magnitude,
        "wanda" => PruneMethod::Wanda,
        "sparsegpt" => {
            let r = structured::run_sparsegpt(&a.input, &a.output, pattern, &a.structured)?;
            print_report(&r, &a.output, a.json);
            return Ok(());
        }
        m => anyhow::bail!("--method {m}: expected magnitude, wanda or sparsegpt"),
    };
    let im = match &a.imatrix {
        Some(p) => Some(Imatrix::load(p)?),
        None => None,
    };
    let mut bar = Progress::new("prune", 1);
    let r = prune_file(
        &a.input,
        &a.output,
        method,
        pattern,
        im.as_ref(),
        &mut |d, t, _| {
            bar.set_total(t);
            bar.update(d, "")
        },
    )?;
    print_report(&r, &a.output, a.json);
    Ok(())
}

fn print_report(r: &PruneReport, output: &std::path::Path, json: bool) {
    let frac = r.zeros as f64 / r.weights.max(1) as f64;
    if json {
        let mut v = serde_json::json!({
            "output": output.display().to_string(), "pruned_tensors": r.pruned_tensors,
            "weights": r.weights, "zeros": r.zeros, "sparsity": frac,
        });
        v["peak_rss_bytes"] = crate::util::peak_rss_json();
        println!("{v}");
    } else {
        println!(
            "wrote {}: {} matrices pruned, {} of {} weights are zero ({:.1}%)",
            output.display(),
            r.pruned_tensors,
            human_count(r.zeros),
            human_count(r.weights),
            100.0 * frac
        );
    }
}
