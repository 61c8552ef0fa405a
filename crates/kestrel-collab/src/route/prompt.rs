//! Routing one prompt in a synchronous program (`kestrel run --route-remote`, an application
//! embedding the engine), by the same two steps as the server (`Policy::before_probe`,
//! `Policy::after_probe`; docs/routing.md). The confidence probe samples the first tokens with
//! the request's own sampler and shows nothing; a local answer is then generated from the same
//! sequence (its cached prompt is reused), so with a fixed seed it starts with the very tokens
//! the probe judged.

use crate::error::Result;
use crate::route::TokenConfidence;
use crate::route::{Confidence, Decision, Policy, Remote, RemoteAnswer, RemoteKind, Target};
use kestrel_engine::{Engine, GenParams, Sequence};
use serde_json::json;

pub enum Routed {
    /// Generate locally in this sequence (boxed: it is large next to the other variant).
    Local(Box<Sequence>, Decision),
    Remote(RemoteAnswer, Decision),
}

/// Where `prompt` (the tokens of `text`) is answered: the remote's answer, or a sequence to
/// generate the local one in. A remote that fails leaves the answer local, with the reason.
pub fn route_prompt(
    engine: &Engine,
    text: &str,
    prompt: &[u32],
    params: &GenParams,
    remote: &Remote,
    policy: &Policy,
) -> Result<Routed> {
    let mut seq = engine.new_sequence();
    let wanted = match policy.before_probe(None, text, prompt.len(), engine.n_ctx()) {
        Some(d) => d,
        None => {
            let conf = probe(engine, &mut seq, prompt, params, policy.confidence.tokens)?;
            policy.after_probe(conf)
        }
    };
    if wanted.target == Target::Local {
        return Ok(Routed::Local(Box::new(seq), wanted));
    }
    let s = &params.sampler;
    let mut body = json!({
        "prompt": text,
        "max_tokens": params.max_tokens,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "seed": s.seed,
        "ignore_eos": params.ignore_eos,
    });
    if !params.stop.is_empty() {
        body["stop"] = json!(params.stop);
    }
    Ok(match remote.call_blocking(RemoteKind::Completion, &body) {
        Ok(a) => Routed::Remote(a, wanted),
        Err(e) => Routed::Local(Box::new(seq), Decision::fallback(&wanted, e.to_string())),
    })
}

/// Sample up to `n` tokens (stopping at end-of-generation) and average their confidence.
fn probe(
    engine: &Engine,
    seq: &mut Sequence,
    prompt: &[u32],
    params: &GenParams,
    n: usize,
) -> Result<Confidence> {
    let mut conf = Confidence::default();
    let n_ctx = seq.session.n_ctx();
    engine
        .model
        .forward(&mut seq.session, &engine.pool, prompt, prompt.len() - 1)?;
    seq.tokens.extend_from_slice(prompt);
    let mut sampler = kestrel_engine::decode::primed_sampler(&params.sampler, prompt);
    for i in 0..n {
        let logits = seq.session.last_logits();
        conf.push(TokenConfidence::of_logits(logits));
        let tok = sampler.sample(logits);
        if (engine.tokenizer.is_eog(tok) && !params.ignore_eos)
            || i + 1 == n
            || seq.session.n_past() >= n_ctx
        {
            break;
        }
        sampler.accept(tok);
        engine
            .model
            .forward(&mut seq.session, &engine.pool, &[tok], 0)?;
        seq.tokens.push(tok);
    }
    Ok(conf)
}
