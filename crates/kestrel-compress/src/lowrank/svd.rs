//! Singular value decomposition in f64, small and dependency-free.
//!
//! The SVD of an m x n matrix W is taken from the symmetric eigendecomposition of its Gram
//! matrix on the smaller side (W^T W or W W^T): Householder reduction to tridiagonal form,
//! then implicit QR steps with Wilkinson shifts. The other side's vectors are W v_j / s_j.
//! Squaring the matrix loses the relative accuracy of singular values far below
//! s_max * 1e-8, which does not matter for truncation (those components are dropped first) and
//! is why the full O(n^3) cost stays at a few seconds for the 1536 x 576 matrices here.

use crate::{CompressError, Result};

/// W = U diag(s) V^T with k = min(m, n) components, s sorted descending.
#[derive(Clone, Debug)]
pub struct Svd {
    pub m: usize,
    pub n: usize,
    /// m x k, row-major. A column whose singular value is negligible (below s_max * 1e-12)
    /// is zero.
    pub u: Vec<f64>,
    pub s: Vec<f64>,
    /// k x n, row-major (row j is v_j).
    pub vt: Vec<f64>,
}

impl Svd {
    pub fn k(&self) -> usize {
        self.s.len()
    }
}

/// Eigen-decomposition of the symmetric n x n matrix `a` (row-major; destroyed):
/// eigenvalues (unsorted) and eigenvectors as the rows of the returned n x n matrix.
pub fn sym_eigen(a: &mut [f64], n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let (mut d, mut e, mut zt) = tridiagonalize(a, n);
    tridiagonal_qr(&mut d, &mut e, &mut zt, n)?;
    Ok((d, zt))
}

/// Householder reduction A = Q T Q^T. Returns T's diagonal, its off-diagonal (n - 1 entries)
/// and Q^T (row j is Q's column j).
fn tridiagonalize(a: &mut [f64], n: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut qt = vec![0.0; n * n];
    for i in 0..n {
        qt[i * n + i] = 1.0;
    }
    let mut e = vec![0.0; n.saturating_sub(1)];
    let mut v = vec![0.0; n];
    let mut p = vec![0.0; n];
    let mut w = vec![0.0; n];
    for k in 0..n.saturating_sub(2) {
        let m = n - k - 1;
        let o = k + 1;
        // x = column k below the diagonal.
        let tail: f64 = (1..m).map(|i| a[(o + i) * n + k].powi(2)).sum();
        let x0 = a[o * n + k];
        if tail == 0.0 {
            e[k] = x0;
            continue;
        }
        let norm = (x0 * x0 + tail).sqrt();
        let alpha = if x0 > 0.0 { -norm } else { norm };
        for i in 0..m {
            v[i] = a[(o + i) * n + k];
        }
        v[0] -= alpha;
        let vv = v[0] * v[0] + tail;
        let beta = 2.0 / vv;
        // Trailing block S -= v q^T + q v^T with p = beta S v, q = p - (beta/2)(v.p) v.
        for i in 0..m {
            let row = &a[(o + i) * n + o..(o + i) * n + o + m];
            p[i] = beta * row.iter().zip(&v[..m]).map(|(x, y)| x * y).sum::<f64>();
        }
        let kk = 0.5 * beta * (0..m).map(|i| v[i] * p[i]).sum::<f64>();
        for i in 0..m {
            p[i] -= kk * v[i];
        }
        for i in 0..m {
            let (vi, qi) = (v[i], p[i]);
            let row = &mut a[(o + i) * n + o..(o + i) * n + o + m];
            for j in 0..m {
                row[j] -= vi * p[j] + qi * v[j];
            }
        }
        e[k] = alpha;
        // Q <- Q H, i.e. rows o.. of Q^T: Qt[o+i] -= beta v_i (v^T Qt[o..]).
        w.iter_mut().for_each(|x| *x = 0.0);
        for i in 0..m {
            let row = &qt[(o + i) * n..(o + i + 1) * n];
            for (wj, r) in w.iter_mut().zip(row) {
                *wj += v[i] * r;
            }
        }
        for i in 0..m {
            let f = beta * v[i];
            let row = &mut qt[(o + i) * n..(o + i + 1) * n];
            for (r, wj) in row.iter_mut().zip(&w) {
                *r -= f * wj;
            }
        }
    }
    if n >= 2 {
        e[n - 2] = a[(n - 1) * n + n - 2];
    }
    let d = (0..n).map(|i| a[i * n + i]).collect();
    (d, e, qt)
}

/// Diagonalizes the symmetric tridiagonal (d, e) by implicit QR steps with Wilkinson shifts
/// (Golub & Van Loan, 8.3), applying every rotation to the rows of `zt`.
fn tridiagonal_qr(d: &mut [f64], e: &mut [f64], zt: &mut [f64], n: usize) -> Result<()> {
    if n < 2 {
        return Ok(());
    }
    let max_steps = 60 * n;
    let mut steps = 0;
    let mut hi = n - 1;
    while hi > 0 {
        for i in 0..hi {
            if e[i].abs() <= f64::EPSILON * (d[i].abs() + d[i + 1].abs()) || e[i].abs() < 1e-300 {
                e[i] = 0.0;
            }
        }
        if e[hi - 1] == 0.0 {
            hi -= 1;
            continue;
        }
        let mut lo = hi - 1;
        while lo > 0 && e[lo - 1] != 0.0 {
            lo -= 1;
        }
        steps += 1;
        if steps > max_steps {
            return Err(CompressError::Invalid(
                "SVD: the eigenvalue iteration did not converge (non-finite weights?)".into(),
            ));
        }
        qr_step(d, e, zt, n, lo, hi);
    }
    Ok(())
}

fn qr_step(d: &mut [f64], e: &mut [f64], zt: &mut [f64], n: usize, lo: usize, hi: usize) {
    let b = e[hi - 1];
    let dd = 0.5 * (d[hi - 1] - d[hi]);
    let sgn = if dd >= 0.0 { 1.0 } else { -1.0 };
    let mu = d[hi] - b * b / (dd + sgn * dd.hypot(b));
    let mut x = d[lo] - mu;
    let mut z = e[lo];
    for k in lo..hi {
        let r = x.hypot(z);
        // G = [[c, s], [-s, c]] in the (k, k+1) plane, chosen to zero z.
        let (c, s) = if r == 0.0 {
            (1.0, 0.0)
        } else {
            (x / r, -z / r)
        };
        if k > lo {
            e[k - 1] = r;
        }
        let (a, bk, a1) = (d[k], e[k], d[k + 1]);
        d[k] = c * c * a - 2.0 * c * s * bk + s * s * a1;
        d[k + 1] = s * s * a + 2.0 * c * s * bk + c * c * a1;
        e[k] = c * s * (a - a1) + (c * c - s * s) * bk;
        if k + 1 < hi {
            z = -s * e[k + 1];
            e[k + 1] *= c;
        }
        x = e[k];
        let (rk, rk1) = zt.split_at_mut((k + 1) * n);
        let rk = &mut rk[k * n..];
        for (p, q) in rk.iter_mut().zip(rk1[..n].iter_mut()) {
            let (zp, zq) = (*p, *q);
            *p = c * zp - s * zq;
            *q = s * zp + c * zq;
        }
    }
}

/// SVD of the m x n row-major matrix `w`.
pub fn svd(w: &[f64], m: usize, n: usize) -> Result<Svd> {
    if w.len() != m * n || m == 0 || n == 0 {
        return Err(CompressError::Invalid(format!(
            "SVD of a {m} x {n} matrix given {} values",
            w.len()
        )));
    }
    if w.iter().any(|x| !x.is_finite()) {
        return Err(CompressError::Invalid(
            "SVD: matrix has non-finite values".into(),
        ));
    }
    let k = m.min(n);
    let wide = n > m;
    // Gram matrix on the smaller side: G = W^T W (n x n) or W W^T (m x m).
    let mut g = vec![0.0; k * k];
    if wide {
        for i in 0..m {
            let ri = &w[i * n..(i + 1) * n];
            for j in i..m {
                let rj = &w[j * n..(j + 1) * n];
                let s: f64 = ri.iter().zip(rj).map(|(a, b)| a * b).sum();
                g[i * k + j] = s;
                g[j * k + i] = s;
            }
        }
    } else {
        for r in 0..m {
            let row = &w[r * n..(r + 1) * n];
            for i in 0..n {
                let f = row[i];
                if f == 0.0 {
                    continue;
                }
                let gi = &mut g[i * k + i..(i + 1) * k];
                for (gj, x) in gi.iter_mut().zip(&row[i..]) {
                    *gj += f * x;
                }
            }
        }
        for i in 0..n {
            for j in 0..i {
                g[i * k + j] = g[j * k + i];
            }
        }
    }
    let (lam, vecs) = sym_eigen(&mut g, k)?;
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| lam[b].total_cmp(&lam[a]));
    let s: Vec<f64> = order.iter().map(|&j| lam[j].max(0.0).sqrt()).collect();
    let tiny = s[0] * 1e-12;
    // Known side: the sorted eigenvectors. Other side: W x / s (or zero).
    let known: Vec<f64> = order
        .iter()
        .flat_map(|&j| vecs[j * k..(j + 1) * k].iter().copied())
        .collect();
    let other_len = if wide { n } else { m };
    let mut other = vec![0.0; k * other_len]; // row j: the j-th other-side vector
    for j in 0..k {
        if s[j] <= tiny || s[j] == 0.0 {
            continue;
        }
        let x = &known[j * k..(j + 1) * k];
        let dst = &mut other[j * other_len..(j + 1) * other_len];
        if wide {
            // v_j = W^T u_j / s_j
            for i in 0..m {
                let f = x[i] / s[j];
                for (d, a) in dst.iter_mut().zip(&w[i * n..(i + 1) * n]) {
                    *d += f * a;
                }
            }
        } else {
            // u_j = W v_j / s_j
            for (i, d) in dst.iter_mut().enumerate() {
                let row = &w[i * n..(i + 1) * n];
                *d = row.iter().zip(x).map(|(a, b)| a * b).sum::<f64>() / s[j];
            }
        }
    }
    let (u_rows, vt) = if wide { (known, other) } else { (other, known) };
    // u_rows holds u_j as rows (k x m); store U as m x k.
    let mut u = vec![0.0; m * k];
    for j in 0..k {
        for i in 0..m {
            u[i * k + j] = u_rows[j * m + i];
        }
    }
    Ok(Svd { m, n, u, s, vt })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random values in [-1, 1).
    fn rand_mat(len: usize, seed: u64) -> Vec<f64> {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 11) as f64 / (1u64 << 52) as f64 - 1.0
            })
            .collect()
    }

    /// An orthogonal k x k matrix: a product of Householder reflections of random vectors.
    fn orthogonal(k: usize, seed: u64) -> Vec<f64> {
        let mut q = vec![0.0; k * k];
        for i in 0..k {
            q[i * k + i] = 1.0;
        }
        for r in 0..4 {
            let v = rand_mat(k, seed + r);
            let vv: f64 = v.iter().map(|x| x * x).sum();
            // q <- q (I - 2 v v^T / vv)
            for i in 0..k {
                let dot: f64 = (0..k).map(|j| q[i * k + j] * v[j]).sum();
                for j in 0..k {
                    q[i * k + j] -= 2.0 * dot * v[j] / vv;
                }
            }
        }
        q
    }

    fn reconstruct(d: &Svd) -> Vec<f64> {
        let (m, n, k) = (d.m, d.n, d.k());
        let mut a = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                a[i * n + j] = (0..k)
                    .map(|t| d.u[i * k + t] * d.s[t] * d.vt[t * n + j])
                    .sum();
            }
        }
        a
    }

    fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    fn check_orthonormal_rows(x: &[f64], rows: usize, len: usize, tol: f64) {
        for i in 0..rows {
            for j in 0..rows {
                let dot: f64 = (0..len).map(|t| x[i * len + t] * x[j * len + t]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < tol, "rows {i},{j}: {dot}");
            }
        }
    }

    /// A = U0 diag(s0) V0^T built from known orthogonal factors: the decomposition returns
    /// s0 (sorted), orthonormal U and V, and reconstructs A.
    #[test]
    fn recovers_a_known_decomposition() {
        for &(m, n) in &[(40usize, 25usize), (25, 40), (30, 30)] {
            let k = m.min(n);
            let (qm, qn) = (orthogonal(m, 7), orthogonal(n, 99));
            let s0: Vec<f64> = (0..k)
                .map(|i| 1.0 + 9.0 * (i as f64 * 0.37).sin().abs())
                .collect();
            let mut a = vec![0.0; m * n];
            for i in 0..m {
                for j in 0..n {
                    a[i * n + j] = (0..k).map(|t| qm[i * m + t] * s0[t] * qn[j * n + t]).sum();
                }
            }
            let d = svd(&a, m, n).unwrap();
            let mut want = s0.clone();
            want.sort_by(|x, y| y.total_cmp(x));
            assert!(max_abs_diff(&d.s, &want) < 1e-10, "{:?}", (m, n));
            assert!(d.s.windows(2).all(|w| w[0] >= w[1]));
            assert!(max_abs_diff(&reconstruct(&d), &a) < 1e-10);
            check_orthonormal_rows(&d.vt, k, n, 1e-10);
            let ut: Vec<f64> = (0..k * m).map(|x| d.u[(x % m) * k + x / m]).collect();
            check_orthonormal_rows(&ut, k, m, 1e-10);
        }
    }

    /// A random matrix the size of SmolLM2's FFN (scaled down) and a rank-deficient one.
    #[test]
    fn random_and_rank_deficient() {
        let (m, n) = (120, 48);
        let a = rand_mat(m * n, 3);
        let d = svd(&a, m, n).unwrap();
        assert!(max_abs_diff(&reconstruct(&d), &a) < 1e-10);
        // Rank 5: 5 non-negligible singular values, reconstruction still exact.
        let (l, r) = (rand_mat(m * 5, 4), rand_mat(5 * n, 5));
        let mut b = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                b[i * n + j] = (0..5).map(|t| l[i * 5 + t] * r[t * n + j]).sum();
            }
        }
        let d = svd(&b, m, n).unwrap();
        assert!(d.s[4] > 1e-3 && d.s[5] < 1e-6 * d.s[0], "{:?}", &d.s[..7]);
        assert!(max_abs_diff(&reconstruct(&d), &b) < 1e-10);
    }

    /// Eckart-Young: keeping the first r components leaves a squared Frobenius error equal
    /// to the dropped squared singular values (so values and vectors are paired correctly).
    #[test]
    fn truncation_error_is_the_dropped_energy() {
        for &(m, n) in &[(60usize, 30usize), (30, 60)] {
            let a = rand_mat(m * n, 11);
            let d = svd(&a, m, n).unwrap();
            let k = d.k();
            for r in [1, 7, k / 2] {
                let mut err = 0.0;
                for i in 0..m {
                    for j in 0..n {
                        let x: f64 = (0..r)
                            .map(|t| d.u[i * k + t] * d.s[t] * d.vt[t * n + j])
                            .sum();
                        err += (a[i * n + j] - x).powi(2);
                    }
                }
                let dropped: f64 = d.s[r..].iter().map(|x| x * x).sum();
                assert!(
                    (err - dropped).abs() < 1e-9 * dropped.max(1.0),
                    "{m}x{n} r={r}: {err} vs {dropped}"
                );
            }
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert!(svd(&[1.0, 2.0], 2, 2).is_err());
        assert!(svd(&[1.0, f64::NAN, 0.0, 1.0], 2, 2).is_err());
    }
}
