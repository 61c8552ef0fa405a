//! The HTTP routes: OpenAI's endpoints, health, metrics and session files; authentication,
//! body limits and OpenAI-shaped errors for everything else.

mod answer;
mod chat;
mod completions;
mod embeddings;
pub(crate) mod gen;
mod split;
pub(crate) mod verify;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::sched::{Job, Scheduler};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kestrel_engine::Engine;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::sync::oneshot;

pub struct AppState {
    pub engine: Arc<Engine>,
    pub sched: Scheduler,
    pub metrics: Arc<Metrics>,
    /// The id clients name the model by.
    pub model_id: String,
    pub api_key: Option<String>,
    /// Confidence routing (`--route-remote`), when on.
    pub(crate) router: Option<crate::routing::Router>,
    /// Unix seconds at start.
    pub created: u64,
    /// Longest draft `POST /v1/verify` takes.
    pub verify_max_draft: usize,
    /// Largest request body (`--max-body`).
    pub max_body: usize,
    /// The vocabulary's constrained-output parser factory, made at the first request that
    /// asks for structured output.
    pub grammars: std::sync::OnceLock<Result<Arc<kestrel_grammar::Grammars>, String>>,
}

impl AppState {
    /// A constraint for `spec` over the model's vocabulary; an invalid schema is a 400.
    pub(crate) fn constraint(
        &self,
        spec: kestrel_grammar::Spec,
    ) -> Result<kestrel_engine::decoding::ConstraintSpec, ApiError> {
        let g = self.grammars.get_or_init(|| {
            kestrel_grammar::Grammars::new(self.engine.tokenizer.clone())
                .map(Arc::new)
                .map_err(|e| e.to_string())
        });
        let g = g.as_ref().map_err(|e| ApiError::internal(e.clone()))?;
        g.spec(spec)
            .map_err(|e| ApiError::bad_request(e.to_string()).param("response_format"))
    }
}

pub type Shared = Arc<AppState>;

/// The routes; with `split_body` (`--split-server`) also the split route, whose messages
/// may be that large.
pub fn router(
    state: Shared,
    max_body: usize,
    split_body: Option<usize>,
    body_timeout: std::time::Duration,
) -> Router {
    let mut r = Router::new();
    if let Some(limit) = split_body {
        let route = post(split::handle).layer(DefaultBodyLimit::max(limit));
        r = r.route(kestrel_collab::split::proto::ROUTE, route);
    }
    r.route("/v1/chat/completions", post(chat::handle))
        .route("/v1/completions", post(completions::handle))
        .route("/v1/embeddings", post(embeddings::handle))
        .route("/v1/verify", post(verify::handle))
        .route("/v1/verify/{id}", axum::routing::delete(verify::close))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/v1/sessions/{id}/save", post(save_session))
        .route("/v1/sessions/{id}/restore", post(restore_session))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(middleware::from_fn(access_log))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            body_timeout,
            crate::listen::timed_body,
        ))
        .with_state(state)
}

/// The access log: one line per request on stderr (method, path, status, time to the
/// response's head; a stream goes on after it). Successful `/health` and `/metrics` polls
/// are left out, so a monitor does not drown the rest.
async fn access_log(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let t0 = std::time::Instant::now();
    let resp = next.run(req).await;
    let status = resp.status();
    let poll = matches!(path.as_str(), "/health" | "/metrics");
    if !(poll && status.is_success()) {
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        eprintln!(
            "kestrel serve: {method} {path} {} {ms:.1} ms",
            status.as_u16()
        );
    }
    resp
}

/// With `--api-key`, every route but `/health` needs `Authorization: Bearer KEY`.
async fn auth(State(st): State<Shared>, req: Request, next: Next) -> Response {
    if let Some(key) = &st.api_key {
        if req.uri().path() != "/health" {
            let ok = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .is_some_and(|k| k.trim() == key);
            if !ok {
                st.metrics.errors.fetch_add(1, Relaxed);
                return ApiError::unauthorized().into_response();
            }
        }
    }
    next.run(req).await
}

/// The body, or the OpenAI-shaped error for a body that could not be read (413 when over
/// `limit` bytes, naming it).
pub(crate) fn body(b: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    b.map_err(|r| {
        let status = r.status();
        let text = r.body_text();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            let msg = format!("request body too large: the limit is {limit} bytes (--max-body)");
            ApiError::with_status(status, msg).code("body_too_large")
        } else if let Some(at) = text.find(crate::listen::STALLED) {
            ApiError::with_status(StatusCode::REQUEST_TIMEOUT, &text[at..]).code("body_timeout")
        } else {
            ApiError::with_status(status, text)
        }
    })
}

/// Count an error answer in the metrics.
pub(crate) fn respond(st: &AppState, r: Result<Response, ApiError>) -> Response {
    match r {
        Ok(r) => r,
        Err(e) => {
            st.metrics.errors.fetch_add(1, Relaxed);
            e.into_response()
        }
    }
}

impl AppState {
    /// `GET /v1/models/{id}` knows only the model served (by its id or `--alias`); a
    /// generation request may name any model, since one is served (llama-server's behaviour).
    pub(crate) fn check_model(&self, m: &str) -> Result<(), ApiError> {
        if m == self.model_id {
            Ok(())
        } else {
            Err(ApiError::model_not_found(m, &self.model_id))
        }
    }

    fn model_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.model_id,
            "object": "model",
            "created": self.created,
            "owned_by": "kestrel",
        })
    }
}

async fn models(State(st): State<Shared>) -> Response {
    st.metrics.requests[crate::metrics::OTHER].fetch_add(1, Relaxed);
    Json(serde_json::json!({"object": "list", "data": [st.model_json()]})).into_response()
}

async fn model(State(st): State<Shared>, Path(id): Path<String>) -> Response {
    st.metrics.requests[crate::metrics::OTHER].fetch_add(1, Relaxed);
    let r = st
        .check_model(&id)
        .map(|_| Json(st.model_json()).into_response());
    respond(&st, r)
}

async fn health() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn metrics(State(st): State<Shared>) -> Response {
    let mut text = st.metrics.render();
    if let Some(r) = &st.router {
        r.counts.render(&mut text);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn session_job(
    st: &AppState,
    id: &str,
    make: impl FnOnce(String, oneshot::Sender<Result<crate::sched::SessionInfo, ApiError>>) -> Job,
) -> Result<Response, ApiError> {
    crate::api::check_session_id(id)?;
    let (tx, rx) = oneshot::channel();
    st.sched.submit(make(id.to_string(), tx))?;
    let info = rx
        .await
        .map_err(|_| ApiError::internal("the engine dropped the request"))??;
    Ok(Json(serde_json::json!({
        "id": info.id,
        "object": "session",
        "tokens": info.tokens,
        "bytes": info.bytes,
        "file": info.path.file_name().map(|f| f.to_string_lossy().into_owned()),
    }))
    .into_response())
}

async fn save_session(State(st): State<Shared>, Path(id): Path<String>) -> Response {
    st.metrics.requests[crate::metrics::OTHER].fetch_add(1, Relaxed);
    let r = session_job(&st, &id, |id, reply| Job::SaveSession { id, reply }).await;
    respond(&st, r)
}

async fn restore_session(State(st): State<Shared>, Path(id): Path<String>) -> Response {
    st.metrics.requests[crate::metrics::OTHER].fetch_add(1, Relaxed);
    let r = session_job(&st, &id, |id, reply| Job::RestoreSession { id, reply }).await;
    respond(&st, r)
}

async fn not_found(State(st): State<Shared>, method: Method, uri: Uri) -> Response {
    st.metrics.errors.fetch_add(1, Relaxed);
    ApiError::not_found(format!("unknown route {method} {}", uri.path())).into_response()
}

async fn method_not_allowed(State(st): State<Shared>, method: Method, uri: Uri) -> Response {
    st.metrics.errors.fetch_add(1, Relaxed);
    ApiError::with_status(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
    .into_response()
}
