//! Working with a server: routing (`run`, `serve`; docs/routing.md), split inference
//! (`run --split-remote`, `serve`; docs/split.md) and remote verification of drafts
//! (`run --verify-remote`; docs/speculative.md).

use anyhow::Context;
use clap::Args;
use kestrel_collab::route::{Policy, Remote};
use kestrel_collab::split::{ReplyMode, SplitConfig, WireFormat};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Clone, Debug)]
pub struct RouteArgs {
    /// Send unsure or rule-matched requests to this OpenAI-compatible server (http://host:port)
    #[arg(long = "route-remote", value_name = "URL")]
    pub route_remote: Option<String>,
    /// Routing policy (JSON: confidence thresholds, length, keyword and model rules); defaults when absent
    #[arg(long = "route-policy", value_name = "FILE", requires = "route_remote")]
    pub route_policy: Option<PathBuf>,
    /// Model name to ask the remote for (default: the request's own)
    #[arg(long = "route-model", value_name = "NAME", requires = "route_remote")]
    pub route_model: Option<String>,
    /// API key for the remote, sent as 'Authorization: Bearer KEY' (default: $KESTREL_ROUTE_API_KEY)
    #[arg(long = "route-api-key", value_name = "KEY", requires = "route_remote")]
    pub route_api_key: Option<String>,
    /// Longest wait for the remote's whole answer before answering locally, in milliseconds
    #[arg(long = "route-timeout-ms", default_value_t = 30_000, value_name = "MS")]
    pub route_timeout_ms: u64,
}

impl RouteArgs {
    /// The remote and the policy, when routing is asked for.
    pub fn load(&self) -> anyhow::Result<Option<(Remote, Policy)>> {
        let Some(url) = &self.route_remote else {
            return Ok(None);
        };
        anyhow::ensure!(
            self.route_timeout_ms > 0,
            "--route-timeout-ms must be at least 1"
        );
        let remote = Remote::new(
            url,
            self.route_model.clone(),
            Duration::from_millis(self.route_timeout_ms),
        )?
        .with_api_key(
            self.route_api_key
                .clone()
                .or_else(|| std::env::var("KESTREL_ROUTE_API_KEY").ok()),
        );
        let policy = match &self.route_policy {
            Some(p) => Policy::load(p).context("loading --route-policy")?,
            None => Policy::default(),
        };
        Ok(Some((remote, policy)))
    }
}

/// Split inference: layers 0..K here, K.. on a split server.
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

/// Drafting here, verification on a kestrel server.
#[derive(Args, Clone, Debug)]
pub struct VerifyArgs {
    /// Draft locally and have this kestrel server (http://host:port) verify every draft with its model
    #[arg(long = "verify-remote", value_name = "URL")]
    pub verify_remote: Option<String>,
    /// Longest wait for one verification answer before the local model takes over, in milliseconds
    #[arg(
        long = "verify-timeout-ms",
        default_value_t = 10_000,
        value_name = "MS"
    )]
    pub verify_timeout_ms: u64,
    /// API key for the verify server, sent as 'Authorization: Bearer KEY' (default: $KESTREL_VERIFY_API_KEY)
    #[arg(
        long = "verify-api-key",
        value_name = "KEY",
        requires = "verify_remote"
    )]
    pub verify_api_key: Option<String>,
}
