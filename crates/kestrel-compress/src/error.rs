//! The one error type of this crate.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    #[error(transparent)]
    Gguf(#[from] kestrel_gguf::GgufError),
    #[error(transparent)]
    Engine(#[from] kestrel_engine::EngineError),
    #[error(transparent)]
    Model(#[from] kestrel_model::ModelError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} already exists; refusing to overwrite it (remove it first or pick another name)")]
    OutputExists(PathBuf),
    #[error("the output is the input file {0}; the input is never modified")]
    SameFile(PathBuf),
    #[error("unknown type '{name}'; known: {known}")]
    UnknownType { name: String, known: String },
    #[error("tensor {tensor}: {why}")]
    Tensor { tensor: String, why: String },
    #[error("importance matrix {path}: {why}")]
    BadImatrix { path: PathBuf, why: String },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, CompressError>;
