//! Per-tensor sensitivity: what the model's output distribution loses (KL-divergence from the
//! float model on calibration text) when one tensor alone is quantized.
//!
//! Measuring that for every tensor and every candidate type would take one forward pass per
//! (tensor, type) pair. Instead it is measured once per tensor, with the tensor rounded to a
//! reference type (Q4_0), and carried to the other types in proportion to the tensor's
//! rounding error weighted by its inputs' mean square (sum_ij (w_ij - q_ij)^2 E[x_j^2], the
//! expected squared output error with uncorrelated inputs): for small perturbations the KLD
//! is quadratic in the output perturbation, so linear in that error power. `validate` checks
//! the extrapolation against direct measurements.
//!
//! The measurement quantizes the tensor in a private in-memory copy of the model (rounded,
//! then dequantized back into the float slot) and runs only the blocks from that tensor's
//! block on, from cached hidden states of the float model.

use crate::calib::Chunks;
use crate::imatrix::Imatrix;
use crate::io::{encode_float, tensor_f32};
use crate::policy::should_quantize;
use crate::quantize::quantize_rows;
use crate::{CompressError, Result};
use kestrel_engine::Engine;
use kestrel_gguf::{GgmlType, GgufFile, TensorInfo};
use kestrel_model::{Model, StageInput, StageOutput};
use std::sync::Arc;

/// Types a tensor may get, smallest first; those whose block does not divide the row length
/// are skipped per tensor.
pub const CANDIDATES: [GgmlType; 8] = [
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_0,
    GgmlType::Q4_K,
    GgmlType::Q5_0,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::Q8_0,
];

/// The type whose KLD is measured directly (every row length the candidates allow is a
/// multiple of its 32-element block).
pub const REFERENCE: GgmlType = GgmlType::Q4_0;

#[derive(Clone, Debug)]
pub struct Choice {
    pub ty: GgmlType,
    pub bytes: u64,
    /// Input-weighted squared rounding error.
    pub err: f64,
    /// Predicted KLD when only this tensor has this type.
    pub kld: f64,
}

#[derive(Clone, Debug)]
pub struct TensorSensitivity {
    pub name: String,
    pub n_elements: u64,
    /// Measured KLD with the tensor at `REFERENCE`.
    pub kld_ref: f64,
    /// Candidates, smallest first.
    pub options: Vec<Choice>,
}

pub fn candidates(row_len: usize) -> Vec<GgmlType> {
    CANDIDATES
        .iter()
        .copied()
        .filter(|t| row_len % t.block_size() == 0)
        .collect()
}

/// The float model's hidden states entering every block (and leaving the last) and its
/// logits on the scored positions, per chunk.
struct BaseRun {
    hidden: Vec<Vec<Vec<f32>>>,
    logits: Vec<Vec<f32>>,
}

/// First scored position of a chunk (the second half, as perplexity and `kld` score).
fn first_scored(n_ctx: usize) -> usize {
    n_ctx / 2
}

fn base_run(model: &Model, engine: &Engine, c: &Chunks) -> Result<BaseRun> {
    let nl = model.hparams().n_layer;
    let nv = model.hparams().n_vocab;
    let mut s = model.new_session(c.n_ctx, c.n_ctx);
    let (mut hidden, mut logits) = (Vec::new(), Vec::new());
    let first = first_scored(c.n_ctx);
    for chunk in &c.chunks {
        let mut hs = Vec::with_capacity(nl + 1);
        let mut h = Vec::new();
        s.reset();
        let input = StageInput::Tokens(chunk);
        model.forward_stage(
            &mut s,
            &engine.pool,
            input,
            0..0,
            StageOutput::Hidden(&mut h),
        )?;
        hs.push(h);
        for il in 0..nl {
            let mut out = Vec::new();
            s.reset();
            let input = StageInput::Hidden(&hs[il]);
            model.forward_stage(
                &mut s,
                &engine.pool,
                input,
                il..il + 1,
                StageOutput::Hidden(&mut out),
            )?;
            hs.push(out);
        }
        s.reset();
        let out = StageOutput::Logits { from: first };
        model.forward_stage(&mut s, &engine.pool, StageInput::Tokens(chunk), 0..nl, out)?;
        let mut l = Vec::with_capacity((c.n_ctx - first) * nv);
        for i in 0..c.n_ctx - first {
            l.extend_from_slice(s.logits(i));
        }
        logits.push(l);
        hidden.push(hs);
    }
    Ok(BaseRun { hidden, logits })
}

/// Where a change to `name` first acts: its block, only the output head (`n_layer`), or
/// `None` for the embedding (also the head when tied) and anything else: the whole model.
fn start_layer(name: &str, n_layer: usize) -> Option<usize> {
    if let Some(rest) = name.strip_prefix("blk.") {
        return rest.split('.').next()?.parse().ok();
    }
    (name == "output.weight").then_some(n_layer)
}

fn lse(row: &[f32]) -> f64 {
    let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln()
}

fn kl(base: &[f32], model: &[f32]) -> f64 {
    let (lb, lm) = (lse(base), lse(model));
    base.iter()
        .zip(model)
        .map(|(&b, &m)| {
            let pb = b as f64 - lb;
            pb.exp() * (pb - (m as f64 - lm))
        })
        .sum::<f64>()
        .max(0.0)
}

/// A private, writable copy of the model's file to try quantized tensors in.
pub struct Scratch {
    model: Model,
    base: BaseRun,
}

impl Scratch {
    pub fn new(engine: &Engine, c: &Chunks) -> Result<Scratch> {
        let g = &engine.model.gguf;
        let copy = GgufFile::from_bytes(g.bytes().to_vec())?;
        // Tensors are swapped in the copy's bytes: no repacked copies that would miss that.
        let opts = kestrel_model::LoadOptions { repack: false };
        let model = Model::from_gguf_with(Arc::new(copy), opts)?;
        let base = base_run(&model, engine, c)?;
        Ok(Scratch { model, base })
    }

    /// Mean KLD from the float model over the scored positions when tensor `t` holds the
    /// (float) values `x` instead of its own.
    pub fn kld_with(
        &mut self,
        engine: &Engine,
        c: &Chunks,
        t: &TensorInfo,
        x: &[f32],
    ) -> Result<f64> {
        let bytes = encode_float(t.ty, x);
        let original = self.swap(&t.name, &bytes)?;
        let r = self.kld_now(engine, c, &t.name);
        self.swap(&t.name, &original)?;
        r
    }

    fn swap(&mut self, name: &str, bytes: &[u8]) -> Result<Vec<u8>> {
        let g = Arc::get_mut(&mut self.model.gguf)
            .ok_or_else(|| CompressError::Invalid("the scratch model is shared".into()))?;
        let slot = g
            .tensor_data_mut(name)
            .filter(|s| s.len() == bytes.len())
            .ok_or_else(|| CompressError::Tensor {
                tensor: name.into(),
                why: "cannot be replaced in place".into(),
            })?;
        let old = slot.to_vec();
        slot.copy_from_slice(bytes);
        Ok(old)
    }

    fn kld_now(&self, engine: &Engine, c: &Chunks, name: &str) -> Result<f64> {
        let m = &self.model;
        let nl = m.hparams().n_layer;
        let nv = m.hparams().n_vocab;
        let first = first_scored(c.n_ctx);
        let start = start_layer(name, nl);
        let mut s = m.new_session(c.n_ctx, c.n_ctx);
        let (mut sum, mut n) = (0.0, 0usize);
        for (ci, chunk) in c.chunks.iter().enumerate() {
            s.reset();
            let out = StageOutput::Logits { from: first };
            match start {
                Some(il) => {
                    let h = &self.base.hidden[ci][il];
                    m.forward_stage(&mut s, &engine.pool, StageInput::Hidden(h), il..nl, out)?
                }
                None => {
                    m.forward_stage(&mut s, &engine.pool, StageInput::Tokens(chunk), 0..nl, out)?
                }
            }
            for i in 0..c.n_ctx - first - 1 {
                sum += kl(&self.base.logits[ci][i * nv..(i + 1) * nv], s.logits(i));
                n += 1;
            }
        }
        Ok(sum / n.max(1) as f64)
    }
}

/// `x` rounded to `ty` (importance-weighted where `qw` is given) and back to f32, with the
/// input-weighted squared error and the encoded size.
pub fn round_trip(
    ty: GgmlType,
    x: &[f32],
    row_len: usize,
    qw: Option<&[f32]>,
    m2: &[f32],
    threads: usize,
) -> Result<(Vec<f32>, f64, u64)> {
    let q = quantize_rows(ty, x, row_len, qw, threads)?;
    let rb = ty.row_bytes(row_len).unwrap_or(0);
    let mut y = vec![0.0f32; x.len()];
    for (src, dst) in q.chunks_exact(rb).zip(y.chunks_exact_mut(row_len)) {
        kestrel_kernels::dequantize_row(ty, src, dst);
    }
    let mut err = 0.0f64;
    for (xr, yr) in x.chunks_exact(row_len).zip(y.chunks_exact(row_len)) {
        for j in 0..row_len {
            let d = (xr[j] - yr[j]) as f64;
            err += d * d * m2.get(j).copied().unwrap_or(1.0) as f64;
        }
    }
    Ok((y, err, q.len() as u64))
}

/// Errors unless every tensor that would be measured is stored as a float (the measurement
/// writes rounded values back into the tensor's own slot).
pub fn check_float(g: &GgufFile) -> Result<()> {
    let bad = g.tensors().iter().find(|t| {
        should_quantize(t) && !candidates(t.row_len()).is_empty() && t.ty.block_size() != 1
    });
    match bad {
        Some(t) => Err(CompressError::Tensor {
            tensor: t.name.clone(),
            why: format!(
                "stored as {}: --target-bpw/--target-size need a float model (kestrel convert --type f32 first)",
                t.ty
            ),
        }),
        None => Ok(()),
    }
}

/// Sensitivities of every quantizable tensor of the float model `engine` runs. `acts` holds
/// the inputs' mean squares (from the calibration run); `weights` (optional) the importance
/// matrix quantization will use. `progress(done, total, name)` per tensor.
pub fn measure(
    engine: &Engine,
    c: &Chunks,
    acts: &Imatrix,
    weights: Option<&Imatrix>,
    threads: usize,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<Vec<TensorSensitivity>> {
    let g = engine.model.gguf.clone();
    let todo: Vec<&TensorInfo> = g
        .tensors()
        .iter()
        .filter(|t| should_quantize(t) && !candidates(t.row_len()).is_empty())
        .collect();
    check_float(&g)?;
    let mut scratch = Scratch::new(engine, c)?;
    let mut out = Vec::with_capacity(todo.len());
    for (i, t) in todo.iter().enumerate() {
        let x = tensor_f32(&g, t)?;
        let row = t.row_len();
        let ones;
        let m2: &[f32] = match acts.get(&t.name) {
            Some(m) if m.len() == row => m,
            _ => {
                ones = vec![1.0f32; row];
                &ones
            }
        };
        let qw = weights
            .and_then(|w| w.get(&t.name))
            .filter(|w| w.len() == row);
        let mut options = Vec::new();
        let mut kld_ref = 0.0;
        let mut err_ref = 0.0;
        for ty in candidates(row) {
            let (y, err, bytes) = round_trip(ty, &x, row, qw, m2, threads)?;
            if ty == REFERENCE {
                kld_ref = scratch.kld_with(engine, c, t, &y)?;
                err_ref = err;
            }
            options.push(Choice {
                ty,
                bytes,
                err,
                kld: 0.0,
            });
        }
        for o in &mut options {
            o.kld = if err_ref > 0.0 {
                kld_ref * o.err / err_ref
            } else {
                0.0
            };
        }
        out.push(TensorSensitivity {
            name: t.name.clone(),
            n_elements: t.n_elements(),
            kld_ref,
            options,
        });
        progress(i + 1, todo.len(), &t.name);
    }
    Ok(out)
}

/// Direct KLD measurements of `name` at each of `types`, next to the extrapolated values:
/// (type, measured, predicted) — how well the error-power proxy carries the reference.
pub fn validate(
    engine: &Engine,
    c: &Chunks,
    acts: &Imatrix,
    weights: Option<&Imatrix>,
    names: &[&str],
    threads: usize,
) -> Result<Vec<(String, GgmlType, f64, f64)>> {
    let g = engine.model.gguf.clone();
    let mut scratch = Scratch::new(engine, c)?;
    let mut rows = Vec::new();
    for name in names {
        let t = g
            .tensor(name)
            .ok_or_else(|| CompressError::Invalid(format!("no tensor {name}")))?;
        let x = tensor_f32(&g, t)?;
        let row = t.row_len();
        let ones = vec![1.0f32; row];
        let m2 = acts.get(name).filter(|m| m.len() == row).unwrap_or(&ones);
        let qw = weights.and_then(|w| w.get(name)).filter(|w| w.len() == row);
        let mut meas = Vec::new();
        for ty in candidates(row) {
            let (y, err, _) = round_trip(ty, &x, row, qw, m2, threads)?;
            meas.push((ty, err, scratch.kld_with(engine, c, t, &y)?));
        }
        let (_, err_ref, kld_ref) = meas
            .iter()
            .copied()
            .find(|m| m.0 == REFERENCE)
            .unwrap_or((REFERENCE, 0.0, 0.0));
        for (ty, err, k) in meas {
            let pred = if err_ref > 0.0 {
                kld_ref * err / err_ref
            } else {
                0.0
            };
            rows.push((name.to_string(), ty, k, pred));
        }
    }
    Ok(rows)
}
