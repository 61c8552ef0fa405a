//! Writes a structurally pruned copy of a model: dropped blocks left out and the rest renumbered
//! (`blk.i.*`), FFN matrices cut to the kept channels, and the metadata that describes the
//! shapes made to match (block_count, feed_forward_length, any per-layer array).

use crate::io::{
    check_output, copy_tensor, encode_float, finish_as, tensor_f32, writer_with_metadata,
};
use crate::{CompressError, Result};
use kestrel_gguf::{Array, GgufFile, TensorInfo, Value};
use std::path::Path;

/// What to keep.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Old block indices kept, ascending.
    pub kept: Vec<usize>,
    /// Per old block index, the FFN channels kept (ascending); `None` keeps the FFNs whole.
    /// Every kept block keeps the same number (kestrel reads one feed_forward_length).
    pub ffn: Option<Vec<Vec<usize>>>,
}

#[derive(Clone, Debug, Default)]
pub struct WriteReport {
    pub tensors: usize,
    pub params_before: u64,
    pub params_after: u64,
}

/// `blk.{i}.{rest}` -> (i, rest).
fn split_block(name: &str) -> Option<(usize, &str)> {
    let rest = name.strip_prefix("blk.")?;
    let (i, rest) = rest.split_once('.')?;
    Some((i.parse().ok()?, rest))
}

fn filter_array(a: &Array, idx: &[usize]) -> Array {
    fn pick<T: Clone>(v: &[T], idx: &[usize]) -> Vec<T> {
        idx.iter().map(|&i| v[i].clone()).collect()
    }
    match a {
        Array::U8(v) => Array::U8(pick(v, idx)),
        Array::I8(v) => Array::I8(pick(v, idx)),
        Array::U16(v) => Array::U16(pick(v, idx)),
        Array::I16(v) => Array::I16(pick(v, idx)),
        Array::U32(v) => Array::U32(pick(v, idx)),
        Array::I32(v) => Array::I32(pick(v, idx)),
        Array::F32(v) => Array::F32(pick(v, idx)),
        Array::Bool(v) => Array::Bool(pick(v, idx)),
        Array::String(v) => Array::String(pick(v, idx)),
        Array::U64(v) => Array::U64(pick(v, idx)),
        Array::I64(v) => Array::I64(pick(v, idx)),
        Array::F64(v) => Array::F64(pick(v, idx)),
        Array::Array(v) => Array::Array(pick(v, idx)),
    }
}

/// Writes `g` (read from `input`) to `output` per `plan`.
pub fn write(g: &GgufFile, input: &Path, output: &Path, plan: &Plan) -> Result<WriteReport> {
    check_output(input, output)?;
    let arch = g.architecture()?.to_string();
    let n_layer = g.get_u32(&format!("{arch}.block_count"))? as usize;
    if plan.kept.is_empty() || plan.kept.iter().any(|&i| i >= n_layer) {
        return Err(CompressError::Invalid(format!(
            "kept blocks {:?} do not fit a {n_layer}-block model",
            plan.kept
        )));
    }
    let new_index = |old: usize| plan.kept.iter().position(|&k| k == old);
    let n_ff_kept = plan
        .ffn
        .as_ref()
        .and_then(|f| plan.kept.first().map(|&k| f[k].len()));
    let mut w = writer_with_metadata(g);
    w.set(
        format!("{arch}.block_count"),
        Value::U32(plan.kept.len() as u32),
    );
    // Per-layer arrays follow the kept blocks.
    let ff_key = format!("{arch}.feed_forward_length");
    for (k, v) in g.metadata() {
        if let Value::Array(a) = v {
            if k.starts_with(&format!("{arch}.")) && a.len() == n_layer {
                w.set(k.clone(), Value::Array(filter_array(a, &plan.kept)));
            }
        }
    }
    if let Some(nk) = n_ff_kept {
        let v = match g.get(&ff_key) {
            Some(Value::Array(_)) => Value::Array(Array::U32(vec![nk as u32; plan.kept.len()])),
            _ => Value::U32(nk as u32),
        };
        w.set(ff_key, v);
    }
    let mut rep = WriteReport::default();
    for t in g.tensors() {
        rep.params_before += t.n_elements();
        let Some((old, rest)) = split_block(&t.name) else {
            copy_tensor(&mut w, g, t)?;
            rep.tensors += 1;
            rep.params_after += t.n_elements();
            continue;
        };
        let Some(new) = new_index(old) else {
            continue;
        };
        let name = format!("blk.{new}.{rest}");
        let channels = plan.ffn.as_ref().map(|f| &f[old]);
        let (dims, data) = match channels {
            Some(ch) if rest.starts_with("ffn_gate.") || rest.starts_with("ffn_up.") => {
                select_rows(g, t, ch)?
            }
            Some(ch) if rest == "ffn_down.weight" => select_columns(g, t, ch)?,
            _ => (t.dims.clone(), g.tensor_data(t).to_vec()),
        };
        rep.params_after += dims.iter().product::<u64>();
        w.add_tensor(name, dims, t.ty, data)?;
        rep.tensors += 1;
    }
    finish_as(w, g, output)?;
    Ok(rep)
}

/// ffn_gate / ffn_up: one row (output channel) per FFN channel; 1-D tensors (biases) are
/// one value per channel.
fn select_rows(g: &GgufFile, t: &TensorInfo, ch: &[usize]) -> Result<(Vec<u64>, Vec<u8>)> {
    let rows = t.n_rows();
    let row_len = t.row_len();
    let n_ff = if t.dims.len() == 1 { row_len } else { rows };
    if ch.iter().any(|&c| c >= n_ff) || t.dims.len() > 2 {
        return Err(CompressError::Tensor {
            tensor: t.name.clone(),
            why: format!(
                "shape {:?} is not one row per FFN channel (fused gate/up matrices are not supported)",
                t.dims
            ),
        });
    }
    if t.dims.len() == 1 {
        let x = tensor_f32(g, t)?;
        let kept: Vec<f32> = ch.iter().map(|&c| x[c]).collect();
        return Ok((vec![ch.len() as u64], float_bytes(t, &kept)?));
    }
    let rb = t.ty.row_bytes(row_len).unwrap_or(0);
    let data = g.tensor_data(t);
    let mut out = Vec::with_capacity(rb * ch.len());
    for &c in ch {
        out.extend_from_slice(&data[c * rb..(c + 1) * rb]);
    }
    Ok((vec![row_len as u64, ch.len() as u64], out))
}

/// ffn_down: one column (input element of each row) per FFN channel; needs float weights.
fn select_columns(g: &GgufFile, t: &TensorInfo, ch: &[usize]) -> Result<(Vec<u64>, Vec<u8>)> {
    let n_ff = t.row_len();
    if ch.iter().any(|&c| c >= n_ff) || t.dims.len() != 2 {
        return Err(CompressError::Tensor {
            tensor: t.name.clone(),
            why: format!(
                "shape {:?} does not have one column per FFN channel",
                t.dims
            ),
        });
    }
    let x = tensor_f32(g, t)?;
    let mut kept = Vec::with_capacity(ch.len() * t.n_rows());
    for row in x.chunks_exact(n_ff) {
        kept.extend(ch.iter().map(|&c| row[c]));
    }
    Ok((
        vec![ch.len() as u64, t.n_rows() as u64],
        float_bytes(t, &kept)?,
    ))
}

fn float_bytes(t: &TensorInfo, x: &[f32]) -> Result<Vec<u8>> {
    if t.ty.block_size() != 1 {
        return Err(CompressError::Tensor {
            tensor: t.name.clone(),
            why: format!(
                "stored as {}: --ffn-keep needs a float model (kestrel convert --type f32 first), then quantize",
                t.ty
            ),
        });
    }
    Ok(encode_float(t.ty, x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_names_split() {
        assert_eq!(
            split_block("blk.12.ffn_up.weight"),
            Some((12, "ffn_up.weight"))
        );
        assert_eq!(split_block("token_embd.weight"), None);
        assert_eq!(split_block("blk.x.y"), None);
        let a = Array::U32(vec![10, 11, 12, 13]);
        assert_eq!(filter_array(&a, &[0, 2]), Array::U32(vec![10, 12]));
        assert_eq!(a.len(), 4);
    }
}
