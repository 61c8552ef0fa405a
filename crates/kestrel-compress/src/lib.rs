//! Offline compression of GGUF models: float conversion, quantization to the ggml block formats
//! (round-to-nearest or weighted by an importance matrix), llama.cpp-style per-tensor type
//! mixes, importance-matrix collection, AWQ channel scaling, magnitude/wanda pruning, and
//! KL-divergence evaluation against a base model.
//!
//! Dequantization comes from `kestrel-kernels` (its scalar twins), the file writer from
//! `kestrel-gguf`; this crate holds the float -> block quantizers and the policies.

// `%` instead of `is_multiple_of`: the workspace MSRV is 1.85.
#![allow(clippy::manual_is_multiple_of)]

pub mod awq;
pub mod calib;
pub mod convert;
mod error;
pub mod ftype;
pub mod gptq;
pub mod imatrix;
pub mod io;
pub mod kld;
pub mod lowrank;
pub mod mixed;
pub mod policy;
pub mod prune;
pub mod quantize;
pub mod rtn;
pub mod sparsegpt;
pub mod structured;
pub mod weighted;

pub use error::{CompressError, Result};
pub use ftype::Ftype;
