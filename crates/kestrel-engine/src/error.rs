#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] kestrel_model::ModelError),
    #[error(transparent)]
    Tokenizer(#[from] kestrel_tokenizer::TokenizerError),
    #[error(transparent)]
    Gguf(#[from] kestrel_gguf::GgufError),
    #[error("prompt is {prompt} tokens; with {max_new} new tokens it needs {needed} positions, but the context holds {n_ctx}")]
    PromptTooLong { prompt: usize, max_new: usize, needed: usize, n_ctx: usize },
    #[error("the prompt is empty (no tokens to condition on)")]
    EmptyPrompt,
    #[error("invalid sampling settings: {0}")]
    Sampling(String),
}

pub type Result<T> = std::result::Result<T, EngineError>;
