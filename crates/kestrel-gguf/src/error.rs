//! The one error type of the crate. Every variant says what is wrong and where, so a
//! corrupt or unexpected file can be diagnosed from the message alone.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    #[error(
        "bad magic: expected \"GGUF\" (47 47 55 46), found {}",
        describe_magic(found)
    )]
    BadMagic { found: Vec<u8> },

    #[error("unsupported GGUF version {version}{}", version_hint(*version))]
    UnsupportedVersion { version: u32 },

    #[error("truncated file: reading {what} needs {needed} bytes at offset {offset}, file is {file_len} bytes")]
    Truncated {
        what: String,
        needed: u64,
        offset: u64,
        file_len: u64,
    },

    /// A count or length read from the file that cannot possibly fit in the bytes left.
    /// Checked before allocating, so a corrupt count never turns into a huge allocation.
    #[error("{what} {count} needs at least {min_bytes} bytes at offset {offset}, only {remaining} remain in the file")]
    CountTooLarge {
        what: String,
        count: u64,
        min_bytes: u128,
        offset: u64,
        remaining: u64,
    },

    #[error("{what}: invalid UTF-8 at offset {offset}")]
    InvalidUtf8 { what: String, offset: u64 },

    #[error("{what}: unknown metadata value type id {id}")]
    UnknownValueType { what: String, id: u32 },

    #[error("{what}: bool byte is {byte}, expected 0 or 1")]
    BadBool { what: String, byte: u8 },

    #[error("{what}: arrays nested deeper than {max} levels")]
    NestingTooDeep { what: String, max: usize },

    #[error("duplicate metadata key {0}")]
    DuplicateKey(String),

    #[error("general.alignment must be a non-zero power of two that fits in u32, found {found}")]
    BadAlignment { found: String },

    #[error("tensor {tensor}: {n_dims} dimensions, at most {max} are supported")]
    TooManyDims {
        tensor: String,
        n_dims: u32,
        max: usize,
    },

    #[error("tensor {tensor}: unknown tensor type id {id}")]
    UnknownTensorType { tensor: String, id: u32 },

    #[error("tensor {tensor}: {reason}")]
    BadShape { tensor: String, reason: String },

    #[error(
        "tensor {tensor}: relative offset {offset} is not a multiple of the alignment {alignment}"
    )]
    MisalignedTensor {
        tensor: String,
        offset: u64,
        alignment: usize,
    },

    #[error("tensor {tensor}: data [{start}, {end}) lies outside the file ({file_len} bytes); the file is truncated or incomplete: {file_len} bytes, at least {needed} needed")]
    TensorOutOfBounds {
        tensor: String,
        start: u128,
        end: u128,
        file_len: u64,
        /// Where the last tensor's data ends, by the header.
        needed: u128,
    },

    #[error("duplicate tensor name {0}")]
    DuplicateTensor(String),

    #[error("tensor {tensor}: data is {got} bytes, dims {dims:?} of type {ty} need {expected}")]
    TensorDataSize {
        tensor: String,
        dims: Vec<u64>,
        ty: crate::GgmlType,
        expected: usize,
        got: usize,
    },

    #[error("missing required metadata key {0}")]
    MissingKey(String),

    #[error("metadata key {key} has type {found}, expected {expected}")]
    KeyType {
        key: String,
        found: &'static str,
        expected: &'static str,
    },

    #[error("metadata key {key}: value {value} does not fit in {expected}")]
    KeyRange {
        key: String,
        value: String,
        expected: &'static str,
    },
}

fn describe_magic(found: &[u8]) -> String {
    if found.is_empty() {
        return "nothing (empty file)".to_string();
    }
    let hex: Vec<String> = found.iter().map(|b| format!("{b:02x}")).collect();
    let text: String = found
        .iter()
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    format!("{} (\"{}\")", hex.join(" "), text)
}

fn version_hint(v: u32) -> &'static str {
    match v {
        1 => " (GGUF v1 is obsolete; re-convert the model)",
        _ if matches!(v.swap_bytes(), 2 | 3) => {
            " (looks like a big-endian GGUF, which is not supported)"
        }
        _ => " (supported: 2 and 3)",
    }
}
