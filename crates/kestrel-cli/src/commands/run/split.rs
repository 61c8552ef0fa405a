//! The device side of split inference for `kestrel run`: `--split-remote URL --split-layer K`.

use crate::args::SplitArgs;
use kestrel_collab::split::SplitDevice;
use kestrel_engine::{Engine, GenParams, Generation, Sequence};

/// Generate with the split when `--split-remote` is given, else as usual. `n_batch` is the
/// `--batch` the engine was loaded with: the server runs the same micro-batches. Returns the
/// split's metadata for `--json` when split.
pub fn generate(
    engine: &Engine,
    a: &SplitArgs,
    n_batch: usize,
    seq: &mut Sequence,
    prompt: &[u32],
    params: &GenParams,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> anyhow::Result<(Generation, Option<serde_json::Value>)> {
    let Some(cfg) = a.config(|m| eprintln!("kestrel: split: {m}"))? else {
        return Ok((engine.generate(seq, prompt, params, on_text)?, None));
    };
    let n_ctx = seq.session.n_ctx();
    let mut dev = SplitDevice::open(&engine.model, &engine.pool, n_ctx, n_batch, cfg)?;
    let g = kestrel_collab::split::generate::generate(engine, &mut dev, prompt, params, on_text)?;
    dev.close();
    let meta = dev.report(prompt.len());
    Ok((g, Some(meta)))
}

/// One line for stderr: where the layers ran and what crossed the wire.
pub fn summary(m: &serde_json::Value) -> String {
    let kb = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0) / 1024.0;
    let mut s = format!(
        "[split at layer {} of {} via {} ({}): {} remote steps, {:.1} KiB sent, {:.1} KiB received, {:.0} ms waiting on the server",
        m["layer"], m["n_layer"], m["remote"].as_str().unwrap_or("?"), m["wire"].as_str().unwrap_or("?"),
        m["remote_steps"], kb(&m["bytes_sent"]), kb(&m["bytes_received"]), m["remote_ms"].as_f64().unwrap_or(0.0),
    );
    if m["fell_back"].as_bool() == Some(true) {
        s.push_str(&format!(
            "; fell back to this device at position {} after {} generated tokens ({})",
            m["fallback_at_position"],
            m["tokens_before_fallback"],
            m["fallback_reason"].as_str().unwrap_or("?")
        ));
    }
    s.push(']');
    s
}
