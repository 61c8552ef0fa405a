//! Views of weight tensors inside the mapped GGUF file. Matrices stay in their file blocks;
//! only small vectors (norms, biases) are copied out as f32 at load.

use crate::error::{ModelError, Result};
use kestrel_gguf::{GgmlType, GgufFile};
use kestrel_kernels::{Layout, QMatrix};
use std::sync::Arc;

/// Bytes of file rows repacked between two releases of their pages.
const CHUNK_BYTES: usize = 4 << 20;

/// A 2-D weight: `rows` output features, each a row of `cols` elements of type `ty`, at
/// `offset..offset+size` in the file.
#[derive(Clone, Debug)]
pub struct Matrix {
    pub name: String,
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    offset: usize,
    size: usize,
    /// The interleaved copy made at load ([`Matrix::repack`]), which the matmuls then read
    /// instead of the file's bytes.
    packed: Option<Arc<Vec<u8>>>,
}

impl Matrix {
    pub fn view<'a>(&'a self, g: &'a GgufFile) -> QMatrix<'a> {
        match &self.packed {
            Some(p) => QMatrix {
                ty: self.ty,
                rows: self.rows,
                cols: self.cols,
                data: p,
                layout: Layout::X8,
            },
            None => QMatrix::new(
                self.ty,
                self.rows,
                self.cols,
                &g.bytes()[self.offset..self.offset + self.size],
            ),
        }
    }

    /// Makes the interleaved copy where the type has that layout (Q4_K, Q6_K, Q4_0, Q8_0), and lets the
    /// file's pages go; returns the bytes of the copy (0 where nothing was packed). Every
    /// reader of a matrix goes through [`Matrix::view`], which then gives the copy.
    pub fn repack(&mut self, g: &GgufFile) -> usize {
        if self.packed.is_some() {
            return 0;
        }
        if !kestrel_kernels::can_repack(self.ty, self.rows, self.cols) {
            return 0;
        }
        // A few MiB of rows at a time, each chunk's file pages released once it is copied:
        // the resident set never holds both copies of a large matrix (an embedding table).
        let rb = self.row_bytes();
        let chunk = (CHUNK_BYTES / rb).max(8) / 8 * 8;
        let size = |rows: usize| kestrel_kernels::repacked_size(self.ty, rows, self.cols);
        let mut p = vec![0u8; size(self.rows)];
        let (mut r0, mut d0) = (0, 0);
        while r0 < self.rows {
            // The last chunk takes the rows past the last whole group too.
            let n = if self.rows - r0 < 2 * chunk {
                self.rows - r0
            } else {
                chunk
            };
            let src = &g.bytes()[self.offset + r0 * rb..self.offset + (r0 + n) * rb];
            let dn = size(n);
            kestrel_kernels::repack_into(self.ty, n, self.cols, src, &mut p[d0..d0 + dn]);
            g.release(self.offset + r0 * rb, n * rb);
            r0 += n;
            d0 += dn;
        }
        let n = p.len();
        // Moved, not copied (an `Arc<[u8]>` would copy, holding both for a moment).
        self.packed = Some(Arc::new(p));
        n
    }
    pub fn row_bytes(&self) -> usize {
        self.size / self.rows
    }
    /// Rows `r0..r0+n` as a smaller matrix (a slice of a fused weight).
    pub fn rows_slice(&self, r0: usize, n: usize) -> Matrix {
        let rb = self.row_bytes();
        Matrix {
            name: format!("{}[{}..{}]", self.name, r0, r0 + n),
            ty: self.ty,
            rows: n,
            cols: self.cols,
            offset: self.offset + r0 * rb,
            size: n * rb,
            // Slices are taken at load, before any repacking; a slice reads the file.
            packed: None,
        }
    }
}

/// A linear layer: weight and optional bias. A low-rank pair (`kestrel lowrank`) keeps its
/// right factor B (r x in, applied first) in `w` and its left factor A (out x r) in `a`.
#[derive(Clone, Debug)]
pub struct Linear {
    pub w: Matrix,
    pub b: Option<Vec<f32>>,
    pub a: Option<Matrix>,
}

impl Linear {
    /// Output features.
    pub fn rows(&self) -> usize {
        self.a.as_ref().map_or(self.w.rows, |a| a.rows)
    }
    /// The weight's tensor name as in an unfactored file (what observers see).
    pub fn name(&self) -> &str {
        match self.a {
            Some(_) => self
                .w
                .name
                .strip_suffix(crate::lowrank::SUFFIX_B)
                .unwrap_or(&self.w.name),
            None => &self.w.name,
        }
    }
}

/// Loads tensors by name with shape and type checks.
pub struct Loader<'a> {
    pub g: &'a GgufFile,
}

fn is_matmul_type(ty: GgmlType) -> bool {
    !matches!(ty, GgmlType::Q8_1 | GgmlType::Q8_K)
}

impl<'a> Loader<'a> {
    pub fn has(&self, name: &str) -> bool {
        self.g.tensor(name).is_some()
    }

    /// A matrix stored with row length `cols` and `rows` rows (GGUF dims `[cols, rows]`).
    pub fn matrix(&self, name: &str, cols: usize, rows: usize) -> Result<Matrix> {
        let t = self
            .g
            .tensor(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
        let want = vec![cols as u64, rows as u64];
        if t.dims != want {
            return Err(ModelError::TensorShape {
                name: name.into(),
                got: t.dims.clone(),
                want,
            });
        }
        if !is_matmul_type(t.ty) {
            return Err(ModelError::TensorType {
                name: name.into(),
                ty: t.ty,
                why: "activation-only format",
            });
        }
        Ok(Matrix {
            name: name.into(),
            ty: t.ty,
            rows,
            cols,
            offset: t.offset as usize,
            size: t.size,
            packed: None,
        })
    }

    pub fn matrix_opt(&self, name: &str, cols: usize, rows: usize) -> Result<Option<Matrix>> {
        if self.has(name) {
            self.matrix(name, cols, rows).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A 1-D tensor of `len` elements, dequantized to f32.
    pub fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        let t = self
            .g
            .tensor(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
        if t.n_elements() != len as u64 || t.dims.len() != 1 {
            return Err(ModelError::TensorShape {
                name: name.into(),
                got: t.dims.clone(),
                want: vec![len as u64],
            });
        }
        if t.ty.block_size() != 1 {
            return Err(ModelError::TensorType {
                name: name.into(),
                ty: t.ty,
                why: "vectors must be F32, F16 or BF16",
            });
        }
        let mut out = vec![0.0f32; len];
        kestrel_kernels::dequantize_row(t.ty, self.g.tensor_data(t), &mut out);
        Ok(out)
    }

    pub fn vector_opt(&self, name: &str, len: usize) -> Result<Option<Vec<f32>>> {
        if self.has(name) {
            self.vector(name, len).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn linear(&self, name: &str, cols: usize, rows: usize) -> Result<Linear> {
        let b = self.vector_opt(&format!("{name}.bias"), rows)?;
        let wname = format!("{name}.weight");
        if !self.has(&wname) {
            if let Some((a, w)) = crate::lowrank::load_pair(self, &wname, cols, rows)? {
                return Ok(Linear { w, b, a: Some(a) });
            }
        }
        let w = self.matrix(&wname, cols, rows)?;
        Ok(Linear { w, b, a: None })
    }
}
