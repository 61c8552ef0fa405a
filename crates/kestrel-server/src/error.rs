//! Errors: [`ServerError`] for starting the server and for session files, [`ApiError`] for
//! what a request gets back, in OpenAI's error shape.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Engine(#[from] kestrel_engine::EngineError),
    #[error(transparent)]
    Model(#[from] kestrel_model::ModelError),
    #[error("{0}")]
    Io(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("session file {path}: {reason}")]
    SessionFile { path: String, reason: String },
}

/// A request's failure: HTTP status plus OpenAI's `{"error": {message, type, param, code}}`.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<std::borrow::Cow<'static, str>>,
    pub code: Option<&'static str>,
    /// Seconds for a `Retry-After` header (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// The request field at fault (a literal, or a path such as `messages[0].content`).
    pub fn param(mut self, p: impl Into<std::borrow::Cow<'static, str>>) -> ApiError {
        self.param = Some(p.into());
        self
    }

    pub fn code(mut self, c: &'static str) -> ApiError {
        self.code = Some(c);
        self
    }

    pub fn context_exceeded(prompt: usize, n_ctx: usize) -> ApiError {
        ApiError::bad_request(format!(
            "the prompt is {prompt} tokens, but the context holds {n_ctx} (and generation needs at least one more position)"
        ))
        .code("context_length_exceeded")
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "missing or wrong API key (send it as 'Authorization: Bearer KEY')",
        )
        .code("invalid_api_key")
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
    }

    pub fn model_not_found(model: &str, ours: &str) -> ApiError {
        ApiError::not_found(format!(
            "the model '{model}' does not exist; this server serves '{ours}'"
        ))
        .param("model")
        .code("model_not_found")
    }

    pub fn busy(retry_after: u64) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "the server's request queue is full; retry later",
        )
        .code("queue_full");
        e.retry_after = Some(retry_after);
        e
    }

    pub fn timeout(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "timeout_error", message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    pub fn with_status(status: StatusCode, message: impl Into<String>) -> ApiError {
        let kind = if status.is_server_error() {
            "server_error"
        } else {
            "invalid_request_error"
        };
        ApiError::new(status, kind, message)
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, s.into());
        }
        r
    }
}
