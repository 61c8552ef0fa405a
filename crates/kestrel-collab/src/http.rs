//! The one HTTP client of the collaboration flows (routing, split, verify): plain HTTP/1.1
//! keep-alive (reqwest, no TLS), one time limit for connecting and each whole call, small
//! requests sent without Nagle's delay; async for the server's routing, blocking on a runtime
//! of its own for the device loops. Also: reading a server's base URL, and an error's full
//! chain of causes for messages.

use std::time::Duration;

/// A client for one remote; cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    timeout: Duration,
    /// Sent as `Authorization: Bearer KEY`.
    api_key: Option<String>,
}

/// What came back: the status and the whole body.
pub struct Answer {
    pub status: reqwest::StatusCode,
    pub body: Vec<u8>,
}

/// Why a call got no whole answer.
#[derive(Debug)]
pub struct Failure {
    /// The answer had started (its head came) when the call failed.
    pub in_body: bool,
    /// The time limit passed.
    pub timed_out: bool,
    /// The error with its causes.
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Post,
    Delete,
}

impl Client {
    /// `timeout` bounds connecting and each whole call; an empty key is none.
    pub fn new(timeout: Duration, api_key: Option<String>) -> Result<Client, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // Small requests in lock step: Nagle's delay would add to every round trip.
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("building the HTTP client: {}", error_chain(&e)))?;
        Ok(Client {
            http,
            timeout,
            api_key: api_key.filter(|k| !k.is_empty()),
        })
    }

    /// The same client sending `key` instead (an empty one is none).
    pub fn with_api_key(mut self, key: Option<String>) -> Client {
        self.api_key = key.filter(|k| !k.is_empty());
        self
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// One call with a body of `content_type`, read to its end.
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Answer, Failure> {
        let rb = match method {
            Method::Post => self.http.post(url).body(body),
            Method::Delete => self.http.delete(url),
        };
        let mut rb = rb.header("content-type", content_type);
        if let Some(k) = &self.api_key {
            rb = rb.bearer_auth(k);
        }
        let fail = |in_body: bool| {
            move |e: reqwest::Error| Failure {
                in_body,
                timed_out: e.is_timeout(),
                detail: error_chain(&e),
            }
        };
        let resp = rb.send().await.map_err(fail(false))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(fail(true))?.to_vec();
        Ok(Answer { status, body })
    }
}

/// A [`Client`] for synchronous code (the device loops), with a runtime of its own.
pub struct Blocking {
    client: Client,
    rt: tokio::runtime::Runtime,
}

impl Blocking {
    pub fn new(timeout: Duration, api_key: Option<String>) -> Result<Blocking, String> {
        Ok(Blocking {
            client: Client::new(timeout, api_key)?,
            rt: runtime()?,
        })
    }

    pub fn timeout(&self) -> Duration {
        self.client.timeout
    }

    /// [`Client::call`], waiting for it.
    pub fn call(
        &self,
        method: Method,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Answer, Failure> {
        self.rt
            .block_on(self.client.call(method, url, content_type, body))
    }
}

/// A single-threaded runtime for waiting on one async call from synchronous code.
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting a runtime: {e}"))
}

/// The first `n` characters of a body, for error messages.
pub fn excerpt(body: &[u8], n: usize) -> String {
    let t = String::from_utf8_lossy(body);
    let t = t.trim();
    match t.char_indices().nth(n) {
        Some((i, _)) => format!("{}...", &t[..i]),
        None => t.to_string(),
    }
}

/// The base of an OpenAI-compatible server, ending in `/v1`, from `http://HOST:PORT` with or
/// without a trailing `/v1` or `/`; or why the URL cannot be one.
pub fn openai_base(url: &str) -> Result<String, &'static str> {
    let trimmed = url.trim_end_matches('/');
    if !trimmed.starts_with("http://") {
        return Err("only http:// URLs are supported (no TLS in this build)");
    }
    if trimmed.len() <= "http://".len() {
        return Err("no host");
    }
    Ok(if trimmed.ends_with("/v1") {
        trimmed.to_string()
    } else {
        format!("{trimmed}/v1")
    })
}

/// The error with its causes ("error sending request: connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(openai_base("http://h:1").unwrap(), "http://h:1/v1");
        assert_eq!(openai_base("http://h:1/v1/").unwrap(), "http://h:1/v1");
        assert!(openai_base("https://h:1").is_err());
        assert!(openai_base("http://").is_err());
        assert!(openai_base("h:1").is_err());
    }
}
