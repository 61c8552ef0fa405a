//! Device drafts, server verifies. The device runs a small draft model (for example a 4-bit
//! copy of the server's model) and sends its drafts to `POST /v1/verify` on a kestrel server,
//! which judges each draft with its own model and answers how many tokens hold and its own next
//! token. Greedy output is exactly the server model's greedy output; the device pays one round
//! trip per draft instead of one per token. See docs/speculative.md.

mod client;
mod device;
mod fingerprint;
pub mod proto;
pub mod server;

pub use client::VerifyClient;
pub use device::{remote_generate, RemoteGeneration, RemoteOptions, RemoteStats};
pub use fingerprint::vocab_fingerprint;
