//! The crate's one error type, for all three flows.

use crate::split::proto::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum CollabError {
    #[error("routing policy {path}: {reason}")]
    Policy { path: String, reason: String },
    #[error("remote URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    /// The routing remote could not answer: unreachable, too slow, an error status, or a body
    /// that is not an OpenAI-shaped answer.
    #[error("remote {what}: {detail}")]
    Remote { what: &'static str, detail: String },
    #[error("--verify-remote {url}: {reason}")]
    VerifyUrl { url: String, reason: String },
    /// The verify remote could not be used for this call: `kind` is a short label
    /// ("unreachable", "timed out", "error status", "malformed answer").
    #[error("verify remote {kind}: {detail}")]
    VerifyRemote { kind: &'static str, detail: String },
    /// A verify call the server side refuses (`verify::server`).
    #[error("{message}")]
    VerifyRefused {
        refusal: crate::verify::server::Refusal,
        message: String,
    },
    /// A split message that does not parse (truncated, bad magic, unknown kind or format).
    #[error("malformed split message: {0}")]
    Malformed(String),
    #[error("split protocol version {got} not supported (this side speaks {want})")]
    Version { got: u16, want: u16 },
    /// The split server answered with an error message.
    #[error("split server refused: {code:?}: {message}")]
    Refused { code: ErrorCode, message: String },
    /// The split server could not be reached, timed out or dropped the connection.
    #[error("split transport: {0}")]
    Transport(String),
    #[error("invalid split request: {0}")]
    SplitInvalid(String),
    /// A request this side cannot make (an empty prompt, one that does not encode).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Model(#[from] kestrel_model::ModelError),
    #[error(transparent)]
    Engine(#[from] kestrel_engine::EngineError),
    #[error("{0}")]
    Io(String),
}

impl CollabError {
    pub(crate) fn remote(what: &'static str, detail: impl Into<String>) -> CollabError {
        CollabError::Remote {
            what,
            detail: detail.into(),
        }
    }

    pub(crate) fn verify_remote(kind: &'static str, detail: impl Into<String>) -> CollabError {
        CollabError::VerifyRemote {
            kind,
            detail: detail.into(),
        }
    }
}

pub type Result<T, E = CollabError> = std::result::Result<T, E>;
