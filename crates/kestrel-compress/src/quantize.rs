//! Whole-file quantization: every tensor the policy selects is dequantized to f32 (if stored
//! quantized) and re-encoded in its chosen type; everything else is copied byte for byte. All
//! metadata (tokenizer, chat template, ...) is kept; `general.file_type` is updated.

use crate::ftype::Ftype;
use crate::gptq::{self, Hessians};
use crate::imatrix::Imatrix;
use crate::io::{check_output, finish, tensor_f32, writer_with_metadata};
use crate::policy::{should_quantize, PolicyContext, TypeChooser};
use crate::{awq, weighted, CompressError, Result};
use kestrel_gguf::{GgmlType, GgufFile};
use std::path::Path;

/// How weights are rounded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Method {
    /// Round to nearest (weighted by the importance matrix when one is given).
    #[default]
    Rtn,
    /// Activation-aware channel scaling before rounding (see `awq`); needs an importance matrix.
    Awq,
    /// Column-by-column rounding with error compensation (see `gptq`); needs calibration
    /// Hessians.
    Gptq,
}

impl Method {
    pub fn parse(s: &str) -> Result<Method> {
        match s.to_ascii_lowercase().as_str() {
            "rtn" => Ok(Method::Rtn),
            "awq" => Ok(Method::Awq),
            "gptq" => Ok(Method::Gptq),
            _ => Err(CompressError::Invalid(format!(
                "--method {s}: expected rtn, awq or gptq"
            ))),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct QuantizeOptions<'a> {
    pub method: Method,
    /// Keep the base type for every quantized tensor (no llama.cpp mix), like `--pure`.
    pub pure: bool,
    /// Weight each tensor's rounding error by these column importances where present.
    pub imatrix: Option<&'a Imatrix>,
    /// Threads for the row loop (0 = available cores).
    pub threads: usize,
    /// Calibration Hessians for `Method::Gptq`.
    pub hessians: Option<&'a Hessians>,
    /// GPTQ damping (fraction of the mean Hessian diagonal; 0 means `gptq::DEFAULT_DAMP`).
    pub damp: f64,
    /// Per-tensor types chosen elsewhere (`mixed`): they replace the mix; tensors not named
    /// keep their type.
    pub types: Option<&'a std::collections::BTreeMap<String, GgmlType>>,
}

/// What happened to one tensor.
#[derive(Clone, Debug)]
pub struct TensorReport {
    pub name: String,
    pub from: GgmlType,
    pub to: GgmlType,
    pub n_elements: u64,
    pub bytes: usize,
    /// The importance matrix was used for this tensor.
    pub weighted: bool,
    /// GPTQ rounded this tensor.
    pub gptq: bool,
    /// For GPTQ tensors: the output error on the calibration inputs (see
    /// `gptq::output_error`, sampled rows) of GPTQ and of importance-weighted rounding.
    pub gptq_error: Option<(f64, f64)>,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub tensors: Vec<TensorReport>,
    /// AWQ's choice per group: (group, alpha, weighted-error reduction vs no scaling).
    pub awq: Vec<(String, f32, f64)>,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Report {
    /// Bits per weight over all tensors (as llama.cpp's size / n_elements).
    pub fn bits_per_weight(&self) -> f64 {
        let n: u64 = self.tensors.iter().map(|t| t.n_elements).sum();
        let b: usize = self.tensors.iter().map(|t| t.bytes).sum();
        b as f64 * 8.0 / n.max(1) as f64
    }
}

/// Quantizes rows of `row_len` elements of `x` to `ty`. With `qw` (one importance per
/// column) the weighted quantizers are used where the type has one.
pub fn quantize_rows(
    ty: GgmlType,
    x: &[f32],
    row_len: usize,
    qw: Option<&[f32]>,
    threads: usize,
) -> Result<Vec<u8>> {
    let rb = ty.row_bytes(row_len).ok_or_else(|| {
        CompressError::Invalid(format!(
            "row length {row_len} is not a whole number of {ty} blocks"
        ))
    })?;
    if row_len == 0 || x.len() % row_len != 0 {
        return Err(CompressError::Invalid(format!(
            "{} elements are not whole rows of {row_len}",
            x.len()
        )));
    }
    if let Some(q) = qw {
        if q.len() != row_len {
            return Err(CompressError::Invalid(format!(
                "importance vector has {} entries for rows of {row_len}",
                q.len()
            )));
        }
    }
    let rows = x.len() / row_len;
    let mut out = vec![0u8; rows * rb];
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    let per = rows.div_ceil(threads.max(1)).max(1);
    let use_w = qw.filter(|_| weighted::supports(ty));
    std::thread::scope(|s| {
        for (xs, ys) in x.chunks(per * row_len).zip(out.chunks_mut(per * rb)) {
            s.spawn(move || {
                for (xr, yr) in xs.chunks_exact(row_len).zip(ys.chunks_exact_mut(rb)) {
                    match use_w {
                        Some(q) => weighted::quantize_row(ty, xr, q, yr),
                        None => crate::rtn::quantize_row(ty, xr, yr),
                    }
                }
            });
        }
    });
    Ok(out)
}

/// Progress steps the AWQ search took (one per group), so the bar continues from there.
fn awq_groups_done(p: &Option<awq::AwqPlan>) -> usize {
    p.as_ref().map_or(0, |p| p.choices.len())
}

/// Output errors on the calibration inputs (64 sampled rows) of the GPTQ bytes `q` and of
/// importance-weighted rounding of the same weights: what GPTQ gained on its own objective.
fn compare_with_rounding(
    ty: GgmlType,
    x: &[f32],
    cols: usize,
    q: &[u8],
    f: &gptq::Factor,
    threads: usize,
) -> Result<(f64, f64)> {
    let deq = |bytes: &[u8]| {
        let rb = ty.row_bytes(cols).unwrap_or(0);
        let mut y = vec![0.0f32; x.len()];
        for (src, dst) in bytes.chunks_exact(rb).zip(y.chunks_exact_mut(cols)) {
            kestrel_kernels::dequantize_row(ty, src, dst);
        }
        y
    };
    let rtn = quantize_rows(ty, x, cols, Some(f.importance()), threads)?;
    Ok((
        gptq::output_error(x, &deq(q), &f.h, cols, 64),
        gptq::output_error(x, &deq(&rtn), &f.h, cols, 64),
    ))
}

/// Quantizes `input` into a new file `output` (which must not exist). `progress(done, total,
/// tensor name)` is called after each tensor.
pub fn quantize_file(
    input: &Path,
    output: &Path,
    ftype: Ftype,
    opts: &QuantizeOptions,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<Report> {
    check_output(input, output)?;
    let g = GgufFile::open(input)?;
    if let Some(im) = opts.imatrix {
        im.check_against(&g)?;
    }
    let mut chooser = TypeChooser::new(
        PolicyContext::from_gguf(&g, opts.imatrix.is_some()),
        ftype,
        opts.pure,
    );
    // Types first, in file order (the mixes count tensors as they come).
    let targets: Vec<GgmlType> = g
        .tensors()
        .iter()
        .map(|t| {
            if let Some(types) = opts.types {
                types.get(&t.name).copied().unwrap_or(t.ty)
            } else if should_quantize(t) {
                chooser.choose(t)
            } else {
                t.ty
            }
        })
        .collect();
    let hessians = match (opts.method, opts.hessians) {
        (Method::Gptq, None) => {
            return Err(CompressError::Invalid(
                "--method gptq needs calibration text (Hessians of the block matrices)".into(),
            ))
        }
        (Method::Gptq, Some(h)) => Some(h),
        _ => None,
    };
    let damp = if opts.damp > 0.0 {
        opts.damp
    } else {
        gptq::DEFAULT_DAMP
    };
    let mut factors = gptq::FactorCache::default();
    let awq_plan = match opts.method {
        Method::Rtn | Method::Gptq => None,
        Method::Awq => {
            let im = opts.imatrix.ok_or_else(|| {
                CompressError::Invalid(
                    "--method awq needs --imatrix FILE (activation statistics)".into(),
                )
            })?;
            let types = g
                .tensors()
                .iter()
                .zip(&targets)
                .filter(|(t, ty)| should_quantize(t) && **ty != t.ty)
                .map(|(t, ty)| (t.name.clone(), *ty))
                .collect();
            Some(awq::plan(
                &g,
                &types,
                im,
                opts.threads,
                &mut |d, n, name| progress(d, n + g.tensors().len(), name),
            )?)
        }
    };
    let (imatrix, offset) = match &awq_plan {
        Some(p) => (Some(&p.imatrix), awq_groups_done(&awq_plan)),
        None => (opts.imatrix, 0),
    };
    let mut w = writer_with_metadata(&g);
    let mut tensors = Vec::with_capacity(g.tensors().len());
    let total = g.tensors().len() + offset;
    for (i, (t, &target)) in g.tensors().iter().zip(&targets).enumerate() {
        let qw = imatrix.and_then(|im| im.get(&t.name));
        let changed = awq_plan.as_ref().and_then(|p| p.data.get(&t.name));
        let hess = hessians
            .and_then(|h| h.get(&t.name))
            .filter(|h| target != t.ty && gptq::supports(target) && h.n == t.row_len());
        let mut gptq_error = None;
        let data = match (changed, hess) {
            (_, Some(h)) => {
                let f = factors.get(&t.name, h, damp)?;
                let x = tensor_f32(&g, t)?;
                let q = gptq::quantize_matrix(target, &x, t.row_len(), f, opts.threads);
                if let Ok(q) = &q {
                    gptq_error = Some(compare_with_rounding(
                        target,
                        &x,
                        t.row_len(),
                        q,
                        f,
                        opts.threads,
                    )?);
                }
                q
            }
            (Some(x), None) => quantize_rows(target, x, t.row_len(), qw, opts.threads),
            (None, None) if target == t.ty => Ok(g.tensor_data(t).to_vec()),
            (None, None) => {
                let x = tensor_f32(&g, t)?;
                quantize_rows(target, &x, t.row_len(), qw, opts.threads)
            }
        }
        .map_err(|e| CompressError::Tensor {
            tensor: t.name.clone(),
            why: e.to_string(),
        })?;
        tensors.push(TensorReport {
            name: t.name.clone(),
            from: t.ty,
            to: target,
            n_elements: t.n_elements(),
            bytes: data.len(),
            weighted: (qw.is_some() || hess.is_some())
                && target != t.ty
                && weighted::supports(target),
            gptq: hess.is_some(),
            gptq_error,
        });
        w.add_tensor(t.name.clone(), t.dims.clone(), target, data)?;
        progress(offset + i + 1, total, &t.name);
    }
    finish(w, ftype.id(), output)?;
    let bytes_in = g.bytes().len() as u64;
    let bytes_out = std::fs::metadata(output)
        .map_err(|source| CompressError::Io {
            path: output.to_path_buf(),
            source,
        })?
        .len();
    Ok(Report {
        tensors,
        awq: awq_plan.map(|p| p.choices).unwrap_or_default(),
        bytes_in,
        bytes_out,
    })
}
