//! Confidence routing (issue 7): answer a request with the local model, or send it to a bigger
//! remote model behind an OpenAI-compatible endpoint. Three things decide, in this order: a
//! policy rule (requested model, keyword, prompt length), a prompt longer than the local
//! context, and the local model's confidence over its first tokens (mean entropy or mean top-1
//! probability, as Tabi does). The server (`kestrel serve --route-remote`) and `kestrel run
//! --route-remote` share this module; see docs/routing.md.

pub mod confidence;
pub mod decision;
pub mod policy;
mod prompt;
pub mod remote;

pub use confidence::{Confidence, TokenConfidence};
pub use decision::{Counts, Decision, Reason, Target};
pub use policy::Policy;
pub use prompt::{route_prompt, Routed};
pub use remote::{Remote, RemoteAnswer, RemoteKind};
