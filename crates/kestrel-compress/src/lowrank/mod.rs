//! Low-rank factorization of the block weight matrices.
//!
//! A weight W (out x in) is replaced by A (out x r) and B (r x in) with W ~ A B, from W's
//! truncated SVD: A = U_r diag(s_r), B = V_r^T. They are stored next to each other as
//! `NAME.lr_a` (GGUF dims [r, out]) and `NAME.lr_b` (dims [in, r]), where NAME is the
//! original tensor name (e.g. `blk.3.ffn_up.weight`), which is dropped; kestrel-model runs the
//! pair as two matmuls (x B^T, then A). `kestrel.lowrank` lists the factored tensors and
//! `kestrel.lowrank.ranks` their ranks. llama.cpp does not know these tensors.
//!
//! With an importance matrix the SVD is taken of W D, D = diag(sqrt(E[x_j^2])), so the error
//! is weighted by how large each input channel is on calibration text; B is unscaled
//! afterwards (B = V_r^T D^-1), so A B still approximates W itself.

pub mod svd;

use crate::imatrix::Imatrix;
use crate::io::{check_output, copy_tensor, finish_as, tensor_f32, writer_with_metadata};
use crate::prune::prunable;
use crate::quantize::quantize_rows;
use crate::{CompressError, Result};
use kestrel_gguf::{Array, GgmlType, GgufFile, TensorInfo, Value};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

/// Suffixes of the two factors, appended to the original tensor name (the engine's names).
pub use kestrel_model::lowrank::{SUFFIX_A, SUFFIX_B};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RankRule {
    /// At most this rank.
    Rank(usize),
    /// The smallest rank keeping this fraction (0, 1] of the (weighted) squared singular values.
    Energy(f64),
}

#[derive(Clone, Debug)]
pub struct LowrankOptions {
    pub rule: RankRule,
    /// Comma-separated globs (`*` = any text). One not starting with `blk.` is also matched
    /// against the name without its `blk.N.` prefix, so `ffn_*` means every block's FFN.
    /// None: every block matrix.
    pub tensors: Option<String>,
    /// Factor storage: F32, F16 or Q8_0 (Q8_0 rounds r up to a multiple of 32).
    pub ty: GgmlType,
    /// Factor even where r (out + in) >= out in (no saving); for checking exactness.
    pub always: bool,
    pub threads: usize,
}

#[derive(Clone, Debug)]
pub struct Factored {
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    pub rank: usize,
    /// Fraction of the (weighted) squared singular values kept.
    pub energy: f64,
}

#[derive(Clone, Debug, Default)]
pub struct LowrankReport {
    pub factored: Vec<Factored>,
    /// Selected tensors left as they were: (name, rank it would have needed).
    pub skipped: Vec<(String, usize)>,
    /// Weights of all tensors before and after.
    pub params_before: u64,
    pub params_after: u64,
}

/// Simple glob: `*` matches any run of characters.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

/// Does `name` match the `--tensors` pattern (see [`LowrankOptions::tensors`])?
pub fn matches(pattern: &str, name: &str) -> bool {
    let short = name
        .strip_prefix("blk.")
        .and_then(|r| r.split_once('.'))
        .map(|(_, rest)| rest);
    pattern.split(',').map(str::trim).any(|g| {
        glob(g.as_bytes(), name.as_bytes())
            || (!g.starts_with("blk.") && short.is_some_and(|s| glob(g.as_bytes(), s.as_bytes())))
    })
}

/// The factors of one matrix, ready to write; `None` when factoring saves nothing.
struct Pair {
    rank: usize,
    energy: f64,
    a: Vec<f32>,
    b: Vec<f32>,
}

/// The rank `rule` asks for, given singular values `s` (descending).
pub fn choose_rank(s: &[f64], rule: RankRule) -> usize {
    match rule {
        RankRule::Rank(r) => r.clamp(1, s.len()),
        RankRule::Energy(e) => {
            let total: f64 = s.iter().map(|x| x * x).sum();
            let mut acc = 0.0;
            for (i, x) in s.iter().enumerate() {
                acc += x * x;
                if acc >= e * total * (1.0 - 1e-12) {
                    return i + 1;
                }
            }
            s.len()
        }
    }
}

/// Factors the out x in row-major `w`; `weights` are E[x_j^2] per input column.
fn factor(
    w: &[f32],
    out: usize,
    inp: usize,
    weights: Option<&[f32]>,
    opts: &LowrankOptions,
) -> Result<(Option<Pair>, usize)> {
    // Column scales sqrt(E[x^2]), floored so that B = V^T D^-1 stays finite for dead inputs.
    let d: Option<Vec<f64>> = weights.map(|m| {
        let r: Vec<f64> = m.iter().map(|&x| (x.max(0.0) as f64).sqrt()).collect();
        let floor = r.iter().cloned().fold(0.0, f64::max) * 1e-4 + 1e-30;
        r.into_iter().map(|x| x.max(floor)).collect()
    });
    let mut wd: Vec<f64> = w.iter().map(|&x| x as f64).collect();
    if let Some(d) = &d {
        for row in wd.chunks_exact_mut(inp) {
            for (x, s) in row.iter_mut().zip(d) {
                *x *= s;
            }
        }
    }
    let dec = svd::svd(&wd, out, inp)?;
    let k = dec.k();
    let mut r = choose_rank(&dec.s, opts.rule);
    if opts.ty == GgmlType::Q8_0 {
        // A's rows have r elements: whole Q8_0 blocks.
        r = r.div_ceil(32) * 32;
        if r > k {
            r = k;
        }
        if r % 32 != 0 {
            return Err(CompressError::Invalid(format!(
                "rank {r} is not a multiple of 32, which Q8_0 factors need; use --type f16"
            )));
        }
    }
    if !opts.always && r * (out + inp) >= out * inp {
        return Ok((None, r));
    }
    let total: f64 = dec.s.iter().map(|x| x * x).sum();
    let kept: f64 = dec.s[..r].iter().map(|x| x * x).sum();
    let mut a = vec![0.0f32; out * r];
    for i in 0..out {
        for j in 0..r {
            a[i * r + j] = (dec.u[i * k + j] * dec.s[j]) as f32;
        }
    }
    let mut b = vec![0.0f32; r * inp];
    for j in 0..r {
        for c in 0..inp {
            let v = dec.vt[j * inp + c];
            b[j * inp + c] = match &d {
                Some(d) => (v / d[c]) as f32,
                None => v as f32,
            };
        }
    }
    let energy = if total > 0.0 { kept / total } else { 1.0 };
    Ok((
        Some(Pair {
            rank: r,
            energy,
            a,
            b,
        }),
        r,
    ))
}

/// Writes `output`: `input` with the selected block matrices replaced by factor pairs.
pub fn lowrank_file(
    input: &Path,
    output: &Path,
    opts: &LowrankOptions,
    imatrix: Option<&Imatrix>,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<LowrankReport> {
    match opts.rule {
        RankRule::Rank(0) => {
            return Err(CompressError::Invalid("--rank must be at least 1".into()))
        }
        RankRule::Energy(e) if !(e > 0.0 && e <= 1.0) => {
            return Err(CompressError::Invalid(format!(
                "--energy must be in (0, 1], got {e}"
            )))
        }
        _ => {}
    }
    if !matches!(opts.ty, GgmlType::F32 | GgmlType::F16 | GgmlType::Q8_0) {
        return Err(CompressError::Invalid(format!(
            "factor type {}: expected f32, f16 or q8_0",
            opts.ty
        )));
    }
    check_output(input, output)?;
    let g = GgufFile::open(input)?;
    if g.metadata().iter().any(|(k, _)| k == "kestrel.lowrank") {
        return Err(CompressError::Invalid(format!(
            "{} is already factored (kestrel.lowrank is set)",
            input.display()
        )));
    }
    let selected: Vec<&TensorInfo> = g
        .tensors()
        .iter()
        .filter(|t| prunable(t) && opts.tensors.as_deref().is_none_or(|p| matches(p, &t.name)))
        .collect();
    if selected.is_empty() {
        return Err(CompressError::Invalid(format!(
            "no block weight matrix matches --tensors {}",
            opts.tensors.as_deref().unwrap_or("(all)")
        )));
    }
    let weights_of = |t: &TensorInfo| -> Result<Option<Vec<f32>>> {
        let Some(im) = imatrix else { return Ok(None) };
        let v = im.get(&t.name).ok_or_else(|| {
            CompressError::Invalid(format!("the importance matrix has no entry for {}", t.name))
        })?;
        if v.len() != t.row_len() {
            return Err(CompressError::Tensor {
                tensor: t.name.clone(),
                why: format!(
                    "importance matrix has {} columns, tensor {}",
                    v.len(),
                    t.row_len()
                ),
            });
        }
        Ok(Some(v.to_vec()))
    };
    // Factor the selected matrices on `threads` workers; results come back in any order.
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, Result<(Option<Pair>, usize)>)>();
    let mut results: Vec<Option<(Option<Pair>, usize)>> =
        (0..selected.len()).map(|_| None).collect();
    let mut first_err: Option<CompressError> = None;
    std::thread::scope(|sc| {
        for _ in 0..opts.threads.max(1) {
            let tx = tx.clone();
            let (next, selected, g) = (&next, &selected, &g);
            let weights_of = &weights_of;
            sc.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(t) = selected.get(i) else { break };
                let r = (|| {
                    let w = tensor_f32(g, t)?;
                    let (inp, out) = (t.row_len(), w.len() / t.row_len().max(1));
                    factor(&w, out, inp, weights_of(t)?.as_deref(), opts)
                })();
                if tx.send((i, r)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut done = 0;
        for (i, r) in rx {
            done += 1;
            progress(done, selected.len(), &selected[i].name);
            match r {
                Ok(p) => results[i] = Some(p),
                Err(e) => {
                    // Stop handing out work; keep the first error.
                    next.store(usize::MAX / 2, Ordering::Relaxed);
                    first_err.get_or_insert(e);
                }
            }
        }
    });
    if let Some(e) = first_err {
        return Err(e);
    }
    let mut rep = LowrankReport::default();
    let mut w = writer_with_metadata(&g);
    let mut by_name: std::collections::HashMap<&str, (Option<Pair>, usize)> = selected
        .iter()
        .zip(results)
        .map(|(t, r)| {
            (
                t.name.as_str(),
                r.expect("every selected tensor has a result"),
            )
        })
        .collect();
    for t in g.tensors() {
        let n = t.n_elements();
        rep.params_before += n;
        match by_name.remove(t.name.as_str()) {
            Some((Some(p), _)) => {
                let (inp, out) = (t.row_len(), (n as usize) / t.row_len());
                let a = quantize_rows(opts.ty, &p.a, p.rank, None, 1)?;
                let b = quantize_rows(opts.ty, &p.b, inp, None, 1)?;
                w.add_tensor(
                    format!("{}{SUFFIX_A}", t.name),
                    vec![p.rank as u64, out as u64],
                    opts.ty,
                    a,
                )?;
                w.add_tensor(
                    format!("{}{SUFFIX_B}", t.name),
                    vec![inp as u64, p.rank as u64],
                    opts.ty,
                    b,
                )?;
                rep.params_after += (p.rank * (out + inp)) as u64;
                rep.factored.push(Factored {
                    name: t.name.clone(),
                    rows: out,
                    cols: inp,
                    rank: p.rank,
                    energy: p.energy,
                });
            }
            other => {
                if let Some((None, r)) = other {
                    rep.skipped.push((t.name.clone(), r));
                }
                rep.params_after += n;
                copy_tensor(&mut w, &g, t)?;
            }
        }
    }
    if rep.factored.is_empty() {
        return Err(CompressError::Invalid(format!(
            "no matrix would get smaller at this rank ({} selected; the rank must be below \
             out*in/(out+in)); nothing written",
            rep.skipped.len()
        )));
    }
    w.set(
        "kestrel.lowrank",
        Value::Array(Array::String(
            rep.factored.iter().map(|f| f.name.clone()).collect(),
        )),
    );
    w.set(
        "kestrel.lowrank.ranks",
        Value::Array(Array::U32(
            rep.factored.iter().map(|f| f.rank as u32).collect(),
        )),
    );
    finish_as(w, &g, output)?;
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_patterns() {
        assert!(matches("ffn_*", "blk.3.ffn_up.weight"));
        assert!(!matches("ffn_*", "blk.3.attn_q.weight"));
        assert!(matches("attn_q*,ffn_down*", "blk.12.ffn_down.weight"));
        assert!(matches("blk.0.*", "blk.0.attn_k.weight"));
        assert!(!matches("blk.0.*", "blk.10.attn_k.weight"));
        assert!(!matches("ffn_*", "token_embd.weight"));
    }

    #[test]
    fn rank_rules() {
        let s = [4.0, 2.0, 1.0, 1.0]; // energies 16, 4, 1, 1 of 22
        assert_eq!(choose_rank(&s, RankRule::Energy(0.7)), 1);
        assert_eq!(choose_rank(&s, RankRule::Energy(0.9)), 2);
        assert_eq!(choose_rank(&s, RankRule::Energy(1.0)), 4);
        assert_eq!(choose_rank(&s, RankRule::Rank(9)), 4);
    }

    /// With an importance matrix, A B still approximates W (not W D), and at full rank
    /// reproduces it.
    #[test]
    fn weighted_factors_unscale() {
        let (out, inp) = (24, 16);
        let w: Vec<f32> = (0..out * inp)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let imp: Vec<f32> = (0..inp).map(|j| 0.01 + j as f32).collect();
        let opts = LowrankOptions {
            rule: RankRule::Rank(inp),
            tensors: None,
            ty: GgmlType::F32,
            always: true,
            threads: 1,
        };
        let (p, r) = factor(&w, out, inp, Some(&imp), &opts).unwrap();
        let p = p.unwrap();
        assert_eq!(r, inp);
        for i in 0..out {
            for j in 0..inp {
                let ab: f32 = (0..r).map(|t| p.a[i * r + t] * p.b[t * inp + j]).sum();
                assert!((ab - w[i * inp + j]).abs() < 1e-4, "{i},{j}: {ab}");
            }
        }
        // Rank 8 without --always: 8 * 40 < 384, factored; rank 10: 400 >= 384, skipped.
        let o8 = LowrankOptions {
            rule: RankRule::Rank(8),
            always: false,
            ..opts.clone()
        };
        assert!(factor(&w, out, inp, None, &o8).unwrap().0.is_some());
        let o10 = LowrankOptions {
            rule: RankRule::Rank(10),
            always: false,
            ..opts
        };
        assert!(factor(&w, out, inp, None, &o10).unwrap().0.is_none());
    }
}
