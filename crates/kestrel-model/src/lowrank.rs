//! Low-rank weight pairs written by `kestrel lowrank`: a weight W (out x in) stored as
//! `NAME.lr_a` (A, out x r; GGUF dims [r, out]) and `NAME.lr_b` (B, r x in; dims [in, r])
//! instead of `NAME`, run as y = A (B x): two matmuls through r values per row.

use crate::error::{ModelError, Result};
use crate::forward::Ctx;
use crate::weights::{Loader, Matrix};
use kestrel_kernels::{matmul, QMatrix};

/// Suffixes of the factors, appended to the original tensor name.
pub const SUFFIX_A: &str = ".lr_a";
pub const SUFFIX_B: &str = ".lr_b";

/// The pair (A, B) standing for the weight `name` (in x out as [`Loader::matrix`] takes it),
/// or None when the file has no `name.lr_a`. One factor without the other is an error.
pub(crate) fn load_pair(
    l: &Loader,
    name: &str,
    cols: usize,
    rows: usize,
) -> Result<Option<(Matrix, Matrix)>> {
    let (na, nb) = (format!("{name}{SUFFIX_A}"), format!("{name}{SUFFIX_B}"));
    let (ta, tb) = match (l.g.tensor(&na), l.g.tensor(&nb)) {
        (None, None) => return Ok(None),
        (Some(a), Some(b)) => (a, b),
        (Some(_), None) => return Err(ModelError::MissingTensor(nb)),
        (None, Some(_)) => return Err(ModelError::MissingTensor(na)),
    };
    // The rank is whatever A's row length says; both shapes are then checked in full.
    let r = match ta.dims.first() {
        Some(&r) if r > 0 && ta.dims.len() == 2 && (r as usize) <= cols.max(rows) => r as usize,
        _ => {
            return Err(ModelError::TensorShape {
                name: na,
                got: ta.dims.clone(),
                want: vec![cols.min(rows) as u64, rows as u64],
            })
        }
    };
    if tb.dims != [cols as u64, r as u64] {
        return Err(ModelError::TensorShape {
            name: nb,
            got: tb.dims.clone(),
            want: vec![cols as u64, r as u64],
        });
    }
    Ok(Some((l.matrix(&na, r, rows)?, l.matrix(&nb, cols, r)?)))
}

/// y = A (B x) for `n` rows of `x`.
pub(crate) fn matmul_pair(
    c: &Ctx,
    b: &QMatrix,
    a: &QMatrix,
    x: &[f32],
    n: usize,
    y: &mut [f32],
    q8: &mut Vec<u8>,
) {
    let r = b.rows;
    let mut mid = vec![0.0f32; n * r];
    matmul(c.pool, c.k, c.arith, b, &x[..n * b.cols], n, &mut mid, q8);
    matmul(c.pool, c.k, c.arith, a, &mid, n, &mut y[..n * a.rows], q8);
}
