//! AWQ, activation-aware weight quantization (Lin et al., 2023): before rounding, scale each
//! input channel j of a weight matrix by s_j = a_j^alpha (a_j the channel's RMS activation on
//! calibration text), and fold 1/s_j into the operation that produces that input, so the
//! float model is unchanged but the salient channels get finer quantization steps. alpha is
//! searched per group of matrices sharing an input.
//!
//! Where the inverse scale goes (exact for the architectures here, whose blocks are
//! pre-norm with gated FFNs):
//! - attn_q/k/v read `attn_norm(x)`: divide `attn_norm.weight` by s;
//! - ffn_gate/up read `ffn_norm(x)`: divide `ffn_norm.weight` by s;
//! - ffn_down reads `act(gate) * up`, linear in up: divide row j of `ffn_up` by s_j.
//!
//! attn_output's input mixes value heads under GQA; it is left unscaled.
//!
//! The error each alpha is judged by is the importance-weighted squared weight error,
//! sum_j E[x_j^2] * sum_i (W_ij - Q(W)_ij)^2 in the original units: the diagonal of the
//! calibration Hessian, the same statistics an importance matrix holds. The quantizer in the
//! loop is the one the file will use (importance-weighted, as `--imatrix` is required).

use crate::imatrix::{Entry, Imatrix};
use crate::io::tensor_f32;
use crate::quantize::quantize_rows;
use crate::{CompressError, Result};
use kestrel_gguf::{GgmlType, GgufFile};
use std::collections::{BTreeMap, HashMap};

/// The scale grid: alpha = 0 (no scaling, plain quantization) to 1 in eighths.
const ALPHAS: [f32; 9] = [0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0];

pub struct AwqPlan {
    /// New f32 contents for every tensor AWQ changed (scaled matrices and their absorbers).
    pub data: HashMap<String, Vec<f32>>,
    /// The importance matrix in the scaled units (E[x_j^2] / s_j^2).
    pub imatrix: Imatrix,
    /// (group, chosen alpha, error reduction vs alpha = 0).
    pub choices: Vec<(String, f32, f64)>,
}

/// What a group scales: matrices sharing one input, and where their inverse scale goes.
struct Group {
    label: String,
    mats: Vec<String>,
    /// Absorber: a norm weight vector (`true`) or the rows of a matrix (`false`).
    absorber: (String, bool),
    /// Imatrix entry holding the shared input's statistics.
    stats: String,
}

fn groups(g: &GgufFile) -> Vec<Group> {
    let mut out = Vec::new();
    for i in 0.. {
        let t = |s: &str| format!("blk.{i}.{s}.weight");
        if g.tensor(&t("attn_q")).is_none() {
            break;
        }
        // ffn_down first: it rescales ffn_up's rows, which the ffn group then quantizes.
        out.push(Group {
            label: format!("blk.{i}.ffn_down"),
            mats: vec![t("ffn_down")],
            absorber: (t("ffn_up"), false),
            stats: t("ffn_down"),
        });
        out.push(Group {
            label: format!("blk.{i}.attn_qkv"),
            mats: vec![t("attn_q"), t("attn_k"), t("attn_v")],
            absorber: (t("attn_norm"), true),
            stats: t("attn_q"),
        });
        out.push(Group {
            label: format!("blk.{i}.ffn_gate_up"),
            mats: vec![t("ffn_gate"), t("ffn_up")],
            absorber: (t("ffn_norm"), true),
            stats: t("ffn_gate"),
        });
    }
    out
}

/// Importance-weighted squared error of quantizing `w` (rows of `cols`, already scaled by
/// `s`) as `ty`, measured in the original units with column importances `imp`.
fn group_error(
    w: &[f32],
    cols: usize,
    ty: GgmlType,
    s: &[f32],
    imp: &[f32],
    threads: usize,
) -> Result<f64> {
    let scaled_imp: Vec<f32> = imp.iter().zip(s).map(|(a, s)| a / (s * s)).collect();
    let q = quantize_rows(ty, w, cols, Some(&scaled_imp), threads)?;
    let rb = ty.row_bytes(cols).unwrap_or(0);
    let mut y = vec![0.0f32; cols];
    let mut err = 0.0f64;
    for (src, row) in q.chunks_exact(rb).zip(w.chunks_exact(cols)) {
        kestrel_kernels::dequantize_row(ty, src, &mut y);
        for j in 0..cols {
            let d = (y[j] - row[j]) as f64;
            err += scaled_imp[j] as f64 * d * d;
        }
    }
    Ok(err)
}

fn scales(a: &[f32], alpha: f32) -> Vec<f32> {
    let max = a.iter().fold(0.0f32, |m, &v| m.max(v));
    let floor = (max * 1e-6).max(f32::MIN_POSITIVE);
    let s: Vec<f32> = a.iter().map(|&v| v.max(floor).powf(alpha)).collect();
    // Normalize so the scales straddle 1 (as AWQ does): sqrt(max * min) -> 1.
    let (lo, hi) = s
        .iter()
        .fold((f32::MAX, 0.0f32), |(l, h), &v| (l.min(v), h.max(v)));
    let norm = (lo * hi).sqrt();
    s.iter().map(|v| v / norm).collect()
}

/// Searches the scales of every group. `types` holds the type each matrix will be stored as.
pub fn plan(
    g: &GgufFile,
    types: &HashMap<String, GgmlType>,
    im: &Imatrix,
    threads: usize,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<AwqPlan> {
    let gs = groups(g);
    if gs.is_empty() {
        return Err(CompressError::Invalid(
            "AWQ found no blk.N.attn_q.weight tensors (unsupported layout)".into(),
        ));
    }
    let mut data: HashMap<String, Vec<f32>> = HashMap::new();
    let mut entries: BTreeMap<String, Entry> = im.entries.clone();
    let mut choices = Vec::new();
    let load = |data: &HashMap<String, Vec<f32>>, name: &str| -> Result<Vec<f32>> {
        match data.get(name) {
            Some(v) => Ok(v.clone()),
            None => {
                let t = g.tensor(name).ok_or_else(|| CompressError::Tensor {
                    tensor: name.into(),
                    why: "missing (AWQ needs it)".into(),
                })?;
                tensor_f32(g, t)
            }
        }
    };
    for (gi, grp) in gs.iter().enumerate() {
        progress(gi, gs.len(), &grp.label);
        let Some(e) = im.entries.get(&grp.stats) else {
            continue;
        };
        let cols = e.sum2.len();
        let imp: Vec<f32> = im.get(&grp.stats).unwrap_or(&[]).to_vec();
        let tys: Vec<GgmlType> = grp
            .mats
            .iter()
            .filter_map(|m| types.get(m).copied())
            .collect();
        if tys.len() != grp.mats.len() || tys.iter().any(|t| t.block_size() == 1) {
            continue; // Some matrix stays float: nothing to gain.
        }
        let mats: Vec<Vec<f32>> = grp
            .mats
            .iter()
            .map(|m| load(&data, m))
            .collect::<Result<_>>()?;
        if mats.iter().any(|m| m.len() % cols != 0) {
            return Err(CompressError::Invalid(format!(
                "{}: shapes do not match the imatrix",
                grp.label
            )));
        }
        let rms: Vec<f32> = imp.iter().map(|v| v.max(0.0).sqrt()).collect();
        let (mut best, mut best_alpha, mut base) = (f64::MAX, 0.0f32, 0.0f64);
        for &alpha in &ALPHAS {
            let s = scales(&rms, alpha);
            let mut err = 0.0;
            for (m, &ty) in mats.iter().zip(&tys) {
                let scaled: Vec<f32> = m
                    .chunks_exact(cols)
                    .flat_map(|r| r.iter().zip(&s).map(|(w, s)| w * s))
                    .collect();
                err += group_error(&scaled, cols, ty, &s, &imp, threads)?;
            }
            if alpha == 0.0 {
                base = err;
            }
            if err < best {
                best = err;
                best_alpha = alpha;
            }
        }
        choices.push((
            grp.label.clone(),
            best_alpha,
            if base > 0.0 { 1.0 - best / base } else { 0.0 },
        ));
        if best_alpha == 0.0 {
            continue;
        }
        let s = scales(&rms, best_alpha);
        for (name, m) in grp.mats.iter().zip(mats) {
            let scaled: Vec<f32> = m
                .chunks_exact(cols)
                .flat_map(|r| r.iter().zip(&s).map(|(w, s)| w * s))
                .collect();
            data.insert(name.clone(), scaled);
            if let Some(e) = entries.get_mut(name) {
                for (v, s) in e.sum2.iter_mut().zip(&s) {
                    *v /= s * s;
                }
            }
        }
        let (abs_name, is_norm) = &grp.absorber;
        let mut a = load(&data, abs_name)?;
        if *is_norm {
            if a.len() != cols {
                return Err(CompressError::Invalid(format!(
                    "{abs_name}: length {} != {cols}",
                    a.len()
                )));
            }
            for (v, s) in a.iter_mut().zip(&s) {
                *v /= s;
            }
        } else {
            // ffn_up has one row per channel ffn_down reads: row r gets 1/s_r.
            if a.len() % cols != 0 {
                return Err(CompressError::Invalid(format!(
                    "{abs_name}: {} elements are not {cols} rows",
                    a.len()
                )));
            }
            let row_len = a.len() / cols;
            for (r, s) in a.chunks_exact_mut(row_len).zip(&s) {
                for v in r {
                    *v /= s;
                }
            }
        }
        data.insert(abs_name.clone(), a);
    }
    progress(gs.len(), gs.len(), "");
    Ok(AwqPlan {
        data,
        imatrix: Imatrix::new(entries, im.datasets.clone(), im.chunk_count, im.chunk_size),
        choices,
    })
}
