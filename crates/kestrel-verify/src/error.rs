#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("--verify-remote {url}: {reason}")]
    Url { url: String, reason: String },
    /// The remote could not be used for this call: `kind` is a short label ("unreachable",
    /// "timed out", "error status", "malformed answer").
    #[error("verify remote {kind}: {detail}")]
    Remote { kind: &'static str, detail: String },
    #[error(transparent)]
    Engine(#[from] kestrel_engine::EngineError),
    #[error("{0}")]
    Invalid(String),
}

impl VerifyError {
    pub(crate) fn remote(kind: &'static str, detail: impl Into<String>) -> VerifyError {
        VerifyError::Remote {
            kind,
            detail: detail.into(),
        }
    }
}
