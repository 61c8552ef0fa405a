//! The crate's one error type.

use crate::proto::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    /// A message that does not parse (truncated, bad magic, unknown kind or format).
    #[error("malformed split message: {0}")]
    Malformed(String),
    #[error("split protocol version {got} not supported (this side speaks {want})")]
    Version { got: u16, want: u16 },
    /// The server answered with an error message.
    #[error("split server refused: {code:?}: {message}")]
    Remote { code: ErrorCode, message: String },
    /// The server could not be reached, timed out or dropped the connection.
    #[error("split transport: {0}")]
    Transport(String),
    #[error("invalid split request: {0}")]
    Invalid(String),
    #[error(transparent)]
    Model(#[from] kestrel_model::ModelError),
    #[error(transparent)]
    Engine(#[from] kestrel_engine::EngineError),
    #[error("{0}")]
    Io(String),
}

pub type Result<T, E = SplitError> = std::result::Result<T, E>;
