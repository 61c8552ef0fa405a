//! Gated activations as llama.cpp's CPU backend computes them: SiLU through the same exp
//! approximation as its softmax for full vectors of 8 and libm's exp for the remainder.
//! Scalar twin of `arch::x86_64::act`.

use super::attn::exp_approx;

/// `gate[i] = silu(gate[i]) * up[i]`, silu(x) = x / (1 + e^-x).
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    let n = gate.len().min(up.len());
    let full = n / 8 * 8;
    for i in 0..full {
        gate[i] = gate[i] / (1.0 + exp_approx(0.0 - gate[i])) * up[i];
    }
    for i in full..n {
        gate[i] = gate[i] / (1.0 + (-gate[i]).exp()) * up[i];
    }
}
