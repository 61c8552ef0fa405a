//! `POST /v1/verify` and `DELETE /v1/verify/{id}`: remote verification of a device's drafts
//! (docs/server.md). The shape of a request is checked here; the session work runs on the
//! engine thread (`sched::verify`).

use super::{body, respond, Shared};
use crate::api;
use crate::error::ApiError;
use crate::metrics::OTHER;
use crate::sched::{Job, VerifyJob};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kestrel_collab::verify::proto::{Prompt, VerifyRequest};
use kestrel_collab::CollabError;
use kestrel_engine::SamplerConfig;
use std::sync::atomic::Ordering::Relaxed;
use tokio::sync::oneshot;

/// Most alternatives per token with `logprobs`.
const MAX_TOP: usize = 20;

pub(crate) async fn handle(State(st): State<Shared>, b: Result<Bytes, BytesRejection>) -> Response {
    st.metrics.requests[OTHER].fetch_add(1, Relaxed);
    let r = run(&st, b).await;
    respond(&st, r)
}

pub(crate) async fn close(State(st): State<Shared>, Path(id): Path<String>) -> Response {
    st.metrics.requests[OTHER].fetch_add(1, Relaxed);
    let r = async {
        let (tx, rx) = oneshot::channel();
        st.sched.submit_side(Job::CloseVerify {
            id: id.clone(),
            reply: tx,
        })?;
        rx.await
            .map_err(|_| ApiError::internal("the engine dropped the request"))??;
        Ok(
            Json(serde_json::json!({"id": id, "object": "verify.session", "deleted": true}))
                .into_response(),
        )
    }
    .await;
    respond(&st, r)
}

async fn run(st: &Shared, b: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let b = body(b, st.max_body)?;
    let req: VerifyRequest = api::parse(&b)?;
    let n_vocab = st.engine.model.hparams().n_vocab;
    let max_draft = st.verify_max_draft;
    if req.draft.len() > max_draft {
        return Err(ApiError::bad_request(format!(
            "the draft has {} tokens; this server verifies at most {max_draft} per call",
            req.draft.len()
        ))
        .param("draft")
        .code("draft_too_long"));
    }
    check_ids(&req.draft, n_vocab, "draft")?;
    let top = match req.top_logprobs {
        Some(n) if n > MAX_TOP => {
            return Err(ApiError::bad_request(format!(
                "top_logprobs must be between 0 and {MAX_TOP}, got {n}"
            ))
            .param("top_logprobs"))
        }
        n => n.unwrap_or(0),
    };
    let open = match &req.session {
        Some(id) => {
            let opening_only = req.prompt.is_some()
                || req.vocab.is_some()
                || req.temperature.is_some()
                || req.top_k.is_some()
                || req.top_p.is_some()
                || req.seed.is_some();
            if opening_only {
                return Err(ApiError::bad_request(format!(
                    "session '{id}' is open: prompt, vocab and sampling are given only when opening one"
                )));
            }
            None
        }
        None => Some(open_args(st, &req, n_vocab).await?),
    };
    let (tx, rx) = oneshot::channel();
    st.sched.submit_side(Job::Verify {
        job: VerifyJob {
            session: req.session.clone(),
            open,
            draft: req.draft.clone(),
            logprobs: req.logprobs.then_some(top),
        },
        reply: tx,
    })?;
    let resp = rx
        .await
        .map_err(|_| ApiError::internal("the engine dropped the request"))??;
    Ok(Json(resp).into_response())
}

fn check_ids(ids: &[u32], n_vocab: usize, param: &'static str) -> Result<(), ApiError> {
    match ids.iter().find(|&&x| x as usize >= n_vocab) {
        Some(x) => Err(ApiError::bad_request(format!(
            "token id {x} is outside the vocabulary of {n_vocab}"
        ))
        .param(param)
        .code("token_out_of_vocabulary")),
        None => Ok(()),
    }
}

/// The prompt's tokens and the sampling of a new session, after checking that the drafter's
/// vocabulary (when it says which) is the server's.
async fn open_args(
    st: &Shared,
    req: &VerifyRequest,
    n_vocab: usize,
) -> Result<(Vec<u32>, SamplerConfig), ApiError> {
    let engine = st.engine.clone();
    let prompt = req.prompt.clone();
    let vocab = req.vocab.clone();
    let tokens = super::gen::blocking(move || {
        if let Some(v) = &vocab {
            let ours = kestrel_collab::verify::vocab_fingerprint(&engine.tokenizer);
            let size = engine.tokenizer.vocab_size();
            if v.size != size || v.fingerprint != ours {
                return Err(ApiError::bad_request(format!(
                    "the drafter's vocabulary ({} tokens, fingerprint {}) is not the server's ({size} tokens, fingerprint {ours}): drafts would mean other text here",
                    v.size, v.fingerprint
                ))
                .param("vocab")
                .code("vocab_mismatch"));
            }
        }
        match prompt {
            None => Err(ApiError::bad_request("a new session needs a prompt (text or token ids)")
                .param("prompt")),
            Some(Prompt::Text(t)) => engine
                .tokenize_prompt(&t)
                .map_err(|e| ApiError::bad_request(format!("could not tokenize the prompt: {e}"))),
            Some(Prompt::Tokens(t)) => Ok(t),
        }
    })
    .await??;
    if tokens.is_empty() {
        return Err(ApiError::bad_request("the prompt is empty").param("prompt"));
    }
    check_ids(&tokens, n_vocab, "prompt")?;
    let n_ctx = st.engine.n_ctx();
    if tokens.len() + req.draft.len() >= n_ctx {
        return Err(
            ApiError::context_exceeded(tokens.len() + req.draft.len(), n_ctx).param("prompt"),
        );
    }
    let sampler = SamplerConfig {
        temperature: req.temperature.unwrap_or(0.0),
        top_k: req.top_k.unwrap_or(0),
        top_p: req.top_p.unwrap_or(1.0),
        min_p: 0.0,
        repeat_penalty: 1.0,
        seed: req.seed.unwrap_or(0),
        ..SamplerConfig::default()
    };
    sampler.validate().map_err(ApiError::bad_request)?;
    Ok((tokens, sampler))
}

/// A verify call's error as the API answers it.
pub(crate) fn verify_error(e: CollabError) -> ApiError {
    use kestrel_collab::verify::server::Refusal;
    use kestrel_engine::EngineError;
    match e {
        CollabError::VerifyRefused { refusal, message } => match refusal {
            Refusal::Expired => {
                ApiError::with_status(StatusCode::GONE, message).code("session_expired")
            }
            Refusal::NotFound => ApiError::not_found(message)
                .param("session")
                .code("session_not_found"),
            Refusal::TooManySessions { retry_after } => {
                let mut e = ApiError::with_status(StatusCode::TOO_MANY_REQUESTS, message)
                    .code("too_many_sessions");
                e.retry_after = Some(retry_after);
                e
            }
            Refusal::ContextExceeded => {
                ApiError::bad_request(message).code("context_length_exceeded")
            }
            Refusal::BadRequest => ApiError::bad_request(message),
        },
        CollabError::Engine(EngineError::PromptTooLong { prompt, n_ctx }) => {
            ApiError::context_exceeded(prompt, n_ctx)
        }
        CollabError::Engine(EngineError::EmptyPrompt) => {
            ApiError::bad_request("the prompt is empty").param("prompt")
        }
        CollabError::Engine(EngineError::Sampling(m)) => ApiError::bad_request(m),
        e => ApiError::internal(e.to_string()),
    }
}
