//! The crate's one error type.

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("routing policy {path}: {reason}")]
    Policy { path: String, reason: String },
    #[error("remote URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    /// The remote could not answer: unreachable, too slow, an error status, or a body that is
    /// not an OpenAI-shaped answer.
    #[error("remote {what}: {detail}")]
    Remote { what: &'static str, detail: String },
}

impl RouteError {
    pub(crate) fn remote(what: &'static str, detail: impl Into<String>) -> RouteError {
        RouteError::Remote {
            what,
            detail: detail.into(),
        }
    }
}
