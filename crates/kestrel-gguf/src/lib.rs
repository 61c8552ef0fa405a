//! GGUF v2/v3: read over mmap, write for tools. Typed metadata and a checked tensor directory.
//!
//! Reading never panics on file input and never allocates from an unchecked count: every
//! count or length is bounded by the bytes left in the file first.

pub mod check;
mod cursor;
pub mod error;
mod file;
pub mod fingerprint;
mod getters;
mod reader;
pub mod tensor;
pub mod types;
pub mod value;
pub mod writer;

pub use error::GgufError;
pub use file::GgufFile;
pub use reader::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAX_ARRAY_DEPTH};
pub use tensor::{TensorInfo, MAX_DIMS};
pub use types::{GgmlType, QK_K};
pub use value::{Array, Value, ValueType};
pub use writer::GgufWriter;
