//! Mixed precision under a budget (`quantize --target-bpw B | --target-size SIZE`): measure
//! each tensor's sensitivity on calibration text (`sensitivity`), then choose per-tensor types
//! meeting the budget with the least summed predicted KLD (`assign`). `quantize_file` writes
//! the result with `QuantizeOptions::types`.

pub mod assign;
pub mod sensitivity;

use crate::calib;
use crate::ftype::Ftype;
use crate::imatrix::{Collector, Imatrix};
use crate::policy::should_quantize;
use crate::{CompressError, Result};
use kestrel_engine::Engine;
use kestrel_gguf::GgufFile;
use sensitivity::{candidates, TensorSensitivity};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Budget {
    /// Bits per weight over all tensors (as `quantize` reports it).
    Bpw(f64),
    /// Whole output file size in bytes.
    Bytes(u64),
}

/// Parses a size: bytes, or a number with K/M/G (powers of 1024, optional "iB"/"B").
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let bad = || {
        CompressError::Invalid(format!(
            "--target-size {s}: expected e.g. 100MiB, 1.5G or 104857600"
        ))
    };
    let lower = t.to_ascii_lowercase();
    let num_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(num_end);
    let v: f64 = num.parse().map_err(|_| bad())?;
    let mul = match unit.trim().trim_end_matches("ib").trim_end_matches('b') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    if !(v > 0.0 && v.is_finite()) {
        return Err(bad());
    }
    Ok((v * mul) as u64)
}

/// Sizes the budget arithmetic needs.
#[derive(Clone, Debug)]
pub struct Layout {
    pub total_elements: u64,
    /// Tensors that keep their bytes (norms, and anything without a candidate type).
    pub fixed_bytes: u64,
    /// Metadata, header and alignment padding (an upper estimate for the output).
    pub overhead: u64,
    /// Quantized-tensor bytes with every tensor at its smallest candidate.
    pub min_bytes: u64,
}

impl Layout {
    pub fn of(g: &GgufFile) -> Layout {
        let mut l = Layout {
            total_elements: 0,
            fixed_bytes: 0,
            overhead: 0,
            min_bytes: 0,
        };
        let mut data = 0u64;
        for t in g.tensors() {
            l.total_elements += t.n_elements();
            data += t.size as u64;
            let c = candidates(t.row_len());
            match (should_quantize(t), c.first()) {
                (true, Some(&ty)) => {
                    l.min_bytes += (ty.row_bytes(t.row_len()).unwrap_or(0) * t.n_rows()) as u64
                }
                _ => l.fixed_bytes += t.size as u64,
            }
        }
        // Each tensor may gain up to one alignment of padding.
        l.overhead = (g.bytes().len() as u64).saturating_sub(data)
            + (g.alignment() * g.tensors().len()) as u64;
        l
    }

    pub fn file_bytes(&self, quantized: u64) -> u64 {
        quantized + self.fixed_bytes + self.overhead
    }

    pub fn bpw(&self, quantized: u64) -> f64 {
        (quantized + self.fixed_bytes) as f64 * 8.0 / self.total_elements.max(1) as f64
    }

    /// Bytes the quantized tensors may take; errors (naming the smallest reachable budget)
    /// when even the smallest types exceed it.
    pub fn quantized_budget(&self, b: Budget) -> Result<u64> {
        let (avail, what) = match b {
            Budget::Bpw(bpw) => {
                let bits = bpw * self.total_elements as f64;
                (
                    (bits / 8.0) as i128 - self.fixed_bytes as i128,
                    format!("--target-bpw {bpw}"),
                )
            }
            Budget::Bytes(n) => (
                n as i128 - (self.fixed_bytes + self.overhead) as i128,
                format!("--target-size {:.1} MiB", n as f64 / 1048576.0),
            ),
        };
        if avail < self.min_bytes as i128 {
            return Err(CompressError::Invalid(format!(
                "{what} is below the smallest mix this model allows: {:.2} bits per weight, {:.1} MiB (every tensor at its smallest type)",
                self.bpw(self.min_bytes),
                self.file_bytes(self.min_bytes) as f64 / 1048576.0
            )));
        }
        Ok(avail as u64)
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub budget: Budget,
    pub n_ctx: usize,
    pub max_chunks: usize,
    pub threads: usize,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub layout: Layout,
    pub sensitivity: Vec<TensorSensitivity>,
    pub assignment: assign::Assignment,
    pub chunks: usize,
}

impl Plan {
    /// A `general.file_type` for the mix: the file type of the type holding most weights.
    pub fn ftype(&self) -> Ftype {
        let mut by: std::collections::BTreeMap<&str, u64> = Default::default();
        for s in &self.sensitivity {
            *by.entry(self.assignment.types[&s.name].name()).or_default() += s.n_elements;
        }
        let top = by
            .iter()
            .max_by_key(|(_, &n)| n)
            .map(|(t, _)| *t)
            .unwrap_or("Q8_0");
        let name = match top {
            "Q3_K" => "Q3_K_M",
            "Q4_K" => "Q4_K_M",
            "Q5_K" => "Q5_K_M",
            t => t,
        };
        Ftype::parse(name).unwrap_or(Ftype::Q8_0)
    }
}

/// Measures sensitivities of the float model `engine` runs on `text` and assigns types for
/// `o.budget`. `weights`: the importance matrix quantization will use (optional).
/// `progress(step, done, total)`.
pub fn plan(
    engine: &Engine,
    text: &str,
    weights: Option<&Imatrix>,
    o: &Options,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<Plan> {
    let layout = Layout::of(&engine.model.gguf);
    // The cheap check first: an unreachable budget fails before the calibration run.
    let budget = layout.quantized_budget(o.budget)?;
    sensitivity::check_float(&engine.model.gguf)?;
    let c = calib::chunks(
        engine,
        text,
        o.n_ctx,
        o.max_chunks,
        "the sensitivity measurement",
    )?;
    let col = Collector::default();
    calib::run_observed(engine, &c, o.n_ctx - 1, &col, &mut |d, t| {
        progress("activations", d, t)
    })?;
    let acts = Imatrix::new(
        col.into_entries(),
        Vec::new(),
        c.chunks.len() as u32,
        o.n_ctx as u32,
    );
    let sensitivity =
        sensitivity::measure(engine, &c, &acts, weights, o.threads, &mut |d, t, _| {
            progress("sensitivity", d, t)
        })?;
    let assignment = assign::assign(&sensitivity, budget).map_err(|min| {
        CompressError::Invalid(format!(
            "the budget is below the smallest mix: {:.2} bits per weight",
            layout.bpw(min)
        ))
    })?;
    Ok(Plan {
        layout,
        sensitivity,
        assignment,
        chunks: c.chunks.len(),
    })
}
