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
use kestrel_collab::route::{Decision, RemoteAnswer, RemoteKind};
use serde_json::{json, Value};
use std::convert::Infallible;

/// Add the decision to a response object's `kestrel` field.
pub(crate) fn tag(v: &mut Value, d: Option<&Decision>) {
    if let Some(Value::Object(fields)) = d.map(Decision::json) {
        kestrel_field(v, fields);
    }
}

/// Add a split report (`--split-remote`) to a response object's `kestrel` field.
pub(crate) fn tag_split(v: &mut Value, split: Option<Value>) {
    if let Some(s) = split {
        let mut m = serde_json::Map::new();
        m.insert("split".into(), s);
        kestrel_field(v, m);
    }
}

/// Merge `fields` into the object's `kestrel` field (routing and split both write there).
fn kestrel_field(v: &mut Value, fields: serde_json::Map<String, Value>) {
    if let Some(o) = v.as_object_mut() {
        let k = o.entry("kestrel").or_insert_with(|| json!({}));
        if let Some(k) = k.as_object_mut() {
            k.extend(fields);
        }
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

/// A chunk writer whose finishing chunk carries the decision and the split report.
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
    fn event(&mut self, mut ev: Event) -> Vec<Value> {
        let split = match &mut ev {
            Event::Done { split, .. } => Some(split.take()),
            _ => None,
        };
        let mut out = self.inner.event(ev);
        if let (Some(split), Some(first)) = (split, out.first_mut()) {
            tag(first, self.decision.as_ref());
            tag_split(first, split);
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
