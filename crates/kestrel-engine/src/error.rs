#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] kestrel_model::ModelError),
    #[error(transparent)]
    Tokenizer(#[from] kestrel_tokenizer::TokenizerError),
    #[error(transparent)]
    Gguf(#[from] kestrel_gguf::GgufError),
    #[error("prompt is {prompt} tokens, but the context holds {n_ctx} (and generation needs at least one more position); use a larger context (-c) or a shorter prompt")]
    PromptTooLong { prompt: usize, n_ctx: usize },
    #[error("the text is {tokens} tokens, shorter than one chunk of {n_ctx}; use a smaller context (-c) or a longer text")]
    TextTooShort { tokens: usize, n_ctx: usize },
    #[error("the prompt is empty (no tokens to condition on)")]
    EmptyPrompt,
    #[error("{0}")]
    Invalid(String),
    #[error("invalid sampling settings: {0}")]
    Sampling(String),
}

pub type Result<T> = std::result::Result<T, EngineError>;
