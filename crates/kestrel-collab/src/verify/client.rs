//! The HTTP side of the device: one `POST /v1/verify` per draft, each with one time limit for
//! connecting and the whole answer, so a remote that hangs fails the call instead of the run.

use crate::error::CollabError;
use crate::http::error_chain;
use crate::verify::proto::{VerifyRequest, VerifyResponse};
use std::time::Duration;

pub struct VerifyClient {
    /// Base URL ending in `/v1`.
    base: String,
    timeout: Duration,
    api_key: Option<String>,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl VerifyClient {
    /// `url`: the server's base (`http://host:port`, with or without a trailing `/v1`).
    pub fn new(
        url: &str,
        timeout: Duration,
        api_key: Option<String>,
    ) -> Result<VerifyClient, CollabError> {
        let bad = |reason: &str| CollabError::VerifyUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let base = crate::http::openai_base(url).map_err(bad)?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // Small requests in lock step: Nagle's delay would add to every round trip.
            .tcp_nodelay(true)
            .build()
            .map_err(|e| bad(&e.to_string()))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| bad(&format!("starting a runtime: {e}")))?;
        Ok(VerifyClient {
            base,
            timeout,
            api_key: api_key.filter(|k| !k.is_empty()),
            client,
            rt,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Send one request and return the checked answer.
    pub fn verify(&self, req: &VerifyRequest) -> Result<VerifyResponse, CollabError> {
        let body = serde_json::to_string(req)
            .map_err(|e| CollabError::Invalid(format!("encoding the request: {e}")))?;
        let url = format!("{}/verify", self.base);
        let bytes = self
            .rt
            .block_on(self.send(self.client.post(&url).body(body), &url))?;
        let resp: VerifyResponse = serde_json::from_slice(&bytes).map_err(|e| {
            CollabError::verify_remote(
                "malformed answer",
                format!("{url}: {e}: {}", excerpt(&bytes)),
            )
        })?;
        if resp.object != "verify" {
            return Err(CollabError::verify_remote(
                "malformed answer",
                format!("{url}: object is '{}', not 'verify'", resp.object),
            ));
        }
        Ok(resp)
    }

    /// End a session (best effort: the server also expires idle ones).
    pub fn close(&self, session: &str) -> Result<(), CollabError> {
        let url = format!("{}/verify/{session}", self.base);
        self.rt
            .block_on(self.send(self.client.delete(&url), &url))
            .map(|_| ())
    }

    async fn send(&self, req: reqwest::RequestBuilder, url: &str) -> Result<Vec<u8>, CollabError> {
        let mut req = req.header("content-type", "application/json");
        if let Some(k) = &self.api_key {
            req = req.bearer_auth(k);
        }
        let within = self.timeout;
        let fail = |e: reqwest::Error, what: &str| {
            if e.is_timeout() {
                CollabError::verify_remote(
                    "timed out",
                    format!("no {what} from {url} within {within:?}"),
                )
            } else {
                CollabError::verify_remote("unreachable", format!("{url}: {}", error_chain(&e)))
            }
        };
        let resp = req.send().await.map_err(|e| fail(e, "answer"))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| fail(e, "whole answer"))?;
        if !status.is_success() {
            return Err(CollabError::verify_remote(
                "error status",
                format!("{url} answered {status}: {}", excerpt(&bytes)),
            ));
        }
        Ok(bytes.to_vec())
    }
}

fn excerpt(bytes: &[u8]) -> String {
    let t = String::from_utf8_lossy(bytes);
    let t = t.trim();
    match t.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_string(),
    }
}
