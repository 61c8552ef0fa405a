//! `POST /v1/completions` (the plain-text completion API): the prompt is tokenized as
//! `kestrel run` does, so greedy output matches it.

use super::answer::{self, Head};
use super::gen::{self, ChunkWriter, GenRequest};
use super::{body, respond, Shared};
use crate::api::{self, CompletionRequest, Prompt};
use crate::error::ApiError;
use crate::metrics::COMPLETIONS;
use crate::routing;
use crate::sched::{Event, TokenLogprob};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::Response;
use kestrel_collab::route::RemoteKind;
use kestrel_engine::Engine;
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering::Relaxed;

pub(crate) async fn handle(State(st): State<Shared>, b: Result<Bytes, BytesRejection>) -> Response {
    st.metrics.requests[COMPLETIONS].fetch_add(1, Relaxed);
    let r = run(&st, b).await;
    respond(&st, r)
}

/// Legacy logprobs: parallel arrays, offsets counted in characters from the start of the text.
#[derive(Default)]
struct LegacyLogprobs {
    tokens: Vec<String>,
    token_logprobs: Vec<Option<f32>>,
    top: Vec<Value>,
    offsets: Vec<usize>,
    at: usize,
}

impl LegacyLogprobs {
    fn push(&mut self, l: &TokenLogprob, first_prompt_token: bool) {
        self.tokens.push(l.token.clone());
        self.token_logprobs.push(l.logprob);
        self.top.push(if first_prompt_token {
            Value::Null
        } else {
            let mut m = Map::new();
            for t in &l.top {
                m.insert(t.token.clone(), json!(t.logprob));
            }
            Value::Object(m)
        });
        self.offsets.push(self.at);
        self.at += l.token.chars().count();
    }

    fn json(&self) -> Value {
        json!({
            "tokens": self.tokens,
            "token_logprobs": self.token_logprobs,
            "top_logprobs": self.top,
            "text_offset": self.offsets,
        })
    }
}

fn prompt_tokens(engine: &Engine, p: &Prompt) -> Result<(Vec<u32>, String), ApiError> {
    let text = match p {
        Prompt::Text(s) => s.clone(),
        Prompt::Texts(v) if v.len() == 1 => v[0].clone(),
        Prompt::Texts(v) => {
            return Err(ApiError::bad_request(format!(
                "{} prompts in one request are not supported (send one)",
                v.len()
            ))
            .param("prompt"))
        }
        Prompt::Tokens(ids) => {
            let n = engine.model.hparams().n_vocab;
            if let Some(t) = ids.iter().find(|&&t| t as usize >= n) {
                return Err(ApiError::bad_request(format!(
                    "token id {t} is outside the vocabulary of {n}"
                ))
                .param("prompt"));
            }
            return Ok((ids.clone(), engine.tokenizer.decode(ids, false)));
        }
    };
    let ids = engine
        .tokenize_prompt(&text)
        .map_err(|e| ApiError::bad_request(format!("could not tokenize the prompt: {e}")))?;
    Ok((ids, text))
}

async fn run(st: &Shared, b: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let b = body(b, st.max_body)?;
    let req: CompletionRequest = api::parse(&b)?;
    let settings = req.sampling.settings()?;
    if req.logprobs.is_some_and(|n| n > 5) {
        return Err(ApiError::bad_request("logprobs must be between 0 and 5").param("logprobs"));
    }
    let top = req.logprobs.map(|n| n as usize);
    let engine = st.engine.clone();
    let p = req.prompt.clone();
    let (prompt, prompt_text) = gen::blocking(move || prompt_tokens(&engine, &p)).await??;
    let routable =
        routing::Routable::new(st, RemoteKind::Completion, &b, &prompt_text, &req.sampling);
    let g = GenRequest::new(
        prompt,
        settings,
        &req.sampling,
        top,
        req.echo && top.is_some(),
    );
    let start = routing::start(st, routable, g).await?;
    let (started, route) = match start {
        routing::Start::Local(s, d) => (s, d),
        routing::Start::Remote(resp) => return Ok(resp),
    };
    let head = Head::new(
        "cmpl",
        "text_completion",
        st.model_id.clone(),
        req.sampling.include_usage(),
        &started,
    );
    let mut lp = LegacyLogprobs::default();
    for (i, l) in started.prompt_logprobs.iter().flatten().enumerate() {
        lp.push(l, i == 0);
    }
    let echo = if req.echo { prompt_text } else { String::new() };
    let mut rx = started.rx;
    if req.sampling.stream {
        let mut w = TextChunks {
            head,
            logprobs: top.is_some(),
            lp: LegacyLogprobs::default(),
        };
        let mut first = Vec::new();
        if !echo.is_empty() {
            let l = if top.is_some() && !lp.tokens.is_empty() {
                lp.json()
            } else {
                Value::Null
            };
            w.lp.at = echo.chars().count();
            first.push(w.chunk(&echo, l, Value::Null));
        }
        let mut resp = gen::sse(first, rx, routing::Tagged::new(w, route.clone()));
        routing::headers(&mut resp, route.as_ref());
        return Ok(resp);
    }
    let c = gen::collect(&mut rx).await?;
    lp.at = echo.chars().count();
    for l in &c.logprobs {
        lp.push(l, false);
    }
    let choice = json!({
        "index": 0,
        "text": echo + &c.text,
        "logprobs": if top.is_some() { lp.json() } else { Value::Null },
        "finish_reason": answer::reason(c.reason),
    });
    let usage = head.usage(c.completion_tokens);
    let v = head.body("text_completion", choice, Some(usage));
    Ok(answer::respond(v, route.as_ref(), c.split))
}

struct TextChunks {
    head: Head,
    logprobs: bool,
    lp: LegacyLogprobs,
}

impl TextChunks {
    fn chunk(&self, text: &str, logprobs: Value, finish: Value) -> Value {
        let choice =
            json!({"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish});
        self.head.chunk(choice)
    }
}

impl ChunkWriter for TextChunks {
    fn event(&mut self, ev: Event) -> Vec<Value> {
        match ev {
            Event::Token { text, logprob } => {
                let lp = match (&logprob, self.logprobs) {
                    (Some(l), true) => {
                        let mut one = LegacyLogprobs {
                            at: self.lp.at,
                            ..Default::default()
                        };
                        one.push(l, false);
                        self.lp.at = one.at;
                        one.json()
                    }
                    _ => Value::Null,
                };
                if text.is_empty() && lp.is_null() {
                    return Vec::new();
                }
                vec![self.chunk(&text, lp, Value::Null)]
            }
            Event::Text(t) => vec![self.chunk(&t, Value::Null, Value::Null)],
            Event::Done {
                reason,
                completion_tokens,
                ..
            } => {
                let last = json!({"index": 0, "text": "", "logprobs": null,
                                  "finish_reason": answer::reason(reason)});
                self.head.finish(last, completion_tokens)
            }
            Event::Started { .. } | Event::Confidence(_) | Event::Error(_) => Vec::new(),
        }
    }
}
