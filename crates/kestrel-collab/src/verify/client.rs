//! The HTTP side of the device: one `POST /v1/verify` per draft on the crate's blocking
//! client, each with one time limit for connecting and the whole answer, so a remote that
//! hangs fails the call instead of the run.

use crate::error::CollabError;
use crate::http::{excerpt, Blocking, Failure, Method};
use crate::verify::proto::{VerifyRequest, VerifyResponse};
use std::time::Duration;

pub struct VerifyClient {
    /// Base URL ending in `/v1`.
    base: String,
    http: Blocking,
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
        let http = Blocking::new(timeout, api_key).map_err(|e| bad(&e))?;
        Ok(VerifyClient { base, http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Send one request and return the checked answer.
    pub fn verify(&self, req: &VerifyRequest) -> Result<VerifyResponse, CollabError> {
        let body = serde_json::to_vec(req)
            .map_err(|e| CollabError::Invalid(format!("encoding the request: {e}")))?;
        let url = format!("{}/verify", self.base);
        let bytes = self.send(Method::Post, &url, body)?;
        let resp: VerifyResponse = serde_json::from_slice(&bytes).map_err(|e| {
            CollabError::verify_remote(
                "malformed answer",
                format!("{url}: {e}: {}", excerpt(&bytes, 300)),
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
        self.send(Method::Delete, &url, Vec::new()).map(|_| ())
    }

    fn send(&self, method: Method, url: &str, body: Vec<u8>) -> Result<Vec<u8>, CollabError> {
        let within = self.http.timeout();
        let a = self
            .http
            .call(method, url, "application/json", body)
            .map_err(|f: Failure| {
                let what = if f.in_body { "whole answer" } else { "answer" };
                if f.timed_out {
                    CollabError::verify_remote(
                        "timed out",
                        format!("no {what} from {url} within {within:?}"),
                    )
                } else {
                    CollabError::verify_remote("unreachable", format!("{url}: {}", f.detail))
                }
            })?;
        if !a.status.is_success() {
            return Err(CollabError::verify_remote(
                "error status",
                format!("{url} answered {}: {}", a.status, excerpt(&a.body, 300)),
            ));
        }
        Ok(a.body)
    }
}
