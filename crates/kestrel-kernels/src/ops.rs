//! f32 element-wise and row operations of the forward pass: norms, rotary embeddings, softmax,
//! activations. Written so the compiler vectorizes them; accumulations that ggml does in f64
//! are done in f64 here too, so results track llama.cpp.

use half::{f16, slice::HalfFloatSliceExt};

/// `out = x / rms(x) * w`, mean of squares accumulated in f64 as ggml does.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len();
    debug_assert!(w.len() == n && out.len() == n);
    let mut sum = 0.0f64;
    for &v in x {
        sum += (v * v) as f64;
    }
    let scale = 1.0 / ((sum / n as f64) as f32 + eps).sqrt();
    for i in 0..n {
        out[i] = x[i] * scale * w[i];
    }
}

/// In-place variant of [`rms_norm`].
pub fn rms_norm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    let n = x.len();
    let mut sum = 0.0f64;
    for &v in x.iter() {
        sum += (v * v) as f64;
    }
    let scale = 1.0 / ((sum / n as f64) as f32 + eps).sqrt();
    for i in 0..n {
        x[i] = x[i] * scale * w[i];
    }
}

/// log(sum(exp(x))), stable.
pub fn logsumexp(x: &[f32]) -> f32 {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return max;
    }
    let sum: f64 = x.iter().map(|&v| ((v - max) as f64).exp()).sum();
    max + sum.ln() as f32
}

/// GELU, tanh approximation (ggml_gelu).
#[inline]
pub fn gelu(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF_A: f32 = 0.044715;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + COEF_A * x * x)).tanh())
}

/// GELU at f16 precision, as llama.cpp evaluates it: the input rounded to f16 indexes a table
/// of f16 results (exact for |x| >= 10). Matching this, rather than computing GELU in f32, is
/// what keeps kestrel's logits on llama.cpp's; it is also cheaper than `tanh`.
#[inline]
pub fn gelu_f16(x: f32) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        gelu_table()[f16::from_f32(x).to_bits() as usize].to_f32()
    }
}

fn gelu_table() -> &'static [f16] {
    static T: std::sync::OnceLock<Vec<f16>> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        (0..=u16::MAX)
            .map(|b| f16::from_f32(gelu(f16::from_bits(b).to_f32())))
            .collect()
    })
}

/// `gate[i] = gelu(gate[i]) * up[i]` (GeGLU), GELU at f16 precision ([`gelu_f16`]).
pub fn geglu_inplace(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = gelu_f16(*g) * u;
    }
}

pub fn add_inplace(dst: &mut [f32], src: &[f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}

pub fn scale_inplace(dst: &mut [f32], s: f32) {
    for d in dst.iter_mut() {
        *d *= s;
    }
}

/// How rotary embedding pairs the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs (x[2i], x[2i+1]): llama.
    Normal,
    /// Halves (x[i], x[i + n_rot/2]): GPT-NeoX, gemma, qwen, phi3.
    Neox,
}

/// Fill `cs` with (cos, sin) of each rotated pair at position `pos`: `cs.len() == n_rot` laid out
/// as [cos0, sin0, cos1, sin1, ...]. theta follows ggml: start at `pos * freq_scale` and multiply by
/// base^(-2/n_rot) per pair (the same repeated product, so angles match llama.cpp's to the bit),
/// divided by an optional per-pair frequency factor (llama3 / phi3 rope factors).
pub fn rope_cache(
    pos: f32,
    n_rot: usize,
    base: f32,
    freq_scale: f32,
    factors: Option<&[f32]>,
    cs: &mut [f32],
) {
    let theta_scale = base.powf(-2.0 / n_rot as f32);
    let mut theta = pos;
    for i in 0..n_rot / 2 {
        let ff = factors.map_or(1.0, |f| f[i]);
        let t = freq_scale * theta / ff;
        cs[2 * i] = t.cos();
        cs[2 * i + 1] = t.sin();
        theta *= theta_scale;
    }
}

/// Rotate the first `n_rot` dims of one head vector in place using a [`rope_cache`] row.
pub fn rope_apply(x: &mut [f32], cs: &[f32], n_rot: usize, style: RopeStyle) {
    match style {
        RopeStyle::Normal => {
            for i in 0..n_rot / 2 {
                let (c, s) = (cs[2 * i], cs[2 * i + 1]);
                let (a, b) = (x[2 * i], x[2 * i + 1]);
                x[2 * i] = a.mul_add(c, -(b * s));
                x[2 * i + 1] = a.mul_add(s, b * c);
            }
        }
        RopeStyle::Neox => {
            let h = n_rot / 2;
            for i in 0..h {
                let (c, s) = (cs[2 * i], cs[2 * i + 1]);
                let (a, b) = (x[i], x[i + h]);
                x[i] = a.mul_add(c, -(b * s));
                x[i + h] = a.mul_add(s, b * c);
            }
        }
    }
}

/// `dst[i] = f16(src[i])` over the shorter of the two (half's slice conversion uses F16C when
/// the CPU has it, eight at a time; per-element `f16::from_f32` pays a feature check per call).
pub fn f32_to_f16_slice(src: &[f32], dst: &mut [f16]) {
    let n = src.len().min(dst.len());
    dst[..n].convert_from_f32_slice(&src[..n]);
}

/// `dst[i] = f32(src[i])` over the shorter of the two (exact).
pub fn f16_to_f32_slice(src: &[f16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    src[..n].convert_to_f32_slice(&mut dst[..n]);
}

/// Rounds every value to the nearest f16 and back (round to nearest even, as `f16::from_f32`).
pub fn round_to_f16(x: &mut [f32]) {
    let mut h = [f16::ZERO; 64];
    for c in x.chunks_mut(64) {
        let h = &mut h[..c.len()];
        h.convert_from_f32_slice(c);
        h.convert_to_f32_slice(c);
    }
}

/// Index of the largest value (first on ties), or 0 for an empty slice.
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_conversions_match_per_element_rounding() {
        // Normals, subnormals, halfway cases, overflow to infinity; lengths around the chunk.
        let mut x: Vec<f32> = (0..1000)
            .map(|i| {
                let m = 1.0 + (i as f32) * 0.000_977;
                m * 2f32.powi(i % 40 - 28) * if i % 3 == 0 { -1.0 } else { 1.0 }
            })
            .collect();
        x.extend([65520.0, 1e9, 5.96e-8, 2.98e-8, 0.0, -0.0]);
        let want: Vec<f32> = x.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
        let mut r = x.clone();
        round_to_f16(&mut r);
        assert_eq!(
            r.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        let mut h = vec![f16::ZERO; x.len()];
        f32_to_f16_slice(&x, &mut h);
        let mut back = vec![0.0f32; x.len() + 3];
        f16_to_f32_slice(&h, &mut back);
        assert_eq!(&back[..x.len()], &want[..]);
        assert_eq!(&back[x.len()..], &[0.0; 3]);
    }

    #[test]
    fn rms_norm_unit() {
        let x = [3.0f32, 4.0];
        let mut out = [0.0; 2];
        rms_norm(&x, &[1.0, 2.0], 0.0, &mut out);
        let r = (12.5f32).sqrt();
        assert!((out[0] - 3.0 / r).abs() < 1e-6 && (out[1] - 8.0 / r).abs() < 1e-6);
    }

    #[test]
    fn logsumexp_of_equal_values() {
        assert!((logsumexp(&[0.0, 0.0]) - 2f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn rope_rotation_preserves_norm_and_pos0_is_identity() {
        let mut cs = vec![0.0; 8];
        rope_cache(0.0, 8, 10000.0, 1.0, None, &mut cs);
        let mut x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let orig = x;
        rope_apply(&mut x, &cs, 8, RopeStyle::Neox);
        assert_eq!(x, orig);
        rope_cache(17.0, 8, 10000.0, 1.0, None, &mut cs);
        for style in [RopeStyle::Normal, RopeStyle::Neox] {
            let mut y = orig;
            rope_apply(&mut y, &cs, 8, style);
            let n0: f32 = orig.iter().map(|v| v * v).sum();
            let n1: f32 = y.iter().map(|v| v * v).sum();
            assert!((n0 - n1).abs() < 1e-3);
        }
        // First pair at pos 17 rotates by 17 radians.
        let mut y = orig;
        rope_apply(&mut y, &cs, 8, RopeStyle::Normal);
        assert!((y[0] - (1.0 * 17f32.cos() - 2.0 * 17f32.sin())).abs() < 1e-5);
    }

    #[test]
    fn activations() {
        assert!((gelu(1.0) - 0.841_192).abs() < 1e-5);
        assert!((gelu_f16(1.0) - gelu(1.0)).abs() < 1e-3);
        assert_eq!(gelu_f16(-11.0), 0.0);
        assert_eq!(gelu_f16(12.5), 12.5);
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
    }
}
