//! Model architectures built from shared transformer blocks, the KV cache, sessions and sampling.

pub mod arch;
mod attend;
pub mod decoder;
mod embed;
mod error;
mod forward;
pub mod hparams;
pub mod kv;
pub mod lowrank;
mod model;
mod multi;
mod observer;
mod prompts;
pub mod registry;
mod repack;
mod restore;
pub mod sampler;
mod session;
mod verify;
pub mod weights;

pub use error::{ModelError, Result};
pub use forward::{StageInput, StageOutput};
pub use hparams::Hparams;
pub use kestrel_kernels::ThreadPool;
pub use model::Model;
pub use multi::MultiScratch;
pub use observer::MatmulObserver;
pub use repack::{set_repack_default, LoadOptions, RepackStats};
pub use sampler::{Sampler, SamplerConfig};
pub use session::Session;
