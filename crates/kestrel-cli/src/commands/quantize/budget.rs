//! `kestrel quantize IN OUT --target-bpw B | --target-size SIZE --calib TEXT [--imatrix F]`:
//! per-tensor types from measured sensitivity, meeting a size budget with the least loss.

use crate::args::ModelArgs;
use crate::util::{human_bytes, Progress};
use anyhow::Context;
use clap::Args;
use kestrel_compress::imatrix::Imatrix;
use kestrel_compress::mixed::{self, Budget};
use kestrel_compress::quantize::{quantize_file, QuantizeOptions, Report};
use kestrel_compress::Ftype;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct BudgetArgs {
    /// Choose every tensor's type to meet this many bits per weight (over all tensors) with
    /// the least predicted KL-divergence (needs --calib; replaces --type)
    #[arg(long = "target-bpw", conflicts_with = "target_size")]
    pub target_bpw: Option<f64>,
    /// Like --target-bpw, for a whole-file size (e.g. 100MiB, 1.5G, or bytes)
    #[arg(long = "target-size")]
    pub target_size: Option<String>,
    /// Sensitivity measurement: calibration chunks (each tensor costs one pass over them)
    #[arg(long = "sens-chunks", default_value_t = 1)]
    pub sens_chunks: usize,
    /// Sensitivity measurement: tokens per chunk (the second half is scored)
    #[arg(long = "sens-ctx", default_value_t = 128)]
    pub sens_ctx: usize,
}

impl BudgetArgs {
    pub fn budget(&self) -> anyhow::Result<Option<Budget>> {
        Ok(match (self.target_bpw, &self.target_size) {
            (Some(b), _) => {
                anyhow::ensure!(
                    b > 0.0 && b.is_finite(),
                    "--target-bpw must be positive, got {b}"
                );
                Some(Budget::Bpw(b))
            }
            (None, Some(s)) => Some(Budget::Bytes(mixed::parse_size(s)?)),
            (None, None) => None,
        })
    }
}

pub struct Common<'a> {
    pub input: &'a Path,
    pub output: &'a Path,
    pub imatrix: Option<&'a PathBuf>,
    pub calib: Option<&'a PathBuf>,
    pub threads: usize,
    pub verbose: bool,
}

pub fn run(c: Common, a: &BudgetArgs, budget: Budget) -> anyhow::Result<(Report, Ftype)> {
    let calib = c.calib.context(
        "--target-bpw / --target-size need --calib TEXT (sensitivity is measured on it)",
    )?;
    anyhow::ensure!(
        !c.output.exists(),
        "{} already exists; refusing to overwrite it (remove it first or pick another name)",
        c.output.display()
    );
    let im = match c.imatrix {
        Some(p) => Some(Imatrix::load(p)?),
        None => None,
    };
    let text =
        std::fs::read_to_string(calib).with_context(|| format!("reading {}", calib.display()))?;
    let threads = (c.threads > 0).then_some(c.threads);
    let engine = ModelArgs {
        model: Some(c.input.to_path_buf()),
        threads,
        ctx: Some(a.sens_ctx),
        batch: a.sens_ctx,
        check_tensors: false,
        chat_template_file: None,
    }
    .load()?;
    if let Some(im) = &im {
        im.check_against(&engine.model.gguf)?;
    }
    let o = mixed::Options {
        budget,
        n_ctx: a.sens_ctx,
        max_chunks: a.sens_chunks,
        threads: c.threads,
    };
    let mut bar = Progress::new("calibrate", 1);
    let plan = mixed::plan(&engine, &text, im.as_ref(), &o, &mut |step, d, t| {
        bar.set_total(t);
        bar.update(d, step)
    })?;
    drop(bar);
    drop(engine);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for ty in plan.assignment.types.values() {
        *counts.entry(ty.name()).or_default() += 1;
    }
    let q = plan.assignment.bytes;
    eprintln!(
        "mix for {:?}: {} tensors {:?}; predicted {:.2} bits per weight, {}, summed KLD {:.4}",
        budget,
        plan.assignment.types.len(),
        counts,
        plan.layout.bpw(q),
        human_bytes(plan.layout.file_bytes(q)),
        plan.assignment.predicted_kld
    );
    let opts = QuantizeOptions {
        imatrix: im.as_ref(),
        threads: c.threads,
        types: Some(&plan.assignment.types),
        ..Default::default()
    };
    let mut bar = Progress::new("quantize", 1);
    let r = quantize_file(c.input, c.output, plan.ftype(), &opts, &mut |d, t, _| {
        bar.set_total(t);
        bar.update(d, "")
    })?;
    drop(bar);
    if c.verbose {
        for s in &plan.sensitivity {
            eprintln!(
                "{:40} KLD at Q4_0 {:.5} -> {}",
                s.name,
                s.kld_ref,
                plan.assignment.types[&s.name].name()
            );
        }
    }
    Ok((r, plan.ftype()))
}
