//! `kestrel run --verify-remote URL`: the device drafts with its local model (or the drafter
//! the speculative options name) and a kestrel server verifies each draft with its own model
//! (docs/speculative.md). When the remote fails, the local model finishes the text and the
//! output says from which token on.

use crate::args::{SpecArgs, VerifyArgs};
use kestrel_collab::verify::{remote_generate, RemoteOptions, VerifyClient};
use kestrel_engine::speculative::{Drafter, ModelDrafter};
use kestrel_engine::{Engine, GenParams};
use std::io::Write;
use std::time::Duration;

/// What `run` prints around the text.
pub struct Show<'a> {
    pub json: bool,
    pub echo: Option<&'a str>,
}

pub fn run(
    engine: &Engine,
    v: &VerifyArgs,
    spec: &SpecArgs,
    prompt: &[u32],
    params: &GenParams,
    show: Show,
) -> anyhow::Result<()> {
    let url = v.verify_remote.as_deref().unwrap_or_default();
    anyhow::ensure!(
        v.verify_timeout_ms > 0,
        "--verify-timeout-ms must be at least 1"
    );
    let key = v
        .verify_api_key
        .clone()
        .or_else(|| std::env::var("KESTREL_VERIFY_API_KEY").ok());
    let client = VerifyClient::new(url, Duration::from_millis(v.verify_timeout_ms), key)?;
    // The drafter: one the speculative options name, else the run's own model.
    let (mut drafter, max, adaptive): (Box<dyn Drafter>, usize, bool) =
        match spec.speculator(engine)? {
            Some(s) => (s.drafter, spec.draft_max, !spec.draft_fixed),
            None => (
                Box::new(ModelDrafter::draft_model(
                    engine.model.clone(),
                    &engine.tokenizer,
                    &engine.tokenizer,
                    engine.n_ctx(),
                )?),
                spec.draft_max,
                !spec.draft_fixed,
            ),
        };
    anyhow::ensure!(
        (1..=64).contains(&max),
        "--draft-max must be between 1 and 64, got {max}"
    );
    let mut out = std::io::stdout().lock();
    if let (Some(p), false) = (show.echo, show.json) {
        write!(out, "{p}")?;
        out.flush()?;
    }
    let json = show.json;
    let mut on_text = |t: &str| {
        if !json {
            return write!(out, "{t}").and_then(|_| out.flush()).is_ok();
        }
        true
    };
    let opts = RemoteOptions {
        draft_max: max,
        adaptive,
    };
    let name = drafter.name();
    let g = remote_generate(
        engine,
        drafter.as_mut(),
        &client,
        prompt,
        params,
        &opts,
        &mut on_text,
    )?;
    let s = &g.stats;
    if json {
        let mut v = serde_json::json!({
            "text": g.text,
            "tokens": g.tokens,
            "prompt_tokens": prompt.len(),
            "stop_reason": g.stop_reason.as_str(),
            "timings": {
                "total_ms": g.total_ms, "ttft_ms": g.ttft_ms, "tps": g.tps(),
                "wait_ms": s.wait_ms,
            },
            "verify_remote": {
                "url": client.base(), "drafter": name, "rounds": s.rounds,
                "drafted": s.drafted, "accepted": s.accepted,
                "acceptance_rate": s.acceptance_rate(), "remote_tokens": s.remote_tokens,
                "answered_by": if s.local_from.is_some() { "local_after_remote_failure" } else { "remote_verified" },
                "local_from_token": s.local_from, "fallback_reason": s.fallback_reason,
            },
        });
        v["peak_rss_bytes"] = crate::util::peak_rss_json();
        writeln!(out, "{v}")?;
    } else {
        writeln!(out)?;
        if let (Some(at), Some(why)) = (s.local_from, &s.fallback_reason) {
            eprintln!(
                "\n[verify remote failed at generated token {at}: {why}; the local model wrote the rest]"
            );
        }
        eprintln!(
            "\n[verify remote {} ({name} drafts): {} of {} drafted tokens accepted ({:.0}%) in {} rounds; {} tokens in {:.0} ms ({:.1} tok/s), {:.0} ms waiting for the server; stop: {}]",
            client.base(),
            s.accepted,
            s.drafted,
            100.0 * s.acceptance_rate(),
            s.rounds,
            g.tokens.len(),
            g.total_ms,
            g.tps(),
            s.wait_ms,
            g.stop_reason.as_str(),
        );
    }
    Ok(())
}
