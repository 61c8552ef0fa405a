//! `POST /v1/embeddings`: for a decoder model, the final-normed hidden state of every input
//! token, mean-pooled and L2-normalized (see `Model::embed`). Float lists or base64 of
//! little-endian f32, as OpenAI's `encoding_format` asks.

use super::{body, respond, Shared};
use crate::api::{self, EmbeddingInput, EmbeddingRequest};
use crate::error::ApiError;
use crate::metrics::EMBEDDINGS;
use crate::sched::Job;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;
use tokio::sync::oneshot;

/// Most inputs in one request.
const MAX_INPUTS: usize = 256;

pub(crate) async fn handle(State(st): State<Shared>, b: Result<Bytes, BytesRejection>) -> Response {
    st.metrics.requests[EMBEDDINGS].fetch_add(1, Relaxed);
    let r = run(&st, b).await;
    respond(&st, r)
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn run(st: &Shared, b: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let b = body(b, st.max_body)?;
    let req: EmbeddingRequest = api::parse(&b)?;
    let b64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(f) => {
            return Err(ApiError::bad_request(format!(
                "encoding_format must be 'float' or 'base64', got '{f}'"
            ))
            .param("encoding_format"))
        }
    };
    let engine = st.engine.clone();
    let input = req.input.clone();
    let inputs: Vec<Vec<u32>> = super::gen::blocking(move || {
        let encode = |s: &str| {
            engine
                .tokenizer
                .encode(s, true, false)
                .map_err(|e| ApiError::bad_request(format!("could not tokenize the input: {e}")))
        };
        match input {
            EmbeddingInput::Text(s) => Ok(vec![encode(&s)?]),
            EmbeddingInput::Texts(v) => v.iter().map(|s| encode(s)).collect(),
            EmbeddingInput::Tokens(t) => Ok(vec![t]),
            EmbeddingInput::TokenLists(v) => Ok(v),
        }
    })
    .await??;
    if inputs.is_empty() || inputs.len() > MAX_INPUTS {
        return Err(
            ApiError::bad_request(format!("input must hold 1 to {MAX_INPUTS} items"))
                .param("input"),
        );
    }
    let n_vocab = st.engine.model.hparams().n_vocab;
    let n_ctx = st.engine.n_ctx();
    for t in &inputs {
        if t.is_empty() {
            return Err(ApiError::bad_request("an input is empty").param("input"));
        }
        if t.len() > n_ctx {
            return Err(ApiError::context_exceeded(t.len(), n_ctx).param("input"));
        }
        if let Some(x) = t.iter().find(|&&x| x as usize >= n_vocab) {
            return Err(ApiError::bad_request(format!(
                "token id {x} is outside the vocabulary of {n_vocab}"
            ))
            .param("input"));
        }
    }
    let mut data = Vec::with_capacity(inputs.len());
    let mut total = 0;
    for (i, tokens) in inputs.into_iter().enumerate() {
        total += tokens.len();
        let (tx, rx) = oneshot::channel();
        st.sched.submit(Job::Embed { tokens, reply: tx })?;
        let v = rx
            .await
            .map_err(|_| ApiError::internal("the engine dropped the request"))??;
        let emb: Value = if b64 {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            json!(base64(&bytes))
        } else {
            json!(v)
        };
        data.push(json!({"object": "embedding", "index": i, "embedding": emb}));
    }
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": st.model_id,
        "usage": {"prompt_tokens": total, "total_tokens": total},
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648_examples() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(i.as_bytes()), o);
        }
    }
}
