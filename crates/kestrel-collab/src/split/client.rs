//! The device's connection to a split server: one blocking HTTP/1.1 keep-alive connection
//! (reqwest), one request per message, every call bounded by the timeout.

use crate::error::{CollabError, Result};
use crate::http::error_chain;
use crate::split::proto::{Reply, Request, ROUTE};
use std::time::Duration;

pub struct Client {
    http: reqwest::blocking::Client,
    url: String,
    api_key: Option<String>,
    /// Bytes of request and response bodies so far.
    pub sent: u64,
    pub received: u64,
}

impl Client {
    /// `base` is `http://HOST:PORT`; `timeout` bounds connecting and each whole call.
    pub fn new(base: &str, timeout: Duration, api_key: Option<String>) -> Result<Client> {
        let base = base.trim_end_matches('/');
        if !base.starts_with("http://") {
            return Err(CollabError::SplitInvalid(format!(
                "split remote {base:?} must be an http:// URL"
            )));
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| CollabError::Transport(format!("building the HTTP client: {e}")))?;
        Ok(Client {
            http,
            url: format!("{base}{ROUTE}"),
            api_key,
            sent: 0,
            received: 0,
        })
    }

    /// Send one message; a refusal from the server is `CollabError::Refused`.
    pub fn call(&mut self, req: &Request) -> Result<Reply> {
        let body = req.encode();
        self.sent += body.len() as u64;
        let mut rb = self
            .http
            .post(&self.url)
            .header("content-type", "application/octet-stream")
            .body(body);
        if let Some(k) = &self.api_key {
            rb = rb.bearer_auth(k);
        }
        let resp = rb
            .send()
            .map_err(|e| CollabError::Transport(error_chain(&e)))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .map_err(|e| CollabError::Transport(error_chain(&e)))?;
        self.received += bytes.len() as u64;
        match Reply::decode(&bytes) {
            Ok(Reply::Error { code, message }) => Err(CollabError::Refused { code, message }),
            Ok(r) => Ok(r),
            Err(e) if status.is_success() => Err(e),
            // Not a split server (or a proxy's error page): say what came back.
            Err(_) => Err(CollabError::Transport(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ))),
        }
    }
}
