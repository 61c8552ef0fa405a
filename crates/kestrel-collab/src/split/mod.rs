//! Device/server split inference: the device runs the embedding and layers `0..k`, a server
//! runs layers `k..n`, the final norm and the output head, and sends back the next token's
//! logits; raw text never leaves the device, only hidden states. See docs/split.md.
//!
//! - [`proto`]: the versioned binary messages; [`wire`]: activation codecs (f32, f16, q8).
//!   Both sides compare the model fingerprint `GgufFile::fingerprint` (kestrel-gguf).
//! - [`server`]: the split route for `kestrel serve --split-server`.
//! - [`device`] and [`generate`]: the device side, with local fall-back when the server fails;
//!   [`batch`]: the same for batched sequences (`kestrel serve --split-remote`).
//! - [`plan`]: per-layer profiles and the time-per-token model that picks `k`.

pub mod batch;
pub mod client;
pub mod device;
pub mod generate;
pub mod plan;
pub mod proto;
pub mod server;
pub mod standalone;
pub mod wire;

pub use device::{SplitConfig, SplitDevice, SplitLink, SplitStats};
pub use proto::ReplyMode;
pub use server::SplitServerConfig;
pub use standalone::StandaloneServer;
pub use wire::WireFormat;
