//! Importance matrices: for every weight matrix, the sum over calibration tokens of the
//! squared input of each column (and how many tokens were summed). Quantizers weight a
//! weight's rounding error by its column's mean square input, `sum2 / count`.
//!
//! File format: llama.cpp's GGUF imatrix format, so files move between the two tools:
//! `general.type = "imatrix"`, `imatrix.datasets` (string array), `imatrix.chunk_count`,
//! `imatrix.chunk_size` (u32), and per weight `<name>.in_sum2` (F32, [cols, 1]) and
//! `<name>.counts` (F32, [1, 1]).

use crate::{CompressError, Result};
use kestrel_engine::Engine;
use kestrel_gguf::{Array, GgmlType, GgufFile, GgufWriter, Value};
use kestrel_model::MatmulObserver;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub sum2: Vec<f32>,
    pub count: f32,
}

#[derive(Clone, Debug, Default)]
pub struct Imatrix {
    pub entries: BTreeMap<String, Entry>,
    pub datasets: Vec<String>,
    pub chunk_count: u32,
    pub chunk_size: u32,
    means: BTreeMap<String, Vec<f32>>,
}

impl Imatrix {
    pub fn new(
        entries: BTreeMap<String, Entry>,
        datasets: Vec<String>,
        chunk_count: u32,
        chunk_size: u32,
    ) -> Imatrix {
        let means = entries
            .iter()
            .map(|(k, e)| {
                let c = e.count.max(1.0);
                (k.clone(), e.sum2.iter().map(|s| s / c).collect())
            })
            .collect();
        Imatrix {
            entries,
            datasets,
            chunk_count,
            chunk_size,
            means,
        }
    }

    /// Mean square input per column of the weight `name`.
    pub fn get(&self, name: &str) -> Option<&[f32]> {
        self.means.get(name).map(|v| v.as_slice())
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        if path.exists() {
            return Err(CompressError::OutputExists(path.to_path_buf()));
        }
        let mut w = GgufWriter::new();
        w.set("general.type", Value::String("imatrix".into()));
        w.set(
            "imatrix.datasets",
            Value::Array(Array::String(self.datasets.clone())),
        );
        w.set("imatrix.chunk_count", Value::U32(self.chunk_count));
        w.set("imatrix.chunk_size", Value::U32(self.chunk_size));
        for (name, e) in &self.entries {
            let sum: Vec<u8> = e.sum2.iter().flat_map(|v| v.to_le_bytes()).collect();
            w.add_tensor(
                format!("{name}.in_sum2"),
                vec![e.sum2.len() as u64, 1],
                GgmlType::F32,
                sum,
            )?;
            w.add_tensor(
                format!("{name}.counts"),
                vec![1, 1],
                GgmlType::F32,
                e.count.to_le_bytes().to_vec(),
            )?;
        }
        w.write_file(path)?;
        Ok(())
    }

    pub fn load(path: &Path) -> Result<Imatrix> {
        let bad = |why: String| CompressError::BadImatrix {
            path: path.to_path_buf(),
            why,
        };
        let g = GgufFile::open(path)?;
        if g.get_str("general.type").ok() != Some("imatrix") {
            return Err(bad(
                "general.type is not \"imatrix\" (only the GGUF imatrix format is read)".into(),
            ));
        }
        let f32s = |name: &str| -> Result<Vec<f32>> {
            let t = g
                .tensor(name)
                .ok_or_else(|| bad(format!("missing tensor {name}")))?;
            if t.ty != GgmlType::F32 {
                return Err(bad(format!("{name} is {}, expected F32", t.ty)));
            }
            Ok(g.tensor_data(t)
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        };
        let mut entries = BTreeMap::new();
        for t in g.tensors() {
            let Some(name) = t.name.strip_suffix(".in_sum2") else {
                continue;
            };
            let sum2 = f32s(&t.name)?;
            let counts = f32s(&format!("{name}.counts"))?;
            if counts.len() != 1 || t.n_rows() != 1 {
                return Err(bad(format!(
                    "{name}: per-expert data ({} matrices) is not supported",
                    counts.len()
                )));
            }
            if !counts[0].is_finite() || counts[0] <= 0.0 || sum2.iter().any(|v| !v.is_finite()) {
                return Err(bad(format!(
                    "{name}: counts or sums are not finite and positive"
                )));
            }
            entries.insert(
                name.to_string(),
                Entry {
                    sum2,
                    count: counts[0],
                },
            );
        }
        if entries.is_empty() {
            return Err(bad("no <name>.in_sum2 tensors".into()));
        }
        let datasets = g
            .get_str_array("imatrix.datasets")
            .map(|v| v.to_vec())
            .unwrap_or_default();
        let chunk_count = g.get_u32("imatrix.chunk_count").unwrap_or(0);
        let chunk_size = g.get_u32("imatrix.chunk_size").unwrap_or(0);
        Ok(Imatrix::new(entries, datasets, chunk_count, chunk_size))
    }

    /// Errors unless the matrix fits the model: some entries name its tensors, and every
    /// such entry has one value per column.
    pub fn check_against(&self, g: &GgufFile) -> Result<()> {
        let mut matched = 0;
        for (name, e) in &self.entries {
            if let Some(t) = g.tensor(name) {
                if t.row_len() != e.sum2.len() {
                    return Err(CompressError::Invalid(format!(
                        "importance matrix entry {name} has {} columns, the model's tensor {}",
                        e.sum2.len(),
                        t.row_len()
                    )));
                }
                matched += 1;
            }
        }
        if matched == 0 {
            return Err(CompressError::Invalid(
                "the importance matrix names none of the model's tensors (made for another model?)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Accumulates squared matmul inputs per weight during forward passes.
#[derive(Default)]
pub struct Collector {
    sums: Mutex<BTreeMap<String, (Vec<f64>, u64)>>,
}

impl MatmulObserver for Collector {
    fn observe(&self, weight: &str, x: &[f32], n: usize, cols: usize) {
        // Slices of a fused weight see the same input: strip the row range.
        let name = weight.split('[').next().unwrap_or(weight);
        let mut m = self.sums.lock().unwrap_or_else(|e| e.into_inner());
        let (s, c) = m
            .entry(name.to_string())
            .or_insert_with(|| (vec![0.0; cols], 0));
        if s.len() != cols {
            return;
        }
        for row in x[..n * cols].chunks_exact(cols) {
            for (a, &v) in s.iter_mut().zip(row) {
                *a += (v as f64) * (v as f64);
            }
        }
        *c += n as u64;
    }
}

impl Collector {
    pub fn into_entries(self) -> BTreeMap<String, Entry> {
        let m = self.sums.into_inner().unwrap_or_else(|e| e.into_inner());
        m.into_iter()
            .map(|(k, (s, c))| {
                (
                    k,
                    Entry {
                        sum2: s.into_iter().map(|v| v as f32).collect(),
                        count: c as f32,
                    },
                )
            })
            .collect()
    }
}

/// Runs `engine` over chunks of `n_ctx` tokens of `text` (as perplexity chunks them) and
/// collects the importance matrix. `progress(done, total)` after each chunk.
pub fn collect(
    engine: &Engine,
    text: &str,
    dataset: &Path,
    n_ctx: usize,
    max_chunks: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Imatrix> {
    let c = crate::calib::chunks(engine, text, n_ctx, max_chunks, "an importance matrix")?;
    let col = Collector::default();
    // Logits for the second half, as llama-imatrix computes them, so the output head's
    // statistics see as many rows.
    crate::calib::run_observed(engine, &c, n_ctx / 2, &col, progress)?;
    let n = c.chunks.len();
    Ok(Imatrix::new(
        col.into_entries(),
        vec![dataset.display().to_string()],
        n as u32,
        n_ctx as u32,
    ))
}
