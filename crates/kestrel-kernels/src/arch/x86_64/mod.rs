//! x86-64 kernels (AVX2 + FMA + F16C). All `unsafe`: call only where those features were
//! detected, with slices at least as long as the named row sizes.

#![allow(clippy::missing_safety_doc)] // the module docs state the contract

use std::arch::x86_64::*;

pub mod act;
pub mod attn;
mod kq_ops;
pub mod kq_panel;
pub mod kq_x16;
pub mod kq_x8;
pub mod kquants;
pub mod legacy;
pub mod legacy_tile;
pub mod legacy_vnni;
pub mod legacy_x16;
pub mod legacy_x8;
mod panel_walk;

/// Horizontal sum of 8 f32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn hsum_f32x8(x: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_extractf128_ps::<1>(x), _mm256_castps256_ps128(x));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Horizontal sum of 8 i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn hsum_i32x8(x: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_extracti128_si256::<1>(x), _mm256_castsi256_si128(x));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01>(s));
    _mm_cvtsi128_si32(s)
}

#[inline(always)]
fn f32_at(b: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
}

/// Shared loop of the float dots: `load(i)` gives weights i..i+8 as f32.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn float_dot(
    n: usize,
    a: &[u8],
    load: impl Fn(usize) -> __m256,
    tail: impl Fn(usize) -> f32,
) -> f32 {
    let ap = a.as_ptr() as *const f32;
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            let j = i + 8 * k;
            *acc = _mm256_fmadd_ps(load(j), _mm256_loadu_ps(ap.add(j)), *acc);
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(load(i), _mm256_loadu_ps(ap.add(i)), acc[0]);
        i += 8;
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut sum = hsum_f32x8(s);
    while i < n {
        sum += tail(i) * f32_at(a, i);
        i += 1;
    }
    sum
}

/// F32 weights · F32 activations. `w`, `a`: at least `4 n` bytes.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn vec_dot_f32(n: usize, w: &[u8], a: &[u8]) -> f32 {
    debug_assert!(w.len() >= 4 * n && a.len() >= 4 * n);
    let wp = w.as_ptr() as *const f32;
    float_dot(n, a, |i| _mm256_loadu_ps(wp.add(i)), |i| f32_at(w, i))
}

/// F16 weights · F32 activations. `w`: at least `2 n` bytes, `a`: `4 n`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_f16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    debug_assert!(w.len() >= 2 * n && a.len() >= 4 * n);
    let wp = w.as_ptr();
    float_dot(
        n,
        a,
        |i| _mm256_cvtph_ps(_mm_loadu_si128(wp.add(2 * i) as *const __m128i)),
        |i| half::f16::from_bits(u16::from_le_bytes([w[2 * i], w[2 * i + 1]])).to_f32(),
    )
}

/// BF16 weights · F32 activations. `w`: at least `2 n` bytes, `a`: `4 n`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn vec_dot_bf16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    debug_assert!(w.len() >= 2 * n && a.len() >= 4 * n);
    let wp = w.as_ptr();
    float_dot(
        n,
        a,
        |i| {
            let h = _mm_loadu_si128(wp.add(2 * i) as *const __m128i);
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
        },
        |i| f32::from_bits((u16::from_le_bytes([w[2 * i], w[2 * i + 1]]) as u32) << 16),
    )
}

/// Puts the AVX2 k-quant kernels (from `kquants`, and `kq_panel` for Q4_K / Q6_K) into the
/// dispatch table; types without one keep their scalar entry.
pub(crate) fn kquants_wire(vd: &mut [Option<crate::dispatch::VecDotFn>]) {
    use crate::dispatch::VecDotFn;
    use kestrel_gguf::GgmlType::*;
    vd[Q2_K as usize] = Some(kquants::vec_dot_q2_k as VecDotFn);
    vd[Q3_K as usize] = Some(kquants::vec_dot_q3_k as VecDotFn);
    vd[Q4_K as usize] = Some(kq_panel::avx2::vec_dot_q4_k as VecDotFn);
    vd[Q5_K as usize] = Some(kquants::vec_dot_q5_k as VecDotFn);
    vd[Q6_K as usize] = Some(kq_panel::avx2::vec_dot_q6_k as VecDotFn);
}

/// The panel kernels of one instruction set (see `kq_panel`) into `vd` and `p`.
macro_rules! wire_panels {
    ($m:ident, $vd:expr, $p:expr) => {{
        use crate::dispatch::{PanelFn, VecDotFn};
        use kestrel_gguf::GgmlType::*;
        $vd[Q4_K as usize] = Some(kq_panel::$m::vec_dot_q4_k as VecDotFn);
        $vd[Q6_K as usize] = Some(kq_panel::$m::vec_dot_q6_k as VecDotFn);
        $p[Q4_K as usize] = Some(kq_panel::$m::panel_q4_k as PanelFn);
        $p[Q6_K as usize] = Some(kq_panel::$m::panel_q6_k as PanelFn);
    }};
}

/// AVX2 panels. Only for a table whose CPU has AVX2, FMA and F16C.
pub(crate) fn panel_wire_avx2(
    vd: &mut [Option<crate::dispatch::VecDotFn>],
    p: &mut [Option<crate::dispatch::PanelFn>],
) {
    wire_panels!(avx2, vd, p);
}

/// AVX-512 VNNI panels. Only for a table whose CPU has AVX-512 F/BW/VL and VNNI too.
pub(crate) fn panel_wire_avx512(
    vd: &mut [Option<crate::dispatch::VecDotFn>],
    p: &mut [Option<crate::dispatch::PanelFn>],
) {
    wire_panels!(avx512, vd, p);
    use crate::dispatch::PanelFn;
    use kestrel_gguf::GgmlType::*;
    p[Q4_0 as usize] = Some(legacy_vnni::panel_q4_0 as PanelFn);
    p[Q5_0 as usize] = Some(legacy_vnni::panel_q5_0 as PanelFn);
    p[Q8_0 as usize] = Some(legacy_vnni::panel_q8_0 as PanelFn);
}

/// AVX-VNNI panels. Only for a table whose CPU has AVX-VNNI too.
pub(crate) fn panel_wire_avxvnni(
    vd: &mut [Option<crate::dispatch::VecDotFn>],
    p: &mut [Option<crate::dispatch::PanelFn>],
) {
    wire_panels!(avxvnni, vd, p);
}

/// Tile kernels for prompt batches (see `legacy_tile`).
pub(crate) fn tile_wire(t: &mut [Option<crate::dispatch::TileFn>]) {
    use crate::dispatch::TileFn;
    use kestrel_gguf::GgmlType::*;
    t[Q4_0 as usize] = Some(legacy_tile::tile_q4_0 as TileFn);
    t[Q4_1 as usize] = Some(legacy_tile::tile_q4_1 as TileFn);
    t[Q5_0 as usize] = Some(legacy_tile::tile_q5_0 as TileFn);
    t[Q5_1 as usize] = Some(legacy_tile::tile_q5_1 as TileFn);
    t[Q8_0 as usize] = Some(legacy_tile::tile_q8_0 as TileFn);
}
