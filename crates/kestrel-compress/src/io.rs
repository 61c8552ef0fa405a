//! Shared file plumbing: output-path checks, tensors as f32, and copying metadata.

use crate::{CompressError, Result};
use kestrel_gguf::{GgmlType, GgufFile, GgufWriter, TensorInfo, Value};
use std::path::Path;

/// Refuses an output path that exists or names the input: compression never overwrites, and
/// never touches its input.
pub fn check_output(input: &Path, output: &Path) -> Result<()> {
    if let (Ok(a), Ok(b)) = (input.canonicalize(), output.canonicalize()) {
        if a == b {
            return Err(CompressError::SameFile(output.to_path_buf()));
        }
    }
    if output.exists() {
        return Err(CompressError::OutputExists(output.to_path_buf()));
    }
    Ok(())
}

/// A tensor's elements as f32 (dequantized where stored quantized).
pub fn tensor_f32(g: &GgufFile, t: &TensorInfo) -> Result<Vec<f32>> {
    let n = usize::try_from(t.n_elements()).map_err(|_| CompressError::Tensor {
        tensor: t.name.clone(),
        why: "too many elements".into(),
    })?;
    let mut out = vec![0.0f32; n];
    let data = g.try_tensor_data(t).ok_or_else(|| CompressError::Tensor {
        tensor: t.name.clone(),
        why: "data outside the file".into(),
    })?;
    let row = t.row_len();
    if row == 0 || n % row != 0 || t.ty.row_bytes(row).is_none() {
        return Err(CompressError::Tensor {
            tensor: t.name.clone(),
            why: format!("row length {row} does not fit type {}", t.ty),
        });
    }
    let rb = t.ty.row_bytes(row).unwrap_or(0);
    if rb * (n / row) > data.len() {
        return Err(CompressError::Tensor {
            tensor: t.name.clone(),
            why: "data shorter than its shape".into(),
        });
    }
    for (src, dst) in data.chunks_exact(rb).zip(out.chunks_exact_mut(row)) {
        kestrel_kernels::dequantize_row(t.ty, src, dst);
    }
    Ok(out)
}

/// A writer holding every metadata key of `g` in order (tensors are added by the caller).
pub fn writer_with_metadata(g: &GgufFile) -> GgufWriter {
    let mut w = GgufWriter::new();
    for (k, v) in g.metadata() {
        w.set(k.clone(), v.clone());
    }
    w
}

/// Float encodings of f32 values (F32, F16, BF16).
pub fn encode_float(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; x.len() * ty.type_size()];
    kestrel_kernels::quantize_row(ty, x, &mut out);
    out
}

/// Copy tensor `t` of `g` into `w` as it is.
pub fn copy_tensor(w: &mut GgufWriter, g: &GgufFile, t: &TensorInfo) -> Result<()> {
    w.add_tensor(
        t.name.clone(),
        t.dims.clone(),
        t.ty,
        g.tensor_data(t).to_vec(),
    )?;
    Ok(())
}

/// [`finish`] with the input's own `general.file_type` (a rewrite that keeps every tensor's
/// type).
pub fn finish_as(w: GgufWriter, g: &GgufFile, path: &Path) -> Result<()> {
    finish(w, g.get_u32("general.file_type").unwrap_or(0), path)
}

/// Writes `w` to `path`, stamping `general.file_type` and the quantization version as
/// llama.cpp's tools do.
pub fn finish(mut w: GgufWriter, file_type: u32, path: &Path) -> Result<()> {
    w.set("general.file_type", Value::U32(file_type));
    w.set("general.quantization_version", Value::U32(2));
    w.write_file(path)?;
    Ok(())
}
