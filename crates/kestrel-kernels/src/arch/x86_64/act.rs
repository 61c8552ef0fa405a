//! AVX2 twin of `generic::act`: the same operations per lane.

use std::arch::x86_64::*;

#[target_feature(enable = "avx2,fma")]
pub unsafe fn swiglu(gate: &mut [f32], up: &[f32]) {
    let n = gate.len().min(up.len());
    let (gp, up_p) = (gate.as_mut_ptr(), up.as_ptr());
    let one = _mm256_set1_ps(1.0);
    let mut i = 0;
    while i + 8 <= n {
        let x = _mm256_loadu_ps(gp.add(i));
        let e = super::attn::exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
        let s = _mm256_div_ps(x, _mm256_add_ps(one, e));
        _mm256_storeu_ps(gp.add(i), _mm256_mul_ps(s, _mm256_loadu_ps(up_p.add(i))));
        i += 8;
    }
    while i < n {
        gate[i] = gate[i] / (1.0 + (-gate[i]).exp()) * up[i];
        i += 1;
    }
}
