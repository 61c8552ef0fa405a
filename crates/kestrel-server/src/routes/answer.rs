//! What the chat and text completion answers share: the fields every body and streamed chunk
//! carries (id, creation time, model, object type), the usage counts, the closing chunks of a
//! stream, and the routing and split tags of a finished answer.

use super::gen::{self, Started};
use crate::routing;
use crate::sched::FinishReason;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kestrel_collab::route::Decision;
use serde_json::{json, Value};

pub(crate) struct Head {
    pub id: String,
    pub created: u64,
    pub model: String,
    /// The object type of a streamed chunk (`chat.completion.chunk`, `text_completion`).
    pub chunk_object: &'static str,
    /// Stream a last chunk with the usage counts.
    pub include_usage: bool,
    pub prompt_tokens: usize,
    pub reused: usize,
}

impl Head {
    /// A fresh id with `prefix`, now, for the prompt `started` evaluated.
    pub fn new(
        prefix: &str,
        chunk_object: &'static str,
        model: String,
        include_usage: bool,
        started: &Started,
    ) -> Head {
        Head {
            id: gen::new_id(prefix),
            created: gen::now_secs(),
            model,
            chunk_object,
            include_usage,
            prompt_tokens: started.prompt_tokens,
            reused: started.reused,
        }
    }

    /// A body of `object` with one choice (and `usage` when given).
    pub fn body(&self, object: &str, choice: Value, usage: Option<Value>) -> Value {
        let mut v = json!({
            "id": self.id, "object": object, "created": self.created, "model": self.model,
            "choices": [choice],
        });
        if let Some(u) = usage {
            v["usage"] = u;
        }
        v
    }

    /// A streamed chunk with one choice.
    pub fn chunk(&self, choice: Value) -> Value {
        self.body(self.chunk_object, choice, None)
    }

    pub fn usage(&self, completion_tokens: usize) -> Value {
        gen::usage(self.prompt_tokens, self.reused, completion_tokens)
    }

    /// A stream's last chunks: `last` (the choice with its finish reason), then the usage
    /// when asked for (a chunk with no choices, as OpenAI sends it).
    pub fn finish(&self, last: Value, completion_tokens: usize) -> Vec<Value> {
        let mut v = vec![self.chunk(last)];
        if self.include_usage {
            let mut u = self.chunk(Value::Null);
            u["choices"] = json!([]);
            u["usage"] = self.usage(completion_tokens);
            v.push(u);
        }
        v
    }
}

/// A choice's finish reason as JSON.
pub(crate) fn reason(r: FinishReason) -> Value {
    json!(r.as_str())
}

/// A finished answer with its routing decision and split report tagged on.
pub(crate) fn respond(mut v: Value, route: Option<&Decision>, split: Option<Value>) -> Response {
    routing::tag(&mut v, route);
    routing::tag_split(&mut v, split);
    let mut resp = Json(v).into_response();
    routing::headers(&mut resp, route);
    resp
}
