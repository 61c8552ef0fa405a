//! `POST /v1/chat/completions`.

use super::answer::{self, reason, Head};
use super::gen::{self, ChunkWriter, GenRequest};
use super::{body, respond, Shared};
use crate::api::{self, ChatRequest};
use crate::error::ApiError;
use crate::metrics::CHAT;
use crate::routing;
use crate::sched::{Event, TokenLogprob};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::Response;
use kestrel_collab::route::RemoteKind;
use kestrel_engine::ChatMessage;
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;

pub(crate) async fn handle(State(st): State<Shared>, b: Result<Bytes, BytesRejection>) -> Response {
    st.metrics.requests[CHAT].fetch_add(1, Relaxed);
    let r = run(&st, b).await;
    respond(&st, r)
}

fn lp_json(l: &TokenLogprob) -> Value {
    json!({
        "token": l.token,
        "logprob": l.logprob,
        "bytes": l.bytes,
        "top_logprobs": l.top.iter().map(|t| json!({
            "token": t.token, "logprob": t.logprob, "bytes": t.bytes,
        })).collect::<Vec<_>>(),
    })
}

fn messages(req: &ChatRequest) -> Result<Vec<ChatMessage>, ApiError> {
    if req.messages.is_empty() {
        return Err(ApiError::bad_request("messages must not be empty").param("messages"));
    }
    req.messages
        .iter()
        .map(|m| {
            let role = match m.role.as_str() {
                "system" | "developer" => "system",
                "user" => "user",
                "assistant" => "assistant",
                other => {
                    return Err(ApiError::bad_request(format!(
                    "message role '{other}' is not supported (system, developer, user, assistant)"
                ))
                    .param("messages"))
                }
            };
            Ok(ChatMessage::new(role, m.text()?))
        })
        .collect()
}

async fn run(st: &Shared, b: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let b = body(b, st.max_body)?;
    let req: ChatRequest = api::parse(&b)?;
    let settings = req.sampling.settings()?;
    let top = match (req.logprobs, req.top_logprobs) {
        (_, Some(n)) if n > 20 => {
            return Err(
                ApiError::bad_request("top_logprobs must be between 0 and 20")
                    .param("top_logprobs"),
            )
        }
        (false, Some(_)) => {
            return Err(
                ApiError::bad_request("top_logprobs needs logprobs set to true")
                    .param("top_logprobs"),
            )
        }
        (true, n) => Some(n.unwrap_or(0) as usize),
        (false, None) => None,
    };
    let msgs = messages(&req)?;
    let text: Vec<&str> = msgs.iter().map(|m| m.content.as_str()).collect();
    let text = text.join("\n");
    let engine = st.engine.clone();
    let prompt = gen::blocking(move || engine.tokenize_chat(&msgs))
        .await?
        .map_err(|e| ApiError::bad_request(format!("could not apply the chat template: {e}")))?;
    let routable = routing::Routable::new(st, RemoteKind::Chat, &b, &text, &req.sampling);
    let g = GenRequest::new(prompt, settings, &req.sampling, top, false);
    let start = routing::start(st, routable, g).await?;
    let (started, route) = match start {
        routing::Start::Local(s, d) => (s, d),
        routing::Start::Remote(resp) => return Ok(resp),
    };
    let head = Head::new(
        "chatcmpl",
        "chat.completion.chunk",
        st.model_id.clone(),
        req.sampling.include_usage(),
        &started,
    );
    let mut rx = started.rx;
    if req.sampling.stream {
        let mut first = head.chunk(
            json!({"index": 0, "delta": {"role": "assistant", "content": ""},
                                          "logprobs": null, "finish_reason": null}),
        );
        routing::tag(&mut first, route.as_ref());
        let w = ChatChunks {
            head,
            logprobs: top.is_some(),
        };
        let mut resp = gen::sse(vec![first], rx, routing::Tagged::new(w, route.clone()));
        routing::headers(&mut resp, route.as_ref());
        return Ok(resp);
    }
    let c = gen::collect(&mut rx).await?;
    let logprobs = if top.is_some() {
        json!({"content": c.logprobs.iter().map(lp_json).collect::<Vec<_>>()})
    } else {
        Value::Null
    };
    let choice = json!({
        "index": 0,
        "message": {"role": "assistant", "content": c.text},
        "logprobs": logprobs,
        "finish_reason": reason(c.reason),
    });
    let usage = head.usage(c.completion_tokens);
    let v = head.body("chat.completion", choice, Some(usage));
    Ok(answer::respond(v, route.as_ref(), c.split))
}

struct ChatChunks {
    head: Head,
    logprobs: bool,
}

impl ChatChunks {
    fn chunk(&self, delta: Value, logprobs: Value, finish: Value) -> Value {
        let choice =
            json!({"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish});
        self.head.chunk(choice)
    }
}

impl ChunkWriter for ChatChunks {
    fn event(&mut self, ev: Event) -> Vec<Value> {
        match ev {
            Event::Token { text, logprob } => {
                let lp = match (&logprob, self.logprobs) {
                    (Some(l), true) => json!({"content": [lp_json(l)]}),
                    _ => Value::Null,
                };
                if text.is_empty() && lp.is_null() {
                    return Vec::new();
                }
                vec![self.chunk(json!({"content": text}), lp, Value::Null)]
            }
            Event::Text(t) => vec![self.chunk(json!({"content": t}), Value::Null, Value::Null)],
            Event::Done {
                reason,
                completion_tokens,
                ..
            } => {
                let last = json!({"index": 0, "delta": {}, "logprobs": null,
                                  "finish_reason": answer::reason(reason)});
                self.head.finish(last, completion_tokens)
            }
            Event::Started { .. } | Event::Confidence(_) | Event::Error(_) => Vec::new(),
        }
    }
}
