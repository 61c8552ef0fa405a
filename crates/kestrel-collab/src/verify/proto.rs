//! The JSON of `POST /v1/verify` (docs/server.md). A request without `session` opens one with
//! a prompt; a request with `session` continues it. Either may carry a draft: token ids
//! proposed to follow the text so far (the prompt, the accepted drafts and every `next`).
//! `DELETE /v1/verify/{session}` ends a session.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
}

/// The drafter's vocabulary: its size and [`crate::verify::vocab_fingerprint`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Vocab {
    pub size: usize,
    pub fingerprint: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct VerifyRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Opening only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Prompt>,
    /// Opening only; checked against the server's vocabulary when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab: Option<Vocab>,
    #[serde(default)]
    pub draft: Vec<u32>,
    /// Opening only: the server's sampling (greedy when temperature is 0 or absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Return the logprob of each token that joins the text.
    #[serde(default)]
    pub logprobs: bool,
    /// Alternatives per token with `logprobs` (0 to 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VerifyResponse {
    /// Always "verify".
    pub object: String,
    pub session: String,
    /// Draft tokens the server's model kept, from the first.
    pub accepted: usize,
    /// The server's own token after them (a correction, or a bonus token when all held).
    pub next: u32,
    /// Tokens in the session's text after this call (prompt included).
    pub n_tokens: usize,
    /// Prompt tokens (on opening).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<usize>,
    /// With `logprobs`: one entry per accepted draft token, then one for `next`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<TokenLogprob>>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TokenLogprob {
    pub id: u32,
    pub logprob: f32,
    #[serde(default)]
    pub top: Vec<TopLogprob>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TopLogprob {
    pub id: u32,
    pub logprob: f32,
}
