//! `POST /v1/chat/completions`.

use super::answer::{self, reason, Head};
use super::gen::{self, ChunkWriter, GenRequest};
use super::{body, respond, Shared};
use crate::api::{self, ChatRequest};
use crate::error::ApiError;
use crate::metrics::CHAT;
use crate::routing;
use crate::sched::{Event, TokenLogprob};
use crate::tools::{self, parse, stream::Splitter, Format, Plan};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::Response;
use kestrel_collab::route::RemoteKind;
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

async fn run(st: &Shared, b: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let b = body(b, st.max_body)?;
    let req: ChatRequest = api::parse(&b)?;
    let format = Format::detect(st.engine.template.source());
    let plan = Plan::new(&req, format)?;
    let mut settings = req.sampling.settings()?;
    if let Some(c) = plan.as_ref().and_then(|p| p.constraint.clone()) {
        if settings.constraint.is_some() {
            return Err(ApiError::bad_request(
                "response_format cannot be combined with tools here: the tool calls already hold the answer to a schema",
            )
            .param("response_format"));
        }
        settings.constraint = Some(c);
    }
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
    let system = plan.as_ref().and_then(|p| p.system.as_deref());
    let msgs = tools::messages(&req.messages, format, system)?;
    let template_tools = plan.as_ref().and_then(|p| p.template_tools.clone());
    let text: Vec<&str> = msgs.iter().map(|m| m.content.as_str()).collect();
    let text = text.join("\n");
    let engine = st.engine.clone();
    let prompt = gen::blocking(move || engine.tokenize_chat_tools(&msgs, template_tools.as_ref()))
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
            tools: plan.as_ref().map(|p| Splitter::new(p.format)),
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
    let (message, finish) = match &plan {
        None => (
            json!({"role": "assistant", "content": c.text}),
            reason(c.reason),
        ),
        Some(p) => {
            let parsed = parse::parse(p.format, &c.text);
            let mut m = json!({"role": "assistant", "content": parsed.content});
            let finish = if parsed.calls.is_empty() {
                reason(c.reason)
            } else {
                m["tool_calls"] = Value::Array(parsed.calls.iter().map(call_json).collect());
                json!("tool_calls")
            };
            (m, finish)
        }
    };
    let choice = json!({
        "index": 0,
        "message": message,
        "logprobs": logprobs,
        "finish_reason": finish,
    });
    let usage = head.usage(c.completion_tokens);
    let v = head.body("chat.completion", choice, Some(usage));
    Ok(answer::respond(v, route.as_ref(), c.split))
}

/// A call as OpenAI writes it in an answer.
fn call_json(c: &parse::Call) -> Value {
    json!({"id": tools::call_id(), "type": "function",
           "function": {"name": c.name, "arguments": c.arguments}})
}

struct ChatChunks {
    head: Head,
    logprobs: bool,
    /// Set when tools may be called: content is sent only once it cannot be part of a call.
    tools: Option<Splitter>,
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
                if let Some(s) = &mut self.tools {
                    // Held text has no place for its logprobs; a streamed answer with tools
                    // carries none (the whole answer has them).
                    let text = s.push(&text);
                    if text.is_empty() {
                        return Vec::new();
                    }
                    return vec![self.chunk(json!({"content": text}), Value::Null, Value::Null)];
                }
                if text.is_empty() && lp.is_null() {
                    return Vec::new();
                }
                vec![self.chunk(json!({"content": text}), lp, Value::Null)]
            }
            Event::Text(t) => {
                let t = match &mut self.tools {
                    Some(s) => s.push(&t),
                    None => t,
                };
                if t.is_empty() {
                    return Vec::new();
                }
                vec![self.chunk(json!({"content": t}), Value::Null, Value::Null)]
            }
            Event::Done {
                reason,
                completion_tokens,
                ..
            } => {
                let mut out = Vec::new();
                let mut finish = answer::reason(reason);
                if let Some(s) = self.tools.take() {
                    let parsed = s.finish();
                    if let Some(c) = parsed.content {
                        out.push(self.chunk(json!({"content": c}), Value::Null, Value::Null));
                    }
                    for (k, c) in parsed.calls.iter().enumerate() {
                        let mut call = call_json(c);
                        call["index"] = json!(k);
                        out.push(self.chunk(
                            json!({"tool_calls": [call]}),
                            Value::Null,
                            Value::Null,
                        ));
                    }
                    if !parsed.calls.is_empty() {
                        finish = json!("tool_calls");
                    }
                }
                let last = json!({"index": 0, "delta": {}, "logprobs": null,
                                  "finish_reason": finish});
                out.extend(self.head.finish(last, completion_tokens));
                out
            }
            Event::Started { .. } | Event::Confidence(_) | Event::Error(_) => Vec::new(),
        }
    }
}
