//! The remote: any OpenAI-compatible server (another kestrel, llama.cpp's server, vLLM). One
//! non-streaming request per routed call, with one time limit for connecting, the answer's
//! head and its whole body, so a remote that hangs or dies mid-answer fails the call instead of
//! the request. The answer is checked for OpenAI's shape before it is used.

use crate::error::CollabError;
use crate::http::{excerpt, Client, Method};
use serde_json::Value;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteKind {
    /// `/v1/chat/completions`
    Chat,
    /// `/v1/completions`
    Completion,
}

#[derive(Clone)]
pub struct Remote {
    /// Base URL ending in `/v1`.
    base: String,
    /// Model name sent to the remote (`--route-model`); None: the request's own, if any.
    model: Option<String>,
    client: Client,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("base", &self.base)
            .field("model", &self.model)
            .field("timeout", &self.client.timeout())
            .finish()
    }
}

/// A checked remote answer.
#[derive(Clone, Debug)]
pub struct RemoteAnswer {
    /// The first choice's text (message content for chat).
    pub text: String,
    pub finish_reason: String,
    /// The remote's usage object, if it sent one.
    pub usage: Option<Value>,
    /// The remote's model name, if it sent one.
    pub model: Option<String>,
    /// The whole answer as received.
    pub body: Value,
}

impl Remote {
    /// `url`: the server's base (`http://host:port`, with or without a trailing `/v1`).
    pub fn new(url: &str, model: Option<String>, timeout: Duration) -> Result<Remote, CollabError> {
        let bad = |reason: &str| CollabError::Url {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let base = crate::http::openai_base(url).map_err(bad)?;
        let client = Client::new(timeout, None).map_err(|e| bad(&e))?;
        Ok(Remote {
            base,
            model,
            client,
        })
    }

    /// Send `Authorization: Bearer KEY` with every request.
    pub fn with_api_key(mut self, key: Option<String>) -> Remote {
        self.client = self.client.with_api_key(key);
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn timeout(&self) -> Duration {
        self.client.timeout()
    }

    /// Send a request body (as a client sent it, or built by `kestrel run`) and return the
    /// checked answer. Streaming and kestrel-only fields are removed: the remote is asked for
    /// one whole answer.
    pub async fn call(&self, kind: RemoteKind, body: &Value) -> Result<RemoteAnswer, CollabError> {
        let mut body = body.clone();
        if let Some(o) = body.as_object_mut() {
            o.insert("stream".into(), Value::Bool(false));
            o.remove("stream_options");
            o.remove("session_id");
            if let Some(m) = &self.model {
                o.insert("model".into(), Value::String(m.clone()));
            }
        }
        let path = match kind {
            RemoteKind::Chat => "chat/completions",
            RemoteKind::Completion => "completions",
        };
        let url = format!("{}/{path}", self.base);
        let within = self.timeout();
        let a = self
            .client
            .call(
                Method::Post,
                &url,
                "application/json",
                body.to_string().into_bytes(),
            )
            .await
            .map_err(|f| match (f.in_body, f.timed_out) {
                (false, true) => CollabError::remote(
                    "timed out",
                    format!("no answer from {url} within {within:?}"),
                ),
                (false, false) => {
                    CollabError::remote("unreachable", format!("{url}: {}", f.detail))
                }
                (true, true) => CollabError::remote(
                    "timed out",
                    format!("the answer from {url} took longer than {within:?}"),
                ),
                (true, false) => CollabError::remote(
                    "broke off",
                    format!("reading the answer from {url}: {}", f.detail),
                ),
            })?;
        if !a.status.is_success() {
            return Err(CollabError::remote(
                "error status",
                format!("{url} answered {}: {}", a.status, excerpt(&a.body, 200)),
            ));
        }
        let bytes = a.body;
        parse_answer(kind, &bytes)
    }

    /// [`Remote::call`] from synchronous code (`kestrel run`), on a runtime of its own.
    pub fn call_blocking(
        &self,
        kind: RemoteKind,
        body: &Value,
    ) -> Result<RemoteAnswer, CollabError> {
        let rt = crate::http::runtime().map_err(|e| CollabError::remote("unreachable", e))?;
        rt.block_on(self.call(kind, body))
    }
}

/// Check that `bytes` is an OpenAI answer of the given kind and pull out its first choice.
pub fn parse_answer(kind: RemoteKind, bytes: &[u8]) -> Result<RemoteAnswer, CollabError> {
    let malformed = |why: &str| CollabError::remote("malformed answer", why.to_string());
    let body: Value = serde_json::from_slice(bytes)
        .map_err(|e| malformed(&format!("not JSON ({e}): {}", excerpt(bytes, 200))))?;
    let choice = body
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| malformed("no choices"))?;
    let text = match kind {
        RemoteKind::Chat => choice.get("message").and_then(|m| m.get("content")),
        RemoteKind::Completion => choice.get("text"),
    };
    let text = match text {
        Some(Value::String(s)) => s.clone(),
        // A chat answer may carry null content (a refusal or tool call): no text.
        Some(Value::Null) if kind == RemoteKind::Chat => String::new(),
        _ => return Err(malformed("the first choice has no text")),
    };
    let finish_reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .unwrap_or("stop")
        .to_string();
    Ok(RemoteAnswer {
        text,
        finish_reason,
        usage: body.get("usage").filter(|u| u.is_object()).cloned(),
        model: body
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_string),
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Duration::from_secs(1);
        assert_eq!(
            Remote::new("http://h:1", None, t).unwrap().base(),
            "http://h:1/v1"
        );
        assert_eq!(
            Remote::new("http://h:1/v1/", None, t).unwrap().base(),
            "http://h:1/v1"
        );
        assert!(Remote::new("https://h", None, t).is_err());
        assert!(Remote::new("h:1", None, t).is_err());
    }

    #[test]
    fn answers() {
        let ok = br#"{"model":"m","choices":[{"message":{"role":"assistant","content":"Paris"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3}}"#;
        let a = parse_answer(RemoteKind::Chat, ok).unwrap();
        assert_eq!(
            (a.text.as_str(), a.finish_reason.as_str()),
            ("Paris", "stop")
        );
        assert_eq!(a.model.as_deref(), Some("m"));
        let c = br#"{"choices":[{"text":" Paris","finish_reason":"length"}]}"#;
        assert_eq!(
            parse_answer(RemoteKind::Completion, c).unwrap().text,
            " Paris"
        );
        for bad in [
            &b"{\"choices\": ["[..],
            b"[]",
            br#"{"choices":[]}"#,
            br#"{"choices":[{"text":1}]}"#,
        ] {
            assert!(matches!(
                parse_answer(RemoteKind::Completion, bad),
                Err(CollabError::Remote {
                    what: "malformed answer",
                    ..
                })
            ));
        }
        // A chat answer where a completion was asked for has no `text`.
        assert!(parse_answer(RemoteKind::Completion, ok).is_err());
    }
}
