//! The device's connection to a split server: the crate's blocking client (one keep-alive
//! connection), one request per message, every call bounded by the timeout.

use crate::error::{CollabError, Result};
use crate::http::{excerpt, Blocking, Method};
use crate::split::proto::{Reply, Request, ROUTE};
use std::time::Duration;

pub struct Client {
    http: Blocking,
    url: String,
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
        let http = Blocking::new(timeout, api_key).map_err(CollabError::Transport)?;
        Ok(Client {
            http,
            url: format!("{base}{ROUTE}"),
            sent: 0,
            received: 0,
        })
    }

    /// Send one message; a refusal from the server is `CollabError::Refused`.
    pub fn call(&mut self, req: &Request) -> Result<Reply> {
        let body = req.encode();
        self.sent += body.len() as u64;
        let a = self
            .http
            .call(Method::Post, &self.url, "application/octet-stream", body)
            .map_err(|f| CollabError::Transport(f.detail))?;
        self.received += a.body.len() as u64;
        match Reply::decode(&a.body) {
            Ok(Reply::Error { code, message }) => Err(CollabError::Refused { code, message }),
            Ok(r) => Ok(r),
            Err(e) if a.status.is_success() => Err(e),
            // Not a split server (or a proxy's error page): say what came back.
            Err(_) => Err(CollabError::Transport(format!(
                "HTTP {}: {}",
                a.status,
                excerpt(&a.body, 200)
            ))),
        }
    }
}
