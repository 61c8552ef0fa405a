//! Shared helpers: a small valid file and byte-level locators for mutating it.
#![allow(dead_code)]

use kestrel_gguf::{Array, GgmlType, GgufWriter, Value};

/// A small valid file: a few kvs of different types and two tensors.
pub fn small_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String("llama".into()));
    w.set("general.alignment", Value::U32(32));
    w.set("llama.block_count", Value::U32(2));
    w.set("x.flag", Value::Bool(true));
    w.set(
        "x.str_arr",
        Value::Array(Array::String(vec!["a".into(), "bc".into()])),
    );
    w.set("x.f32", Value::F32(1.5));
    w.add_tensor("blk.0.w", vec![8, 2], GgmlType::F32, (0..64).collect())
        .unwrap();
    w.add_tensor("blk.1.w", vec![32, 1], GgmlType::Q8_0, vec![7; 34])
        .unwrap();
    w
}

pub fn to_bytes(w: &GgufWriter) -> Vec<u8> {
    let mut b = Vec::new();
    w.write_to(&mut b).unwrap();
    b
}

pub fn small_file() -> Vec<u8> {
    to_bytes(&small_writer())
}

/// Offset of the first occurrence of `needle`.
pub fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("needle not found")
}

/// Offset just after a string (key or tensor name) as stored in the header.
pub fn after_str(b: &[u8], s: &str) -> usize {
    let mut needle = (s.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(s.as_bytes());
    find(b, &needle) + needle.len()
}

/// Field offsets of a tensor info: (n_dims, first dim, type, offset) for `n_dims` dims.
pub fn tensor_fields(b: &[u8], name: &str, n_dims: usize) -> (usize, usize, usize, usize) {
    let p = after_str(b, name);
    (p, p + 4, p + 4 + 8 * n_dims, p + 8 + 8 * n_dims)
}

pub fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

pub fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}
