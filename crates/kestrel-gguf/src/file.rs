//! `GgufFile`: the parsed header plus the backing bytes (an mmap, or a Vec for tests/tools).

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use crate::error::GgufError;
use crate::reader::{parse, Parsed};
use crate::tensor::TensorInfo;
use crate::value::Value;

enum Backing {
    Mmap(memmap2::Mmap),
    Bytes(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mmap(m) => m,
            Backing::Bytes(v) => v,
        }
    }
}

/// A validated GGUF file. Every tensor's data range was checked against the file at open,
/// so `tensor_data` needs no further checks.
pub struct GgufFile {
    backing: Backing,
    version: u32,
    alignment: usize,
    data_offset: usize,
    metadata: Vec<(String, Value)>,
    kv_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("len", &self.bytes().len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .field("n_kv", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Maps the file read-only and parses its header.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        let open_err = |source| GgufError::Open {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(open_err)?;
        let len = file.metadata().map_err(open_err)?.len();
        // A zero-length mapping is not portable; an empty file just fails to parse.
        if len == 0 {
            return Self::from_backing(Backing::Bytes(Vec::new()));
        }
        // SAFETY: the map is read-only. As with every mmap-based loader, another process
        // truncating or rewriting the file while it is mapped is outside our control.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(open_err)?;
        Self::from_backing(Backing::Mmap(map))
    }

    /// Parses an in-memory file with the same checks as `open`.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        Self::from_backing(Backing::Bytes(bytes))
    }

    fn from_backing(backing: Backing) -> Result<GgufFile, GgufError> {
        let Parsed {
            version,
            alignment,
            data_offset,
            metadata,
            kv_index,
            tensors,
            tensor_index,
        } = parse(backing.bytes())?;
        Ok(GgufFile {
            backing,
            version,
            alignment,
            data_offset,
            metadata,
            kv_index,
            tensors,
            tensor_index,
        })
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// `general.alignment`, or 32 when absent.
    pub fn alignment(&self) -> usize {
        self.alignment
    }

    /// Metadata in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.kv_index.get(key).map(|&i| &self.metadata[i].1)
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The data of a tensor of this file.
    ///
    /// # Panics
    /// If `t` does not describe a range of this file (a `TensorInfo` from another file or
    /// built by hand); infos from `tensors()` / `tensor()` never panic.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        self.try_tensor_data(t).unwrap_or_else(|| {
            panic!(
                "tensor {}: TensorInfo does not belong to this GgufFile",
                t.name
            )
        })
    }

    /// Like `tensor_data`, but `None` instead of a panic for a range outside this file.
    pub fn try_tensor_data(&self, t: &TensorInfo) -> Option<&[u8]> {
        let start = usize::try_from(t.offset).ok()?;
        self.bytes().get(start..start.checked_add(t.size)?)
    }

    /// Writable data of the tensor named `name`, for a file parsed from bytes (`from_bytes`);
    /// `None` for a mapped file or an unknown name. Tools use it to try a changed tensor
    /// in place without copying the whole model; the size (so the layout) cannot change.
    pub fn tensor_data_mut(&mut self, name: &str) -> Option<&mut [u8]> {
        let t = &self.tensors[*self.tensor_index.get(name)?];
        let start = usize::try_from(t.offset).ok()?;
        let end = start.checked_add(t.size)?;
        match &mut self.backing {
            Backing::Mmap(_) => None,
            Backing::Bytes(v) => v.get_mut(start..end),
        }
    }

    /// Data of the tensor named `name`, if present.
    pub fn tensor_bytes(&self, name: &str) -> Option<&[u8]> {
        self.tensor(name).map(|t| self.tensor_data(t))
    }

    /// Tells the kernel that bytes `start..start + len` of a mapped file will not be read
    /// again soon, so their pages leave the resident set (the model keeps a repacked copy).
    /// Reading them later still works: the pages come back from the file. A no-op for a file
    /// parsed from bytes, and on failure (it is only advice).
    pub fn release(&self, start: usize, len: usize) {
        let Backing::Mmap(m) = &self.backing else {
            return;
        };
        // Whole pages inside the range only: a page shared with a neighbour stays.
        const PAGE: usize = 4096;
        let lo = start.div_ceil(PAGE) * PAGE;
        let hi = (start.saturating_add(len).min(m.len())) / PAGE * PAGE;
        if lo < hi {
            // SAFETY: the mapping is private and read-only, so dropping its pages loses
            // nothing; the next read refaults them from the file.
            let _ = unsafe {
                m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, lo, hi - lo)
            };
        }
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        self.backing.bytes()
    }

    /// Start of the tensor data section (header end rounded up to the alignment).
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }
}
