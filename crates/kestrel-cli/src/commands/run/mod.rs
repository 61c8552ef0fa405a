//! `kestrel run`: generate a continuation of a prompt, locally or with a server (routing,
//! split inference, remote verification).

mod split;
mod verify;

use crate::args::{ModelArgs, PromptArgs, SampleArgs, SpecArgs};
use clap::Args;
use kestrel_engine::GenParams;
use std::io::Write;

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    prompt: PromptArgs,
    /// Tokens to generate at most
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    n_predict: usize,
    #[command(flatten)]
    sample: SampleArgs,
    #[command(flatten)]
    constrain: crate::args::ConstrainArgs,
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
    route: crate::args::RouteArgs,
    #[command(flatten)]
    spec: SpecArgs,
    #[command(flatten)]
    split: crate::args::SplitArgs,
    #[command(flatten)]
    verify: crate::args::VerifyArgs,
}

pub fn run(a: RunArgs) -> anyhow::Result<()> {
    let engine = a.model.load()?;
    let p = a.prompt.resolve(&engine)?;
    let prompt = p.tokens.clone();
    let constraint = a.constrain.load(&engine)?;
    let params = GenParams {
        max_tokens: a.n_predict,
        sampler: a.sample.config(),
        stop: a.stop.clone(),
        ignore_eos: a.ignore_eos,
        constraint: constraint.as_ref().map(|c| c.0.clone()),
    };
    if constraint.is_some() {
        let other = [
            (a.verify.verify_remote.is_some(), "--verify-remote"),
            (a.route.route_remote.is_some(), "--route-remote"),
            (a.split.split_remote.is_some(), "--split-remote"),
            (a.spec.enabled(), "speculative decoding (--draft-*)"),
        ];
        if let Some((_, what)) = other.iter().find(|(on, _)| *on) {
            anyhow::bail!("constrained output does not go with {what} in `kestrel run` yet");
        }
    }
    if a.verify.verify_remote.is_some() {
        anyhow::ensure!(
            a.route.route_remote.is_none(),
            "--verify-remote and --route-remote do not go together"
        );
        anyhow::ensure!(
            a.split.split_remote.is_none(),
            "--verify-remote and --split-remote do not go together"
        );
        let show = verify::Show {
            json: a.json,
            echo: a.echo.then_some(p.text.as_str()),
        };
        return verify::run(&engine, &a.verify, &a.spec, &prompt, &params, show);
    }
    let (mut seq, route) = match a.route.load()? {
        None => (engine.new_sequence(), None),
        Some((remote, policy)) => {
            use kestrel_collab::route::{route_prompt, Routed};
            match route_prompt(&engine, &p.text, &prompt, &params, &remote, &policy)? {
                Routed::Local(seq, d) => (*seq, Some(d)),
                Routed::Remote(answer, d) => return print_remote(&a, &p.text, answer, &d),
            }
        }
    };
    let mut out = std::io::stdout().lock();
    if a.echo && !a.json {
        write!(out, "{}", p.text)?;
        out.flush()?;
    }
    let json = a.json;
    let mut spec = a.spec.speculator(&engine)?;
    let mut on_text = |t: &str| {
        if !json {
            // A closed stdout (e.g. `| head`) ends generation quietly.
            return write!(out, "{t}").and_then(|_| out.flush()).is_ok();
        }
        true
    };
    let split_on = a.split.split_remote.is_some();
    anyhow::ensure!(
        !(split_on && spec.is_some()),
        "--split-remote cannot be combined with speculative decoding (--draft-*)"
    );
    let mut split = None;
    let (g, stats) = match spec.as_mut() {
        Some(sp) => {
            let r = engine.generate_speculative(&mut seq, &prompt, &params, sp, &mut on_text)?;
            (r.generation, Some((sp.drafter.name(), r.stats)))
        }
        None if split_on => {
            let batch = a.model.batch;
            let (g, meta) = split::generate(
                &engine,
                &a.split,
                batch,
                &mut seq,
                &prompt,
                &params,
                &mut on_text,
            )?;
            split = meta;
            (g, None)
        }
        None => (
            engine.generate(&mut seq, &prompt, &params, &mut on_text)?,
            None,
        ),
    };
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
            "speculative": stats.as_ref().map(|(name, s)| serde_json::json!({
                "drafter": name, "drafted": s.drafted, "accepted": s.accepted,
                "acceptance_rate": s.acceptance_rate(), "target_passes": s.target_passes,
            })),
        });
        v["peak_rss_bytes"] = crate::util::peak_rss_json();
        if let Some((c, st)) = &constraint {
            v["constraint"] = serde_json::json!({
                "kind": c.what, "masks": st.masks.load(std::sync::atomic::Ordering::Relaxed),
                "mean_mask_ms": st.mean_ms(),
            });
        }
        if let Some(d) = &route {
            v["routed"] = d.json();
        }
        if let Some(s) = split {
            v["split"] = s;
        }
        writeln!(out, "{v}")?;
    } else {
        writeln!(out)?;
        if let Some((name, s)) = &stats {
            eprintln!(
                "\n[speculative ({name}): {} of {} drafted tokens accepted ({:.0}%); {} target passes for {} tokens]",
                s.accepted,
                s.drafted,
                100.0 * s.acceptance_rate(),
                s.target_passes,
                t.n_gen
            );
        }
        eprintln!(
            "\n[{} prompt tokens in {:.0} ms ({:.1} tok/s); {} generated at {:.1} tok/s; first token after {:.0} ms; stop: {}; {} threads, {}; {}]",
            t.n_prompt_eval,
            t.prompt_ms,
            t.prompt_tps(),
            t.n_gen,
            t.gen_tps(),
            t.ttft_ms,
            g.stop_reason.as_str(),
            engine.pool.n_threads(),
            kestrel_kernels::kernels().isa(),
            crate::util::peak_rss_text(),
        );
        if let Some((c, st)) = &constraint {
            eprintln!(
                "[constrained output ({}): {:.3} ms per token mask]",
                c.what,
                st.mean_ms()
            );
        }
        if let Some(d) = &route {
            eprintln!("[{}]", d.log_line("prompt"));
        }
        if let Some(s) = &split {
            eprintln!("{}", split::summary(s));
        }
    }
    Ok(())
}

/// Print an answer that came from the routing remote.
fn print_remote(
    a: &RunArgs,
    prompt: &str,
    answer: kestrel_collab::route::RemoteAnswer,
    d: &kestrel_collab::route::Decision,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if a.json {
        let v = serde_json::json!({
            "text": answer.text,
            "stop_reason": answer.finish_reason,
            "model": answer.model,
            "usage": answer.usage,
            "routed": d.json(),
        });
        writeln!(out, "{v}")?;
    } else {
        if a.echo {
            write!(out, "{prompt}")?;
        }
        writeln!(out, "{}", answer.text)?;
        eprintln!(
            "\n[{}; model {}]",
            d.log_line("prompt"),
            answer.model.as_deref().unwrap_or("?")
        );
    }
    Ok(())
}
