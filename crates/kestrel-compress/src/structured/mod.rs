//! Structured pruning: remove whole blocks (`--drop-layers`) or FFN channels (`--ffn-keep`),
//! chosen from statistics over calibration text, and write a smaller model with consistent
//! shapes and metadata (it loads and runs like any other).

pub mod ffn;
pub mod layers;
pub mod rewrite;

use crate::calib;
use crate::imatrix::{Collector, Imatrix};
use crate::io::check_output;
use crate::{CompressError, Result};
use kestrel_engine::Engine;
use std::path::Path;

#[derive(Clone, Debug)]
pub struct Options {
    /// Blocks to remove (0 = none).
    pub drop_layers: usize,
    /// Fraction of FFN channels to keep in every block (`None` = all).
    pub ffn_keep: Option<f32>,
    /// The kept channel count is a multiple of this (256 suits k-quants, 32 the legacy types).
    pub ffn_multiple: usize,
    /// Calibration chunk length and count (0 = all chunks).
    pub n_ctx: usize,
    pub max_chunks: usize,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub chunks: usize,
    /// Mean input/output cosine per block of the input model (empty without --drop-layers).
    pub similarity: Vec<f64>,
    pub dropped: Vec<usize>,
    pub n_ff: usize,
    pub n_ff_kept: Option<usize>,
    pub write: rewrite::WriteReport,
}

/// Prunes the model `engine` was loaded from (`input`) into `output`. `progress(step, done,
/// total)` during the calibration passes.
pub fn structured_prune(
    engine: &Engine,
    input: &Path,
    output: &Path,
    text: &str,
    o: &Options,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<Report> {
    check_output(input, output)?;
    let g = &engine.model.gguf;
    let hp = engine.model.hparams();
    let nl = hp.n_layer;
    if o.drop_layers == 0 && o.ffn_keep.is_none() {
        return Err(CompressError::Invalid(
            "structured pruning needs --drop-layers N and/or --ffn-keep F".into(),
        ));
    }
    if o.drop_layers >= nl {
        return Err(CompressError::Invalid(format!(
            "--drop-layers {}: the model has {nl} blocks; keep at least one",
            o.drop_layers
        )));
    }
    let n_ff_kept = match o.ffn_keep {
        Some(f) => {
            let k = ffn::kept_count(hp.n_ff, f, o.ffn_multiple)?;
            // Refuse a quantized ffn_down before the calibration run, not after it.
            for il in 0..nl {
                let name = format!("blk.{il}.ffn_down.weight");
                match g.tensor(&name) {
                    Some(t) if t.ty.block_size() == 1 && t.row_len() == hp.n_ff => {}
                    Some(t) => {
                        return Err(CompressError::Tensor {
                            tensor: name,
                            why: format!(
                                "{} with rows of {}: --ffn-keep needs float weights with one column per FFN channel ({}); run kestrel convert --type f32 first",
                                t.ty,
                                t.row_len(),
                                hp.n_ff
                            ),
                        })
                    }
                    None => return Err(CompressError::Invalid(format!("the model has no {name}"))),
                }
            }
            Some(k)
        }
        None => None,
    };
    let c = calib::chunks(engine, text, o.n_ctx, o.max_chunks, "structured pruning")?;
    let (similarity, dropped) = if o.drop_layers > 0 {
        let sim = layers::block_similarity(engine, &c, &mut |d, t| progress("similarity", d, t))?;
        let drops = layers::choose_drops(&sim, o.drop_layers, layers::kind_rule(hp))?;
        (sim, drops)
    } else {
        (Vec::new(), Vec::new())
    };
    let kept: Vec<usize> = (0..nl).filter(|i| !dropped.contains(i)).collect();
    let ffn = match n_ff_kept {
        Some(k) => {
            let col = Collector::default();
            // One logit row: only the block matrices' inputs are needed.
            calib::run_observed(engine, &c, o.n_ctx - 1, &col, &mut |d, t| {
                progress("ffn importance", d, t)
            })?;
            let im = Imatrix::new(
                col.into_entries(),
                Vec::new(),
                c.chunks.len() as u32,
                o.n_ctx as u32,
            );
            let mut per = vec![Vec::new(); nl];
            for &il in &kept {
                per[il] = ffn::choose_channels(g, &im, il, k)?;
            }
            Some(per)
        }
        None => None,
    };
    let plan = rewrite::Plan { kept, ffn };
    let write = rewrite::write(g, input, output, &plan)?;
    Ok(Report {
        chunks: c.chunks.len(),
        similarity,
        dropped,
        n_ff: hp.n_ff,
        n_ff_kept,
        write,
    })
}
