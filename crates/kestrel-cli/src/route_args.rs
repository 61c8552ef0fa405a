//! The routing options `kestrel serve` and `kestrel run` share (see docs/routing.md).

use anyhow::Context;
use clap::Args;
use kestrel_route::{Policy, Remote};
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
