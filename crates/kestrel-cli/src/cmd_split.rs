//! The device side of split inference for `kestrel run`: `--split-remote URL --split-layer K`.

use anyhow::Context;
use clap::Args;
use kestrel_engine::{Engine, GenParams, Generation, Sequence};
use kestrel_split::{ReplyMode, SplitConfig, SplitDevice, WireFormat};
use std::time::Duration;

#[derive(Args, Clone, Debug)]
pub struct SplitArgs {
    /// Run layers K.. on this split server (http://HOST:PORT of `kestrel serve --split-server`);
    /// if it fails, the device finishes alone
    #[arg(long = "split-remote")]
    pub split_remote: Option<String>,
    /// Layers 0..K run here, K..n on the server (`kestrel plan-split` picks one)
    #[arg(long = "split-layer", requires = "split_remote")]
    pub split_layer: Option<usize>,
    /// Hidden states on the wire: f32 (exact), f16 or q8
    #[arg(long = "split-wire", default_value = "f32", value_parser = ["f32", "f16", "q8"], requires = "split_remote")]
    pub split_wire: String,
    /// Go local when the server takes longer than this to connect or answer a step
    #[arg(
        long = "split-timeout-ms",
        default_value_t = 5000,
        requires = "split_remote"
    )]
    pub split_timeout_ms: u64,
    /// Ask only for the N largest logits (0: the whole row, which every sampler needs to be exact)
    #[arg(long = "split-top-k", default_value_t = 0, requires = "split_remote")]
    pub split_top_k: u32,
    /// Bearer key of a server started with --api-key
    #[arg(long = "split-api-key", requires = "split_remote")]
    pub split_api_key: Option<String>,
}

impl SplitArgs {
    /// The split's settings, or None without `--split-remote`. `log` is told when a sequence
    /// goes local and why.
    pub fn config(&self, log: fn(&str)) -> anyhow::Result<Option<SplitConfig>> {
        let Some(remote) = &self.split_remote else {
            return Ok(None);
        };
        let k = self
            .split_layer
            .context("--split-remote needs --split-layer K (see `kestrel plan-split`)")?;
        anyhow::ensure!(
            self.split_timeout_ms > 0,
            "--split-timeout-ms must be positive"
        );
        Ok(Some(SplitConfig {
            remote: remote.clone(),
            k,
            wire: WireFormat::parse(&self.split_wire)?,
            reply: if self.split_top_k == 0 {
                ReplyMode::Full
            } else {
                ReplyMode::TopK(self.split_top_k)
            },
            timeout: Duration::from_millis(self.split_timeout_ms),
            api_key: self.split_api_key.clone(),
            on_event: Some(log),
        }))
    }
}

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
    let g = kestrel_split::generate::generate(engine, &mut dev, prompt, params, on_text)?;
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
