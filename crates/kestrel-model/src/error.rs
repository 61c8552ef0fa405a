use kestrel_gguf::GgufError;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("unsupported architecture '{0}' (supported: {1})")]
    UnsupportedArch(String, String),
    #[error("missing tensor {0}")]
    MissingTensor(String),
    #[error("tensor {name}: shape {got:?}, expected {want:?}")]
    TensorShape {
        name: String,
        got: Vec<u64>,
        want: Vec<u64>,
    },
    #[error("tensor {name}: type {ty} cannot be used here ({why})")]
    TensorType {
        name: String,
        ty: kestrel_gguf::GgmlType,
        why: &'static str,
    },
    #[error("invalid hyperparameter {key}: {why}")]
    BadHparam { key: String, why: String },
    #[error("context full: {needed} positions needed, the context holds {n_ctx}")]
    ContextFull { needed: usize, n_ctx: usize },
    #[error("token id {0} is outside the vocabulary ({1} tokens)")]
    BadToken(u32, usize),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, ModelError>;
