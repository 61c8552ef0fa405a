//! The device and a server working together, each flow in its own module over the crate's
//! one HTTP client (`http`) and error type:
//!
//! - [`route`]: confidence routing, answer a request here or on a bigger remote model
//!   (docs/routing.md).
//! - [`split`]: split inference, layers `0..k` on the device and `k..n` on a server
//!   (docs/split.md).
//! - [`verify`]: the device drafts, a server verifies (docs/speculative.md).
//!
//! Split and verify check that both sides run the same model (`GgufFile::fingerprint`) or the
//! same vocabulary (`verify::vocab_fingerprint`), both the FNV-1a of kestrel-gguf.

mod error;
pub mod http;
pub mod route;
pub mod split;
pub mod verify;

pub use error::{CollabError, Result};
