use crate::args::ScoreArgs;
use crate::util::Progress;
use clap::Args;
use kestrel_engine::eval;
use std::path::PathBuf;

#[derive(Args)]
pub struct PerplexityArgs {
    /// GGUF model file [default: SmolLM2-135M-Instruct Q4_1, fetched into the cache if missing]
    #[arg(short = 'm', long = "model")]
    model: Option<PathBuf>,
    #[command(flatten)]
    score: ScoreArgs,
}

pub fn run(a: PerplexityArgs) -> anyhow::Result<()> {
    let engine = a.score.eval.load(a.model.clone())?;
    let text = a.score.text()?;
    let t0 = std::time::Instant::now();
    let tokens = eval::tokenize_for_perplexity(&engine, &text)?;
    let tok_s = t0.elapsed().as_secs_f64();
    let total = if a.score.chunks == 0 {
        tokens.len() / a.score.eval.ctx.max(1)
    } else {
        a.score.chunks.min(tokens.len() / a.score.eval.ctx.max(1))
    };
    let mut bar = Progress::new("perplexity", total);
    let t1 = std::time::Instant::now();
    let r = eval::perplexity(
        &engine,
        &tokens,
        a.score.eval.ctx,
        a.score.chunks,
        &mut |done, _, ppl| bar.update(done, &format!("ppl {ppl:.4}")),
    )?;
    let secs = t1.elapsed().as_secs_f64();
    if a.score.json {
        let mut v = serde_json::json!({
            "ppl": r.ppl, "ppl_stderr": r.ppl_stderr, "chunks": r.chunks, "ctx": r.n_ctx,
            "tokens": r.tokens, "scored": r.scored, "running_ppl": r.running,
            "tokenize_seconds": tok_s, "eval_seconds": secs,
        });
        v["peak_rss_bytes"] = crate::util::peak_rss_json();
        println!("{v}");
    } else {
        println!(
            "perplexity: {:.4} ± {:.4} over {} chunks of {} tokens ({} tokens in the file, {} scored; {:.1} s, {:.0} tok/s)",
            r.ppl,
            r.ppl_stderr,
            r.chunks,
            r.n_ctx,
            r.tokens,
            r.scored,
            secs,
            (r.chunks * r.n_ctx) as f64 / secs
        );
    }
    eprintln!("[{}]", crate::util::peak_rss_text());
    Ok(())
}
