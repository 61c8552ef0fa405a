//! `kestrel kld`: KL-divergence, top-1 agreement and perplexities of a model against a base.

use crate::args::ScoreArgs;
use crate::util::Progress;
use clap::Args;
use kestrel_compress::kld::kl_divergence;
use std::path::PathBuf;

#[derive(Args)]
pub struct KldArgs {
    /// The reference model (e.g. the F32 original)
    #[arg(long = "base")]
    base: PathBuf,
    /// A model to compare (e.g. a quantized file); repeat to compare several against one base run
    #[arg(short = 'm', long = "model", required = true)]
    model: Vec<PathBuf>,
    #[command(flatten)]
    score: ScoreArgs,
}

pub fn run(a: KldArgs) -> anyhow::Result<()> {
    let load = |p: &PathBuf| a.score.eval.load(Some(p.clone()));
    let base = load(&a.base)?;
    let models = a
        .model
        .iter()
        .map(load)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let refs: Vec<_> = models.iter().collect();
    let text = a.score.text()?;
    let mut bar = Progress::new("kld", 1);
    let t0 = std::time::Instant::now();
    let rs = kl_divergence(
        &base,
        &refs,
        &text,
        a.score.eval.ctx,
        a.score.chunks,
        &mut |d, t, kl| {
            bar.set_total(t);
            bar.update(d, &format!("mean KLD {kl:.5}"))
        },
    )?;
    let secs = t0.elapsed().as_secs_f64();
    for (path, r) in a.model.iter().zip(&rs) {
        if a.score.json {
            // One object per line (one line per compared model).
            let mut v = serde_json::json!({
                "base": a.base.display().to_string(), "model": path.display().to_string(),
                "chunks": r.chunks, "ctx": r.n_ctx, "scored": r.scored,
                "base_ppl": r.base_ppl, "ppl": r.ppl, "ppl_ratio": r.ppl / r.base_ppl,
                "mean_kld": r.mean_kld, "kld_stderr": r.kld_stderr, "max_kld": r.max_kld,
                "top1_agreement": r.top1_agreement, "seconds": secs,
            });
            v["peak_rss_bytes"] = crate::util::peak_rss_json();
            println!("{v}");
        } else {
            println!("{}:", path.display());
            println!(
                "  {} chunks of {} tokens, {} positions scored",
                r.chunks, r.n_ctx, r.scored
            );
            println!("  base perplexity:  {:.4}", r.base_ppl);
            println!(
                "  model perplexity: {:.4} ({:+.3}%)",
                r.ppl,
                100.0 * (r.ppl / r.base_ppl - 1.0)
            );
            println!(
                "  mean KL-divergence: {:.6} ± {:.6} (max {:.4})",
                r.mean_kld, r.kld_stderr, r.max_kld
            );
            println!("  top-1 agreement: {:.3}%", 100.0 * r.top1_agreement);
        }
    }
    eprintln!("[{}]", crate::util::peak_rss_text());
    Ok(())
}
