//! Quantize -> dequantize round trips on synthetic weights: the error of every type stays
//! under a bound set from the format's resolution, and the importance-weighted quantizers
//! lower the error they are asked to lower. Dequantization is `kestrel-kernels`' (checked
//! against llama.cpp elsewhere), so these also pin the block layouts the quantizers write.

use kestrel_compress::quantize::quantize_rows;
use kestrel_gguf::GgmlType;

const COLS: usize = 512;
const ROWS: usize = 64;

/// Deterministic weights: a sum of uniforms (close to Gaussian), a per-column scale spread,
/// and a few outliers, like trained weight rows.
fn weights() -> Vec<f32> {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut u = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let mut x = Vec::with_capacity(ROWS * COLS);
    for _ in 0..ROWS {
        for c in 0..COLS {
            let g = (0..4).map(|_| u()).sum::<f32>();
            let scale = 0.02 * (1.0 + (c % 7) as f32 / 7.0);
            let outlier = if u() > 0.498 { 6.0 } else { 1.0 };
            x.push(g * scale * outlier);
        }
    }
    x
}

fn importances() -> Vec<f32> {
    // Column importances spanning three orders of magnitude, as activation statistics do.
    (0..COLS)
        .map(|c| 10f32.powf(((c * 37) % 101) as f32 / 101.0 * 3.0 - 1.5))
        .collect()
}

fn dequant(ty: GgmlType, q: &[u8]) -> Vec<f32> {
    let rb = ty.row_bytes(COLS).unwrap();
    let mut out = vec![0.0f32; ROWS * COLS];
    for (src, dst) in q.chunks_exact(rb).zip(out.chunks_exact_mut(COLS)) {
        kestrel_kernels::dequantize_row(ty, src, dst);
    }
    out
}

/// sqrt(sum w (x - y)^2 / sum w x^2), with w per column.
fn rel_err(x: &[f32], y: &[f32], w: Option<&[f32]>) -> f64 {
    let (mut e, mut n) = (0.0f64, 0.0f64);
    for (i, (&a, &b)) in x.iter().zip(y).enumerate() {
        let wi = w.map_or(1.0, |w| w[i % COLS]) as f64;
        e += wi * ((a - b) as f64).powi(2);
        n += wi * (a as f64).powi(2);
    }
    (e / n).sqrt()
}

/// (type, bound on the relative RMS error), bounds ~15% above the errors measured when the
/// test was written (these weights have heavy outliers, so errors exceed the textbook
/// 2^-bits figures). The k-quant ladder must also be ordered: each bit about halves the error.
const BOUNDS: [(GgmlType, f64); 10] = [
    (GgmlType::Q8_0, 0.0075),
    (GgmlType::Q6_K, 0.024),
    (GgmlType::Q5_1, 0.047),
    (GgmlType::Q5_0, 0.058),
    (GgmlType::Q5_K, 0.045),
    (GgmlType::Q4_1, 0.096),
    (GgmlType::Q4_0, 0.115),
    (GgmlType::Q4_K, 0.090),
    (GgmlType::Q3_K, 0.190),
    (GgmlType::Q2_K, 0.360),
];

#[test]
fn round_trip_error_per_type() {
    let x = weights();
    let mut report = Vec::new();
    let mut errs = std::collections::HashMap::new();
    for (ty, bound) in BOUNDS {
        let q = quantize_rows(ty, &x, COLS, None, 2).unwrap();
        assert_eq!(q.len(), ROWS * ty.row_bytes(COLS).unwrap());
        let e = rel_err(&x, &dequant(ty, &q), None);
        report.push(format!("{ty}: {e:.4} (bound {bound})"));
        assert!(e < bound, "{ty}: relative error {e:.4} >= {bound}");
        errs.insert(ty, e);
    }
    eprintln!("{}", report.join("\n"));
    use GgmlType::*;
    for pair in [Q8_0, Q6_K, Q5_K, Q4_K, Q3_K, Q2_K].windows(2) {
        assert!(errs[&pair[0]] < 0.65 * errs[&pair[1]], "{pair:?}: {errs:?}");
    }
}

#[test]
fn importance_weighting_lowers_the_weighted_error() {
    let x = weights();
    let w = importances();
    let mut report = Vec::new();
    for (ty, bound) in BOUNDS {
        if ty == GgmlType::Q8_0 {
            continue; // Q8_0 ignores importances, as in llama.cpp.
        }
        let rtn = dequant(ty, &quantize_rows(ty, &x, COLS, None, 2).unwrap());
        let wq = dequant(ty, &quantize_rows(ty, &x, COLS, Some(&w), 2).unwrap());
        let (e_rtn, e_w) = (rel_err(&x, &rtn, Some(&w)), rel_err(&x, &wq, Some(&w)));
        report.push(format!(
            "{ty}: weighted error rtn {e_rtn:.4}, imatrix {e_w:.4}"
        ));
        assert!(
            e_w < 0.97 * e_rtn,
            "{ty}: importance-weighted error {e_w:.4} is not below round-to-nearest's {e_rtn:.4}"
        );
        // The plain error stays in the format's range (the layout is right).
        let plain = rel_err(&x, &wq, None);
        assert!(plain < 1.5 * bound, "{ty}: unweighted error {plain:.4}");
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn bad_shapes_are_errors() {
    let x = vec![0.5f32; 300];
    assert!(quantize_rows(GgmlType::Q4_K, &x, 300, None, 1).is_err());
    assert!(quantize_rows(GgmlType::Q4_0, &x[..288], 96, Some(&[1.0; 32]), 1).is_err());
    // All-zero rows quantize to zeros.
    let z = vec![0.0f32; 256];
    for (ty, _) in BOUNDS {
        let q = quantize_rows(ty, &z, 256, Some(&[1.0; 256]), 1).unwrap();
        let mut y = vec![1.0f32; 256];
        kestrel_kernels::dequantize_row(ty, &q, &mut y);
        assert!(y.iter().all(|&v| v == 0.0), "{ty}");
    }
}
