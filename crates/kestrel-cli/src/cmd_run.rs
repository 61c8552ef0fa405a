use crate::{ModelArgs, SampleArgs};
use clap::Args;
use kestrel_engine::GenParams;
use std::io::Write;

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The prompt (special-token text such as <|im_start|> is parsed)
    #[arg(short = 'p', long = "prompt")]
    prompt: String,
    /// Tokens to generate at most
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    n_predict: usize,
    #[command(flatten)]
    sample: SampleArgs,
    /// Stop when this text is generated (repeatable)
    #[arg(long = "stop")]
    stop: Vec<String>,
    /// Keep generating past end-of-generation tokens
    #[arg(long = "ignore-eos")]
    ignore_eos: bool,
    /// Print the prompt before the continuation
    #[arg(long = "echo")]
    echo: bool,
    /// Print a JSON object with the text, tokens and timings instead of streaming
    #[arg(long = "json")]
    json: bool,
    #[command(flatten)]
    split: crate::cmd_split::SplitArgs,
}

pub fn run(a: RunArgs) -> anyhow::Result<()> {
    let engine = a.model.load()?;
    let prompt = engine.tokenize_prompt(&a.prompt)?;
    let params = GenParams {
        max_tokens: a.n_predict,
        sampler: a.sample.config(),
        stop: a.stop.clone(),
        ignore_eos: a.ignore_eos,
    };
    let mut seq = engine.new_sequence();
    let mut out = std::io::stdout().lock();
    if a.echo && !a.json {
        write!(out, "{}", a.prompt)?;
        out.flush()?;
    }
    let json = a.json;
    let batch = a.model.batch;
    let (g, split) = crate::cmd_split::generate(&engine, &a.split, batch, &mut seq, &prompt, &params, &mut |t| {
        if !json {
            // A closed stdout (e.g. `| head`) ends generation quietly.
            return write!(out, "{t}").and_then(|_| out.flush()).is_ok();
        }
        true
    })?;
    let t = &g.timings;
    if json {
        let mut v = serde_json::json!({
            "text": g.text,
            "tokens": g.tokens,
            "prompt_tokens": prompt.len(),
            "stop_reason": g.stop_reason.as_str(),
            "timings": {
                "prompt_ms": t.prompt_ms, "prompt_tps": t.prompt_tps(),
                "gen_ms": t.gen_ms, "gen_tps": t.gen_tps(), "ttft_ms": t.ttft_ms,
            },
        });
        if let Some(s) = split {
            v["split"] = s;
        }
        writeln!(out, "{v}")?;
    } else {
        writeln!(out)?;
        eprintln!(
            "\n[{} prompt tokens in {:.0} ms ({:.1} tok/s); {} generated at {:.1} tok/s; first token after {:.0} ms; stop: {}; {} threads, {}]",
            t.n_prompt_eval,
            t.prompt_ms,
            t.prompt_tps(),
            t.n_gen,
            t.gen_tps(),
            t.ttft_ms,
            g.stop_reason.as_str(),
            engine.pool.n_threads(),
            kestrel_kernels::kernels().isa(),
        );
        if let Some(s) = &split {
            eprintln!("{}", crate::cmd_split::summary(s));
        }
    }
    Ok(())
}
