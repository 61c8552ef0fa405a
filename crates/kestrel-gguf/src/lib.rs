//! GGUF v2/v3: read over mmap, write for tools. Typed metadata and a checked tensor directory.

pub mod types;

pub use types::{GgmlType, QK_K};
