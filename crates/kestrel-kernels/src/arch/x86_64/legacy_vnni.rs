//! AVX-512 VNNI panels for the signed legacy formats (Q4_0, Q5_0, Q8_0 weights with Q8_0
//! activations): a panel of weight rows times every activation column, in register tiles.
//!
//! Each output is bit-identical to the AVX2 `legacy::vec_dot_*` (llama.cpp's arithmetic): per
//! block, the exact integer sum of each 4-element group in its own i32 lane, converted to f32
//! and accumulated lane by lane with the block's scale product by FMA, the 8 lanes summed at
//! the end. Only the integer step differs: one `vpdpbusd` (u8 x i8, four products per lane)
//! instead of sign trick, `maddubs` and `madd`. The weights are made unsigned by an offset
//! (`w + o`), and the lane starts from `-o * sum(y)` of its four activations, so the lane's
//! integer is exactly `sum(w * y)`.
//!
//! Safety (every `panel_*`): AVX2, FMA, F16C, AVX-512 F/BW/VL and VNNI are present; `w` holds
//! `rows` rows of `n / 32` blocks, `wrb` bytes apart; `a` holds `cols` rows of Q8_0 blocks,
//! `arb` bytes apart; `y` has `(cols - 1) * ys + rows` writable floats no one else touches.

#![allow(clippy::missing_safety_doc)] // the module docs state the contract
#![allow(clippy::too_many_arguments)]
#![allow(clippy::needless_range_loop)] // indexed loops over const-sized tiles read clearest

use std::arch::x86_64::*;

use std::marker::PhantomData;

use super::hsum_f32x8;
use super::legacy::{bits_32, load32, nibbles_32};
use super::panel_walk::{walk, Panel, Tiles};
use crate::generic::legacy::{Q4_0_BYTES, Q5_0_BYTES, Q8_0_BYTES, QK};

/// Prompt tile.
const TR: usize = 4;
const TC: usize = 4;

/// One signed weight block format.
trait Fmt {
    /// Weight block bytes.
    const WB: usize;
    /// The offset `o` that makes the weights unsigned.
    const OFFSET: i8;
    /// The block's 32 weights plus `o`, as u8, in element order.
    unsafe fn unsigned(x: *const u8) -> __m256i;
}

struct Q40;
struct Q50;
struct Q80;

impl Fmt for Q40 {
    const WB: usize = Q4_0_BYTES;
    const OFFSET: i8 = 8;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unsigned(x: *const u8) -> __m256i {
        nibbles_32(x.add(2))
    }
}

impl Fmt for Q50 {
    const WB: usize = Q5_0_BYTES;
    const OFFSET: i8 = 16;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unsigned(x: *const u8) -> __m256i {
        let h = _mm256_and_si256(bits_32(x.add(2)), _mm256_set1_epi8(0x10));
        _mm256_or_si256(nibbles_32(x.add(6)), h)
    }
}

impl Fmt for Q80 {
    const WB: usize = Q8_0_BYTES;
    const OFFSET: i8 = -128; // 0x80: adding 128 to an i8 flips its top bit
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unsigned(x: *const u8) -> __m256i {
        _mm256_xor_si256(load32(x.add(2)), _mm256_set1_epi8(-128))
    }
}

/// The f16 at `p` as f32 in all eight lanes (exact; F16C).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_splat(p: *const u8) -> __m256 {
    let h = (p as *const u16).read_unaligned() as i32;
    _mm256_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(h)))
}

/// R x C outputs `y[c * ys + r]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile<F: Fmt, const R: usize, const C: usize>(
    nb: usize,
    w: *const u8,
    wrb: usize,
    a: *const u8,
    arb: usize,
    y: *mut f32,
    ys: usize,
) {
    let off = _mm256_set1_epi8(F::OFFSET);
    let mut acc = [[_mm256_setzero_ps(); C]; R];
    for i in 0..nb {
        let mut u = [_mm256_setzero_si256(); R];
        let mut dw = [_mm256_setzero_ps(); R];
        for r in 0..R {
            let x = w.add(r * wrb + i * F::WB);
            u[r] = F::unsigned(x);
            dw[r] = f16_splat(x);
        }
        for c in 0..C {
            let yb = a.add(c * arb + i * Q8_0_BYTES);
            let yq = load32(yb.add(2));
            let dy = f16_splat(yb);
            // -o * (sum of each lane's four activations).
            let start = _mm256_sub_epi32(
                _mm256_setzero_si256(),
                _mm256_dpbusd_epi32(_mm256_setzero_si256(), off, yq),
            );
            for r in 0..R {
                let q = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(start, u[r], yq));
                acc[r][c] = _mm256_fmadd_ps(_mm256_mul_ps(dw[r], dy), q, acc[r][c]);
            }
        }
    }
    for r in 0..R {
        for c in 0..C {
            y.add(c * ys + r).write(hsum_f32x8(acc[r][c]));
        }
    }
}

/// A panel of format `F`.
struct Legacy<F>(Panel, PhantomData<F>);

impl<F: Fmt> Tiles for Legacy<F> {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn tile<const R: usize, const C: usize>(&self, r: usize, c: usize) {
        let p = &self.0;
        let (w, a, y) = p.at(r, c);
        tile::<F, R, C>(p.nb, w, p.wrb, a, p.arb, y, p.ys)
    }

    fn decode_row_bytes(&self) -> Option<usize> {
        Some(self.0.wrb)
    }
}

macro_rules! panel_fn {
    ($name:ident, $fmt:ty) => {
        /// Every row of `w` times every column of `a` (see the module docs); the last
        /// argument (prompt columns) is unused: these formats have one arithmetic.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        pub unsafe fn $name(
            n: usize,
            w: &[u8],
            wrb: usize,
            rows: usize,
            a: &[u8],
            arb: usize,
            cols: usize,
            y: *mut f32,
            ys: usize,
            _prompt_cols: usize,
        ) {
            let nb = n / QK;
            debug_assert!(rows == 0 || w.len() >= (rows - 1) * wrb + nb * <$fmt>::WB);
            debug_assert!(cols == 0 || a.len() >= (cols - 1) * arb + nb * Q8_0_BYTES);
            let p = Panel::new(nb, w, wrb, a, arb, y, ys);
            walk::<Legacy<$fmt>, TR, TC>(&Legacy(p, PhantomData), rows, cols)
        }
    };
}

panel_fn!(panel_q4_0, Q40);
panel_fn!(panel_q5_0, Q50);
panel_fn!(panel_q8_0, Q80);
