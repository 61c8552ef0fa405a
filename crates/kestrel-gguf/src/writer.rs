//! `GgufWriter`: builds a GGUF v3 (or v2) file with metadata in insertion order and
//! tensor data aligned to `general.alignment` (32 by default).

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::GgufError;
use crate::reader::{validate_alignment, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC};
use crate::tensor::{tensor_size, MAX_DIMS};
use crate::types::GgmlType;
use crate::value::{Array, Value};

struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    data: Vec<u8>,
}

pub struct GgufWriter {
    version: u32,
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
    tensor_names: HashMap<String, usize>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// Version 3, alignment 32 (set `general.alignment` to change it).
    pub fn new() -> Self {
        GgufWriter {
            version: 3,
            metadata: Vec::new(),
            tensors: Vec::new(),
            tensor_names: HashMap::new(),
        }
    }

    /// Writes this header version instead (2 and 3 share the layout). Other values are
    /// written as given, which tests use to produce unsupported files.
    pub fn set_version(&mut self, version: u32) {
        self.version = version;
    }

    /// Sets a metadata value; an existing key keeps its position.
    pub fn set(&mut self, key: impl Into<String>, v: Value) {
        let key = key.into();
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = v,
            None => self.metadata.push((key, v)),
        }
    }

    /// Removes a metadata key, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.metadata.iter().position(|(k, _)| k == key)?;
        Some(self.metadata.remove(i).1)
    }

    /// Adds a tensor; `data.len()` must match `dims` and `ty` exactly.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: Vec<u64>,
        ty: GgmlType,
        data: Vec<u8>,
    ) -> Result<(), GgufError> {
        let name = name.into();
        if dims.len() > MAX_DIMS {
            return Err(GgufError::TooManyDims {
                tensor: name,
                n_dims: dims.len() as u32,
                max: MAX_DIMS,
            });
        }
        let expected = tensor_size(&dims, ty).map_err(|reason| GgufError::BadShape {
            tensor: name.clone(),
            reason,
        })?;
        if data.len() != expected {
            return Err(GgufError::TensorDataSize {
                tensor: name,
                dims,
                ty,
                expected,
                got: data.len(),
            });
        }
        if self.tensor_names.contains_key(&name) {
            return Err(GgufError::DuplicateTensor(name));
        }
        self.tensor_names.insert(name.clone(), self.tensors.len());
        self.tensors.push(PendingTensor {
            name,
            dims,
            ty,
            data,
        });
        Ok(())
    }

    fn alignment(&self) -> Result<usize, GgufError> {
        match self.metadata.iter().find(|(k, _)| k == ALIGNMENT_KEY) {
            None => Ok(DEFAULT_ALIGNMENT),
            Some((_, v)) => validate_alignment(v).ok_or_else(|| GgufError::BadAlignment {
                found: format!("{v} ({})", v.type_name()),
            }),
        }
    }

    pub fn write_to(&self, w: &mut impl Write) -> Result<(), GgufError> {
        let alignment = self.alignment()?;
        let mut w = Counting {
            inner: w,
            written: 0,
        };
        w.put(&MAGIC)?;
        w.put(&self.version.to_le_bytes())?;
        w.put(&(self.tensors.len() as u64).to_le_bytes())?;
        w.put(&(self.metadata.len() as u64).to_le_bytes())?;
        for (k, v) in &self.metadata {
            write_str(&mut w, k)?;
            w.put(&v.value_type().id().to_le_bytes())?;
            write_value(&mut w, v)?;
        }
        // Relative offsets: each tensor starts at the next multiple of the alignment.
        let mut rel = 0usize;
        for t in &self.tensors {
            write_str(&mut w, &t.name)?;
            w.put(&(t.dims.len() as u32).to_le_bytes())?;
            for d in &t.dims {
                w.put(&d.to_le_bytes())?;
            }
            w.put(&t.ty.id().to_le_bytes())?;
            w.put(&(rel as u64).to_le_bytes())?;
            rel = (rel + t.data.len()).next_multiple_of(alignment);
        }
        w.pad(alignment)?;
        for t in &self.tensors {
            w.put(&t.data)?;
            w.pad(alignment)?;
        }
        w.inner.flush()?;
        Ok(())
    }

    /// Writes to `<path>.tmp`, then renames over `path`, so a failed write never leaves a
    /// half-written model under the final name.
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<(), GgufError> {
        let path = path.as_ref();
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        let result = (|| {
            let file = std::fs::File::create(&tmp)?;
            let mut bw = BufWriter::new(file);
            self.write_to(&mut bw)?;
            let file = bw.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)?;
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

/// Tracks the bytes written so padding can be computed.
struct Counting<'a, W: Write> {
    inner: &'a mut W,
    written: usize,
}

impl<W: Write> Counting<'_, W> {
    fn put(&mut self, b: &[u8]) -> Result<(), GgufError> {
        self.inner.write_all(b)?;
        self.written += b.len();
        Ok(())
    }

    fn pad(&mut self, alignment: usize) -> Result<(), GgufError> {
        let n = self.written.next_multiple_of(alignment) - self.written;
        self.put(&vec![0u8; n])
    }
}

fn write_str<W: Write>(w: &mut Counting<'_, W>, s: &str) -> Result<(), GgufError> {
    w.put(&(s.len() as u64).to_le_bytes())?;
    w.put(s.as_bytes())
}

fn write_value<W: Write>(w: &mut Counting<'_, W>, v: &Value) -> Result<(), GgufError> {
    match v {
        Value::U8(x) => w.put(&x.to_le_bytes()),
        Value::I8(x) => w.put(&x.to_le_bytes()),
        Value::U16(x) => w.put(&x.to_le_bytes()),
        Value::I16(x) => w.put(&x.to_le_bytes()),
        Value::U32(x) => w.put(&x.to_le_bytes()),
        Value::I32(x) => w.put(&x.to_le_bytes()),
        Value::F32(x) => w.put(&x.to_le_bytes()),
        Value::Bool(x) => w.put(&[*x as u8]),
        Value::String(s) => write_str(w, s),
        Value::Array(a) => write_array(w, a),
        Value::U64(x) => w.put(&x.to_le_bytes()),
        Value::I64(x) => w.put(&x.to_le_bytes()),
        Value::F64(x) => w.put(&x.to_le_bytes()),
    }
}

fn write_array<W: Write>(w: &mut Counting<'_, W>, a: &Array) -> Result<(), GgufError> {
    w.put(&a.elem_type().id().to_le_bytes())?;
    w.put(&(a.len() as u64).to_le_bytes())?;
    // Encode fixed-size elements into one buffer: token score arrays have ~10^5 entries.
    macro_rules! le {
        ($v:expr) => {{
            let mut buf = Vec::with_capacity(std::mem::size_of_val(&$v[..]));
            for x in $v.iter() {
                buf.extend_from_slice(&x.to_le_bytes());
            }
            w.put(&buf)
        }};
    }
    match a {
        Array::U8(v) => w.put(v),
        Array::I8(v) => le!(v),
        Array::U16(v) => le!(v),
        Array::I16(v) => le!(v),
        Array::U32(v) => le!(v),
        Array::I32(v) => le!(v),
        Array::F32(v) => le!(v),
        Array::U64(v) => le!(v),
        Array::I64(v) => le!(v),
        Array::F64(v) => le!(v),
        Array::Bool(v) => w.put(&v.iter().map(|&b| b as u8).collect::<Vec<u8>>()),
        Array::String(v) => v.iter().try_for_each(|s| write_str(w, s)),
        Array::Array(v) => v.iter().try_for_each(|a| write_array(w, a)),
    }
}
