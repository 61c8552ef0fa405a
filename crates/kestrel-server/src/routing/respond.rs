//! How a routing decision shows in a response: a `kestrel` field in the JSON (the last chunk,
//! and the chat head chunk, of a stream), `x-kestrel-routed` and `x-kestrel-route-reason`
//! headers; and the remote's answer turned into this server's response, as one JSON object or,
//! for a streaming client, as server-sent chunks.

use super::Routable;
use crate::routes::gen::{self, ChunkWriter};
use crate::sched::Event;
use axum::http::HeaderValue;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream;
use kestrel_route::{Decision, RemoteAnswer, RemoteKind};
use serde_json::{json, Value};
use std::convert::Infallible;

/// Add the `kestrel` field to a response object.
pub(crate) fn tag(v: &mut Value, d: Option<&Decision>) {
    if let (Some(d), Some(o)) = (d, v.as_object_mut()) {
        o.insert("kestrel".into(), d.json());
    }
}

pub(crate) fn headers(r: &mut Response, d: Option<&Decision>) {
    if let Some(d) = d {
        let h = r.headers_mut();
        h.insert(
            "x-kestrel-routed",
            HeaderValue::from_static(d.target.as_str()),
        );
        h.insert(
            "x-kestrel-route-reason",
            HeaderValue::from_static(d.reason.as_str()),
        );
    }
}

/// A chunk writer whose finishing chunk carries the decision.
pub(crate) struct Tagged<W> {
    inner: W,
    decision: Option<Decision>,
}

impl<W> Tagged<W> {
    pub fn new(inner: W, decision: Option<Decision>) -> Tagged<W> {
        Tagged { inner, decision }
    }
}

impl<W: ChunkWriter> ChunkWriter for Tagged<W> {
    fn event(&mut self, ev: Event) -> Vec<Value> {
        let done = matches!(ev, Event::Done { .. });
        let mut out = self.inner.event(ev);
        if done {
            if let Some(first) = out.first_mut() {
                tag(first, self.decision.as_ref());
            }
        }
        out
    }
}

/// The response for a remote answer.
pub(crate) fn remote(r: &Routable<'_>, a: RemoteAnswer, d: &Decision) -> Response {
    let mut resp = if r.stream {
        let data: Vec<String> = chunks(r, &a, d)
            .iter()
            .map(Value::to_string)
            .chain(std::iter::once("[DONE]".to_string()))
            .collect();
        let s = stream::iter(
            data.into_iter()
                .map(|x| Ok::<_, Infallible>(SseEvent::default().data(x))),
        );
        Sse::new(s).into_response()
    } else {
        let mut body = a.body;
        tag(&mut body, Some(d));
        Json(body).into_response()
    };
    headers(&mut resp, Some(d));
    resp
}

/// A whole remote answer as a stream's chunks: the text in one, then the finish (and usage).
fn chunks(r: &Routable<'_>, a: &RemoteAnswer, d: &Decision) -> Vec<Value> {
    let id = a
        .body
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| gen::new_id("route"));
    let created = a
        .body
        .get("created")
        .and_then(Value::as_u64)
        .unwrap_or_else(gen::now_secs);
    let model = a.model.clone().unwrap_or_default();
    let (object, text_choice, end_choice) = match r.kind {
        RemoteKind::Chat => (
            "chat.completion.chunk",
            json!({"index": 0, "delta": {"role": "assistant", "content": a.text},
                   "logprobs": null, "finish_reason": null}),
            json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": a.finish_reason}),
        ),
        RemoteKind::Completion => (
            "text_completion",
            json!({"index": 0, "text": a.text, "logprobs": null, "finish_reason": null}),
            json!({"index": 0, "text": "", "logprobs": null, "finish_reason": a.finish_reason}),
        ),
    };
    let chunk = |choices: Value| json!({"id": id, "object": object, "created": created, "model": model, "choices": choices});
    let mut first = chunk(json!([text_choice]));
    tag(&mut first, Some(d));
    let mut last = chunk(json!([end_choice]));
    tag(&mut last, Some(d));
    let mut out = vec![first, last];
    if r.include_usage {
        if let Some(u) = &a.usage {
            let mut c = chunk(json!([]));
            c["usage"] = u.clone();
            out.push(c);
        }
    }
    out
}
