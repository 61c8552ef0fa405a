//! The one factorization GPTQ needs: the upper Cholesky factor U of the inverse of the
//! (damped) Hessian, H^-1 = U^T U, without forming H^-1.
//!
//! With P the reversal permutation, the lower Cholesky factor of P H P gives H = V V^T with
//! V = P L P upper triangular, so H^-1 = (V^-1)^T V^-1 and U = V^-1 = P L^-1 P. That is one
//! Cholesky and one triangular inverse (2n^3/3 flops) in f64, with every inner loop running
//! along contiguous rows.

/// Dot product with four partial sums (lets the compiler keep independent add chains).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (mut s0, mut s1, mut s2, mut s3) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i + 4 <= n {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
        i += 4;
    }
    while i < n {
        s0 += a[i] * b[i];
        i += 1;
    }
    (s0 + s1) + (s2 + s3)
}

/// In-place lower Cholesky of the symmetric positive definite `a` (n x n, row-major; only the
/// lower triangle is read). Returns false if a pivot is not positive.
fn cholesky_lower(a: &mut [f64], n: usize) -> bool {
    for j in 0..n {
        let (done, rest) = a.split_at_mut(j * n);
        let row_j = &mut rest[..n];
        // Row j left of the diagonal: L[j][k] for k < j.
        for k in 0..j {
            let row_k = &done[k * n..k * n + k + 1];
            let s = dot(&row_j[..k], &row_k[..k]);
            row_j[k] = (row_j[k] - s) / row_k[k];
        }
        let d = row_j[j] - dot(&row_j[..j], &row_j[..j]);
        if d <= 0.0 || !d.is_finite() {
            return false;
        }
        row_j[j] = d.sqrt();
        for v in &mut row_j[j + 1..] {
            *v = 0.0;
        }
    }
    true
}

/// Inverse of the lower triangular `l` (n x n), by rows: row i of X = L^-1 is
/// (e_i - sum_{k<i} L[i][k] X[k]) / L[i][i].
fn invert_lower(l: &[f64], n: usize) -> Vec<f64> {
    let mut x = vec![0.0f64; n * n];
    for i in 0..n {
        let (prev, rest) = x.split_at_mut(i * n);
        let xi = &mut rest[..n];
        for k in 0..i {
            let c = l[i * n + k];
            if c != 0.0 {
                for (v, p) in xi[..=k].iter_mut().zip(&prev[k * n..k * n + k + 1]) {
                    *v -= c * p;
                }
            }
        }
        xi[i] += 1.0;
        let inv = 1.0 / l[i * n + i];
        for v in &mut xi[..=i] {
            *v *= inv;
        }
    }
    x
}

/// U with U^T U = (H + damp * mean(diag H) * I)^-1, as f32 row-major (n x n, upper). Retries
/// with ten times the damping (up to 3 times) if H is not numerically positive definite.
/// `h` must be symmetric with a non-negative diagonal; returns None if it never factors.
pub fn inverse_cholesky_upper(h: &[f64], n: usize, damp: f64) -> Option<Vec<f32>> {
    let mean_diag = (0..n).map(|i| h[i * n + i]).sum::<f64>() / n.max(1) as f64;
    let mut lambda = damp * mean_diag.max(f64::MIN_POSITIVE);
    for _ in 0..4 {
        // P H P + lambda I, lower triangle.
        let mut a = vec![0.0f64; n * n];
        for i in 0..n {
            for j in 0..=i {
                a[i * n + j] = h[(n - 1 - i) * n + (n - 1 - j)];
            }
            a[i * n + i] += lambda;
        }
        if cholesky_lower(&mut a, n) {
            let x = invert_lower(&a, n);
            let mut u = vec![0.0f32; n * n];
            for i in 0..n {
                for j in i..n {
                    u[i * n + j] = x[(n - 1 - i) * n + (n - 1 - j)] as f32;
                }
            }
            return Some(u);
        }
        lambda *= 10.0;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_factor_of_the_inverse() {
        let n = 7;
        // H = B^T B + I for a fixed B: symmetric positive definite.
        let bm: Vec<f64> = (0..n * n).map(|i| ((i * 37 % 11) as f64) - 5.0).collect();
        let mut h = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                h[i * n + j] = (0..n).map(|k| bm[k * n + i] * bm[k * n + j]).sum::<f64>()
                    + if i == j { 1.0 } else { 0.0 };
            }
        }
        let u = inverse_cholesky_upper(&h, n, 0.0).unwrap();
        // (U^T U) H = I.
        for i in 0..n {
            for j in 0..n {
                let mut s = 0.0f64;
                for k in 0..n {
                    let hinv_ik: f64 = (0..n)
                        .map(|m| u[m * n + i] as f64 * u[m * n + k] as f64)
                        .sum();
                    s += hinv_ik * h[k * n + j];
                }
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((s - want).abs() < 1e-3, "({i},{j}): {s}");
            }
            for j in 0..i {
                assert_eq!(u[i * n + j], 0.0);
            }
        }
    }
}
