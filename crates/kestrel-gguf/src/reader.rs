//! Parses and validates a GGUF header (metadata + tensor directory) from the file bytes.
//! Everything read from the file is checked against the bytes that remain before it is
//! trusted: counts and lengths before allocating, tensor data ranges before exposing them.

use std::collections::HashMap;

use crate::cursor::{Ctx, Cursor};
use crate::error::GgufError;
use crate::tensor::{tensor_size, TensorInfo, MAX_DIMS};
use crate::types::GgmlType;
use crate::value::{Array, Value, ValueType};

pub const MAGIC: [u8; 4] = *b"GGUF";
pub const DEFAULT_ALIGNMENT: usize = 32;
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// Nested arrays deeper than this are rejected: real files nest at most once, and an
/// unbounded depth would let a small file overflow the stack.
pub const MAX_ARRAY_DEPTH: usize = 16;

/// Smallest encodings, used to bound counts before allocating.
const MIN_KV_BYTES: usize = 8 + 4 + 1; // key length, value type, 1-byte value
const MIN_TENSOR_INFO_BYTES: usize = 8 + 4 + 4 + 8; // name length, n_dims, type, offset

pub(crate) struct Parsed {
    pub version: u32,
    pub alignment: usize,
    pub data_offset: usize,
    pub metadata: Vec<(String, Value)>,
    pub kv_index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    pub tensor_index: HashMap<String, usize>,
}

pub(crate) fn parse(buf: &[u8]) -> Result<Parsed, GgufError> {
    let mut c = Cursor::new(buf);
    if buf.len() < 4 || buf[..4] != MAGIC {
        return Err(GgufError::BadMagic {
            found: buf[..buf.len().min(4)].to_vec(),
        });
    }
    c.take(4, "magic")?;
    let version = c.u32("version")?;
    if !matches!(version, 2 | 3) {
        return Err(GgufError::UnsupportedVersion { version });
    }
    let tensor_count = c.u64("tensor count")?;
    let kv_count = c.u64("metadata kv count")?;
    let n_tensors = c.check_count(tensor_count, MIN_TENSOR_INFO_BYTES, "tensor count")?;
    let n_kv = c.check_count(kv_count, MIN_KV_BYTES, "metadata kv count")?;

    let (metadata, kv_index) = read_metadata(&mut c, n_kv)?;
    let raw = read_tensor_infos(&mut c, n_tensors)?;

    let alignment = alignment_of(&metadata, &kv_index)?;
    // Data starts at the end of the header, rounded up to the alignment.
    let header_end = c.pos();
    let data_offset = header_end
        .checked_next_multiple_of(alignment)
        .ok_or_else(|| GgufError::BadAlignment {
            found: format!("{alignment} (data offset overflows)"),
        })?;

    // The size the header says the file has: where its last tensor's data ends.
    let needed = raw
        .iter()
        .map(|(.., rel, size)| data_offset as u128 + *rel as u128 + *size as u128)
        .max()
        .unwrap_or(0);
    let mut tensors = Vec::with_capacity(raw.len());
    let mut tensor_index = HashMap::with_capacity(raw.len());
    for (name, dims, ty, rel, size) in raw {
        let start = data_offset as u128 + rel as u128;
        let end = start + size as u128;
        if end > buf.len() as u128 {
            return Err(GgufError::TensorOutOfBounds {
                tensor: name,
                start,
                end,
                file_len: buf.len() as u64,
                needed,
            });
        }
        if rel % alignment as u64 != 0 {
            return Err(GgufError::MisalignedTensor {
                tensor: name,
                offset: rel,
                alignment,
            });
        }
        if tensor_index.insert(name.clone(), tensors.len()).is_some() {
            return Err(GgufError::DuplicateTensor(name));
        }
        // `end <= buf.len()`, so `start` fits in u64/usize.
        tensors.push(TensorInfo {
            name,
            dims,
            ty,
            offset: start as u64,
            size,
        });
    }

    Ok(Parsed {
        version,
        alignment,
        data_offset,
        metadata,
        kv_index,
        tensors,
        tensor_index,
    })
}

type Metadata = (Vec<(String, Value)>, HashMap<String, usize>);

fn read_metadata(c: &mut Cursor<'_>, n_kv: usize) -> Result<Metadata, GgufError> {
    let mut metadata = Vec::with_capacity(n_kv);
    let mut index = HashMap::with_capacity(n_kv);
    for i in 0..n_kv {
        c.ctx = Ctx::Kv {
            index: i as u64,
            key: None,
        };
        let key = c.str("key")?;
        c.ctx = Ctx::Kv {
            index: i as u64,
            key: Some(key),
        };
        let ty = value_type(c, "value type")?;
        let value = read_value(c, ty, 0)?;
        if index.insert(key.to_string(), metadata.len()).is_some() {
            return Err(GgufError::DuplicateKey(key.to_string()));
        }
        metadata.push((key.to_string(), value));
    }
    Ok((metadata, index))
}

type RawTensor = (String, Vec<u64>, GgmlType, u64, usize);

fn read_tensor_infos(c: &mut Cursor<'_>, n_tensors: usize) -> Result<Vec<RawTensor>, GgufError> {
    let mut out = Vec::with_capacity(n_tensors);
    for i in 0..n_tensors {
        c.ctx = Ctx::TensorInfo {
            index: i as u64,
            name: None,
        };
        let name = c.str("name")?;
        c.ctx = Ctx::TensorInfo {
            index: i as u64,
            name: Some(name),
        };
        let n_dims = c.u32("n_dims")?;
        if n_dims as usize > MAX_DIMS {
            return Err(GgufError::TooManyDims {
                tensor: name.to_string(),
                n_dims,
                max: MAX_DIMS,
            });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(c.u64("dims")?);
        }
        let id = c.u32("type")?;
        let ty = GgmlType::from_id(id).ok_or_else(|| GgufError::UnknownTensorType {
            tensor: name.to_string(),
            id,
        })?;
        let rel = c.u64("offset")?;
        let size = tensor_size(&dims, ty).map_err(|reason| GgufError::BadShape {
            tensor: name.to_string(),
            reason,
        })?;
        out.push((name.to_string(), dims, ty, rel, size));
    }
    Ok(out)
}

fn alignment_of(
    metadata: &[(String, Value)],
    index: &HashMap<String, usize>,
) -> Result<usize, GgufError> {
    let Some(&i) = index.get(ALIGNMENT_KEY) else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let v = &metadata[i].1;
    validate_alignment(v).ok_or_else(|| GgufError::BadAlignment {
        found: format!("{v} ({})", v.type_name()),
    })
}

/// The alignment a `general.alignment` value stands for, if it is a valid one.
pub(crate) fn validate_alignment(v: &Value) -> Option<usize> {
    let a = v.as_i128()?;
    (a > 0 && a <= u32::MAX as i128 && (a as u64).is_power_of_two()).then_some(a as usize)
}

fn value_type(c: &mut Cursor<'_>, field: &str) -> Result<ValueType, GgufError> {
    let id = c.u32(field)?;
    ValueType::from_id(id).ok_or_else(|| GgufError::UnknownValueType {
        what: c.what(field),
        id,
    })
}

fn read_bool(c: &mut Cursor<'_>, field: &str) -> Result<bool, GgufError> {
    match c.u8(field)? {
        0 => Ok(false),
        1 => Ok(true),
        byte => Err(GgufError::BadBool {
            what: c.what(field),
            byte,
        }),
    }
}

fn read_value(c: &mut Cursor<'_>, ty: ValueType, depth: usize) -> Result<Value, GgufError> {
    const F: &str = "value";
    Ok(match ty {
        ValueType::U8 => Value::U8(u8::from_le_bytes(c.array(F)?)),
        ValueType::I8 => Value::I8(i8::from_le_bytes(c.array(F)?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(c.array(F)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(c.array(F)?)),
        ValueType::U32 => Value::U32(u32::from_le_bytes(c.array(F)?)),
        ValueType::I32 => Value::I32(i32::from_le_bytes(c.array(F)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(c.array(F)?)),
        ValueType::U64 => Value::U64(u64::from_le_bytes(c.array(F)?)),
        ValueType::I64 => Value::I64(i64::from_le_bytes(c.array(F)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(c.array(F)?)),
        ValueType::Bool => Value::Bool(read_bool(c, F)?),
        ValueType::String => Value::String(c.str("string value")?.to_string()),
        ValueType::Array => Value::Array(read_array(c, depth)?),
    })
}

/// Decodes `n` little-endian `N`-byte elements in one bounds check.
fn elems<T, const N: usize>(
    c: &mut Cursor<'_>,
    n: usize,
    f: fn([u8; N]) -> T,
) -> Result<Vec<T>, GgufError> {
    // `n * N` was bounded by `check_count` against the remaining bytes.
    let bytes = c.take(n * N, "array data")?;
    Ok(bytes
        .chunks_exact(N)
        .map(|b| {
            let mut a = [0u8; N];
            a.copy_from_slice(b);
            f(a)
        })
        .collect())
}

fn read_array(c: &mut Cursor<'_>, depth: usize) -> Result<Array, GgufError> {
    let ety = value_type(c, "array element type")?;
    let count = c.u64("array length")?;
    let n = c.check_count(count, ety.min_size(), "array length")?;
    Ok(match ety {
        ValueType::U8 => Array::U8(c.take(n, "array data")?.to_vec()),
        ValueType::I8 => Array::I8(elems(c, n, i8::from_le_bytes)?),
        ValueType::U16 => Array::U16(elems(c, n, u16::from_le_bytes)?),
        ValueType::I16 => Array::I16(elems(c, n, i16::from_le_bytes)?),
        ValueType::U32 => Array::U32(elems(c, n, u32::from_le_bytes)?),
        ValueType::I32 => Array::I32(elems(c, n, i32::from_le_bytes)?),
        ValueType::F32 => Array::F32(elems(c, n, f32::from_le_bytes)?),
        ValueType::U64 => Array::U64(elems(c, n, u64::from_le_bytes)?),
        ValueType::I64 => Array::I64(elems(c, n, i64::from_le_bytes)?),
        ValueType::F64 => Array::F64(elems(c, n, f64::from_le_bytes)?),
        ValueType::Bool => {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(read_bool(c, "array element")?);
            }
            Array::Bool(v)
        }
        ValueType::String => {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(c.str("array element")?.to_string());
            }
            Array::String(v)
        }
        ValueType::Array => {
            if depth + 1 >= MAX_ARRAY_DEPTH {
                return Err(GgufError::NestingTooDeep {
                    what: c.what("array"),
                    max: MAX_ARRAY_DEPTH,
                });
            }
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(read_array(c, depth + 1)?);
            }
            Array::Array(v)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
        b.push(b'k');
        b.extend_from_slice(&9u32.to_le_bytes());
        for _ in 0..100_000 {
            b.extend_from_slice(&9u32.to_le_bytes());
            b.extend_from_slice(&1u64.to_le_bytes());
        }
        let e = parse(&b).err().unwrap();
        assert!(matches!(e, GgufError::NestingTooDeep { .. }), "{e}");
    }
}
