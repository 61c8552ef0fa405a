use thiserror::Error;

/// Errors from building a tokenizer, encoding text or rendering a chat template.
#[derive(Debug, Error)]
pub enum TokenizerError {
    /// `tokenizer.ggml.model` names a tokenizer kestrel does not implement.
    #[error("unknown tokenizer model '{0}' (tokenizer.ggml.model); supported: gpt2, llama")]
    UnknownModel(String),
    /// `tokenizer.ggml.pre` names a pre-tokenizer kestrel does not implement.
    #[error("unknown pre-tokenizer type '{0}' (tokenizer.ggml.pre)")]
    UnknownPre(String),
    /// A required metadata key is absent.
    #[error("missing tokenizer metadata: {0}")]
    Missing(String),
    /// Metadata is present but malformed.
    #[error("invalid tokenizer metadata: {0}")]
    Invalid(String),
    /// An error from the GGUF reader.
    #[error("gguf: {0}")]
    Gguf(String),
    /// A regex failed to compile or run.
    #[error("pre-tokenizer regex: {0}")]
    Regex(String),
    /// A chat template failed to parse or render.
    #[error("chat template: {0}")]
    Template(String),
}
