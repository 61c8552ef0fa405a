//! Run-time kernel selection: a table of dot-product (and activation-quantization) functions
//! per type, built once for the best instruction set this CPU has.
//!
//! Soundness: the SIMD functions are `unsafe` (`#[target_feature]`); pointers to them are
//! stored only in a table that is constructed after the features were detected, and the table
//! is private. Every public entry point checks lengths before calling through it.

use std::sync::OnceLock;

use crate::generic::attn::Lanes;
use crate::generic::{float, legacy as gl};
use crate::{vec_dot_type, GgmlType};

/// `(n, weights, activations) -> dot`. Callers guarantee the CPU supports the function's
/// features and that `w`/`a` hold at least a row of `n` elements of their formats.
pub(crate) type VecDotFn = unsafe fn(usize, &[u8], &[u8]) -> f32;
/// `(src, dst)` activation quantizer; `dst.len() == row_bytes(src.len())`.
pub(crate) type QuantFn = unsafe fn(&[f32], &mut [u8]);
/// Attention over the f16 KV cache (see `generic::attn`).
pub(crate) type AttnDotFn = unsafe fn(Lanes, &[half::f16], &[half::f16]) -> f32;
pub(crate) type AttnDotRowsFn = unsafe fn(Lanes, &[half::f16], &[half::f16], &mut [f32]);
pub(crate) type AttnMixFn = unsafe fn(Lanes, &mut [f32], &[f32], &[half::f16], usize, &mut [f32]);
/// `(n, w, row stride, a, column stride, out)`: the dot products of `TILE_R` weight rows with
/// `TILE_C` activation columns, `out[c * TILE_R + r]`, each bit-identical to the batch dot
/// product (`vec_dot_gemm`, which is `vec_dot` except for Q4_K).
pub(crate) type TileFn = unsafe fn(usize, &[u8], usize, &[u8], usize, &mut [f32; TILE_R * TILE_C]);
/// From this many tokens on, llama.cpp runs Q2_K-Q6_K weights that it has not repacked
/// through its tiled K-quant matmul, which rounds differently from the single-row dot.
pub const KQ_TILED_MIN_BATCH: usize = 8;

/// How many of a batch's activation columns llama.cpp computes with its batch kernels, whose
/// arithmetic [`Kernels::vec_dot_batch`] reproduces; the rest take [`Kernels::vec_dot`].
/// Q4_K: its repacked GEMM takes all but the last `batch % 4` columns once there are 4+.
/// Q6_K: its tiled matmul takes every column once there are [`KQ_TILED_MIN_BATCH`]+.
/// (Q2_K, Q3_K and Q5_K batches also go through the tiled matmul in llama.cpp; kestrel keeps
/// the single-row order for them, so their last bits can differ.)
pub fn gemm_cols(ty: GgmlType, batch: usize) -> usize {
    match ty {
        GgmlType::Q4_K if batch > 3 => batch - batch % 4,
        GgmlType::Q6_K if batch >= KQ_TILED_MIN_BATCH => batch,
        _ => 0,
    }
}

/// Weight rows and activation columns of one tile.
pub const TILE_R: usize = 2;
pub const TILE_C: usize = 4;
pub(crate) type SoftmaxFn = unsafe fn(&mut [f32], usize);
pub(crate) type GluFn = unsafe fn(&mut [f32], &[f32]);

const N_IDS: usize = 31; // GgmlType ids go up to 30 (BF16)

pub struct Kernels {
    isa: &'static str,
    vec_dot: [Option<VecDotFn>; N_IDS],
    /// For rows of a batch of 4+ that llama.cpp computes with its repacked GEMM: the same
    /// dot product with that kernel's float arithmetic (differs from `vec_dot` for Q4_K only).
    vec_dot_gemm: [Option<VecDotFn>; N_IDS],
    quant: [Option<QuantFn>; N_IDS],
    /// Multi-row, multi-column kernels for prompt batches, where a type has one.
    tile: [Option<TileFn>; N_IDS],
    attn_dot: AttnDotFn,
    attn_dot_rows: AttnDotRowsFn,
    attn_mix: AttnMixFn,
    softmax: SoftmaxFn,
    swiglu: GluFn,
}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernels").field("isa", &self.isa).finish()
    }
}

impl Kernels {
    /// The instruction set the table was built for: "avx2" or "scalar".
    pub fn isa(&self) -> &'static str {
        self.isa
    }

    /// Dot product of a weight row `w` of type `ty` (`n` elements) with activations `a` in
    /// `vec_dot_type(ty)`. Panics if `n` is not a whole number of blocks, a slice is too short,
    /// or `ty` is an activation-only type (Q8_1, Q8_K).
    #[inline]
    pub fn vec_dot(&self, ty: GgmlType, n: usize, w: &[u8], a: &[u8]) -> f32 {
        let f = self.vec_dot_fn(ty);
        check_lens(ty, n, w.len(), a.len(), 1);
        // SAFETY: the table only holds functions this CPU supports; lengths checked above.
        unsafe { f(n, w, a) }
    }

    /// Quantize activations `src` into `dst` in format `ty` (Q8_0, Q8_1, Q8_K, F32) the way
    /// llama.cpp does at inference time (for Q8_0/Q8_1 that differs from the reference weight
    /// quantizer [`crate::quantize_row`] in the last bit of the inverse scale and in rounding
    /// ties); SIMD and scalar tables give the same bytes.
    pub fn quantize_row(&self, ty: GgmlType, src: &[f32], dst: &mut [u8]) {
        crate::check_quant_lens(ty, src.len(), dst.len());
        match self.quant[ty as usize] {
            // SAFETY: supported by this CPU; sizes checked above.
            Some(f) => unsafe { f(src, dst) },
            None => crate::quantize_row(ty, src, dst),
        }
    }

    /// `q · k` for f16 vectors, partial sums kept in `lanes` (see `generic::attn`).
    #[inline]
    pub fn dot_f16(&self, lanes: Lanes, q: &[half::f16], k: &[half::f16]) -> f32 {
        assert_eq!(q.len(), k.len(), "dot_f16: lengths differ");
        // SAFETY: supported by this CPU; lengths equal.
        unsafe { (self.attn_dot)(lanes, q, k) }
    }

    /// `out[j] = q · rows[j]` ([`Kernels::dot_f16`]) for the first `out.len()` rows of
    /// `q.len()` values in `rows`.
    #[inline]
    pub fn dot_f16_rows(&self, lanes: Lanes, q: &[half::f16], rows: &[half::f16], out: &mut [f32]) {
        assert!(
            !q.is_empty() && rows.len() >= out.len() * q.len(),
            "dot_f16_rows: too few rows"
        );
        // SAFETY: supported by this CPU; lengths checked.
        unsafe { (self.attn_dot_rows)(lanes, q, rows, out) }
    }

    /// `gate[i] = silu(gate[i]) * up[i]` as llama.cpp computes it (see `generic::act`).
    #[inline]
    pub fn swiglu(&self, gate: &mut [f32], up: &[f32]) {
        assert!(up.len() >= gate.len(), "swiglu: up is shorter than gate");
        // SAFETY: supported by this CPU; lengths checked.
        unsafe { (self.swiglu)(gate, up) }
    }

    /// Softmax of attention scores for KV cells `cell0..cell0 + s.len()`, in place, computed
    /// as llama.cpp's CPU softmax does (see `generic::attn::softmax_cells`).
    #[inline]
    pub fn softmax_cells(&self, s: &mut [f32], cell0: usize) {
        // SAFETY: supported by this CPU; any length is valid.
        unsafe { (self.softmax)(s, cell0) }
    }

    /// `out[d] = sum_j p[j] * v[j][d]`, row `j`'s partial sums in lane `(pos0 + j) % lanes`;
    /// `v` holds at least `p.len()` rows of `out.len()` values, `acc` at least
    /// `lanes * out.len()` floats of scratch.
    #[inline]
    pub fn mix_f16(
        &self,
        lanes: Lanes,
        out: &mut [f32],
        p: &[f32],
        v: &[half::f16],
        pos0: usize,
        acc: &mut [f32],
    ) {
        assert!(
            v.len() >= p.len() * out.len(),
            "mix_f16: too few value rows"
        );
        assert!(
            acc.len() >= lanes.count() * out.len(),
            "mix_f16: scratch too small"
        );
        // SAFETY: supported by this CPU; sizes checked above.
        unsafe { (self.attn_mix)(lanes, out, p, v, pos0, acc) }
    }

    /// [`Kernels::vec_dot`] as computed for the batch columns that llama.cpp sends through its
    /// GEMM or tiled kernels ([`gemm_cols`]; a different float order for Q4_K and Q6_K, the
    /// same for other types).
    pub fn vec_dot_batch(&self, ty: GgmlType, n: usize, w: &[u8], a: &[u8]) -> f32 {
        let f = self.vec_dot_gemm_fn(ty);
        check_lens(ty, n, w.len(), a.len(), 1);
        // SAFETY: the table only holds functions this CPU supports; lengths checked above.
        unsafe { f(n, w, a) }
    }

    /// Whether `ty` has batch arithmetic of its own (tiles then follow it, see `gemm_cols`).
    #[inline]
    pub(crate) fn has_gemm(&self, ty: GgmlType) -> bool {
        self.vec_dot_gemm[ty as usize].is_some()
    }

    /// The dot product for rows of a 4+ batch that llama.cpp's GEMM computes (see `vec_dot_gemm`).
    #[inline]
    pub(crate) fn vec_dot_gemm_fn(&self, ty: GgmlType) -> VecDotFn {
        self.vec_dot_gemm[ty as usize].unwrap_or_else(|| self.vec_dot_fn(ty))
    }

    /// The tile kernel for `ty`, if this table has one. Calling it is sound on this CPU given
    /// the length requirements in `arch::x86_64::legacy_tile`.
    #[inline]
    pub(crate) fn tile_fn(&self, ty: GgmlType) -> Option<TileFn> {
        self.tile[ty as usize]
    }

    /// [`TILE_R`] x [`TILE_C`] dot products at once (`out[c * TILE_R + r]` = row `r` of `w` ·
    /// column `c` of `a`, rows `wrb` and columns `arb` bytes apart), bit-identical to the dot
    /// product a batch of 4+ uses (as llama.cpp: [`Kernels::vec_dot`], except Q4_K's GEMM
    /// order); computed pair by pair where the type has no tile kernel.
    pub fn vec_dot_tile(
        &self,
        ty: GgmlType,
        n: usize,
        w: &[u8],
        wrb: usize,
        a: &[u8],
        arb: usize,
        out: &mut [f32; TILE_R * TILE_C],
    ) {
        let rb = ty.row_bytes(n).unwrap_or(usize::MAX);
        let ab = vec_dot_type(ty).row_bytes(n).unwrap_or(usize::MAX);
        assert!(
            wrb >= rb && arb >= ab,
            "vec_dot_tile: strides shorter than a row"
        );
        assert!(
            w.len() >= (TILE_R - 1) * wrb + rb,
            "vec_dot_tile: weights too short"
        );
        assert!(
            a.len() >= (TILE_C - 1) * arb + ab,
            "vec_dot_tile: activations too short"
        );
        match self.tile_fn(ty) {
            // SAFETY: supported by this CPU; every row and column checked above.
            Some(f) => unsafe { f(n, w, wrb, a, arb, out) },
            None => {
                let dot = self.vec_dot_gemm_fn(ty);
                for c in 0..TILE_C {
                    for r in 0..TILE_R {
                        // SAFETY: as above; row r and column c are inside `w` and `a`.
                        out[c * TILE_R + r] = unsafe { dot(n, &w[r * wrb..], &a[c * arb..]) };
                    }
                }
            }
        }
    }

    /// The dot-product function for `ty`. Calling it is sound on this CPU given the length
    /// requirements of [`VecDotFn`].
    #[inline]
    pub(crate) fn vec_dot_fn(&self, ty: GgmlType) -> VecDotFn {
        self.vec_dot[ty as usize].unwrap_or_else(|| panic!("no dot product for weight type {ty}"))
    }
}

/// Panics unless `w` holds `rows` rows of `n` elements of `ty` and `a` one row of `n` elements of
/// `vec_dot_type(ty)`.
#[inline]
pub(crate) fn check_lens(ty: GgmlType, n: usize, w_len: usize, a_len: usize, rows: usize) {
    let wb = ty
        .row_bytes(n)
        .unwrap_or_else(|| panic!("vec_dot: n = {n} is not a whole number of {ty} blocks"));
    let ab = vec_dot_type(ty)
        .row_bytes(n)
        .expect("activation blocks divide weight blocks");
    assert!(w_len >= wb * rows, "vec_dot: {ty} weights too short");
    assert!(a_len >= ab, "vec_dot: activations too short");
}

fn scalar_table() -> Kernels {
    use GgmlType::*;
    let mut vd: [Option<VecDotFn>; N_IDS] = [None; N_IDS];
    let mut q: [Option<QuantFn>; N_IDS] = [None; N_IDS];
    vd[F32 as usize] = Some(float::vec_dot_f32 as VecDotFn);
    vd[F16 as usize] = Some(float::vec_dot_f16 as VecDotFn);
    vd[BF16 as usize] = Some(float::vec_dot_bf16 as VecDotFn);
    vd[Q4_0 as usize] = Some(gl::vec_dot_q4_0 as VecDotFn);
    vd[Q4_1 as usize] = Some(gl::vec_dot_q4_1 as VecDotFn);
    vd[Q5_0 as usize] = Some(gl::vec_dot_q5_0 as VecDotFn);
    vd[Q5_1 as usize] = Some(gl::vec_dot_q5_1 as VecDotFn);
    vd[Q8_0 as usize] = Some(gl::vec_dot_q8_0 as VecDotFn);
    crate::generic::kquants_wire(&mut vd, &mut q);
    q[F32 as usize] = Some(float::quantize_row_f32 as QuantFn);
    q[Q8_0 as usize] = Some(gl::quantize_act_q8_0 as QuantFn);
    q[Q8_1 as usize] = Some(gl::quantize_act_q8_1 as QuantFn);
    Kernels {
        isa: "scalar",
        vec_dot: vd,
        vec_dot_gemm: {
            let mut g = [None; N_IDS];
            crate::generic::gemm_wire(&mut g);
            g
        },
        quant: q,
        tile: [None; N_IDS],
        attn_dot: crate::generic::attn::dot_f16 as AttnDotFn,
        attn_dot_rows: crate::generic::attn::dot_f16_rows as AttnDotRowsFn,
        attn_mix: crate::generic::attn::mix_f16 as AttnMixFn,
        softmax: crate::generic::attn::softmax_cells as SoftmaxFn,
        swiglu: crate::generic::act::swiglu as GluFn,
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2_detected() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// The AVX2 table. Only called after `avx2_detected()` returned true.
#[cfg(target_arch = "x86_64")]
fn avx2_table() -> Kernels {
    use crate::arch::x86_64 as x;
    use GgmlType::*;
    let mut k = scalar_table();
    k.isa = "avx2";
    let vd = &mut k.vec_dot;
    vd[F32 as usize] = Some(x::vec_dot_f32 as VecDotFn);
    vd[F16 as usize] = Some(x::vec_dot_f16 as VecDotFn);
    vd[BF16 as usize] = Some(x::vec_dot_bf16 as VecDotFn);
    vd[Q4_0 as usize] = Some(x::legacy::vec_dot_q4_0 as VecDotFn);
    vd[Q4_1 as usize] = Some(x::legacy::vec_dot_q4_1 as VecDotFn);
    vd[Q5_0 as usize] = Some(x::legacy::vec_dot_q5_0 as VecDotFn);
    vd[Q5_1 as usize] = Some(x::legacy::vec_dot_q5_1 as VecDotFn);
    vd[Q8_0 as usize] = Some(x::legacy::vec_dot_q8_0 as VecDotFn);
    x::kquants_wire(vd);
    x::gemm_wire(&mut k.vec_dot_gemm);
    x::tile_wire(&mut k.tile);
    k.attn_dot = x::attn::dot_f16 as AttnDotFn;
    k.attn_dot_rows = x::attn::dot_f16_rows as AttnDotRowsFn;
    k.attn_mix = x::attn::mix_f16 as AttnMixFn;
    k.softmax = x::attn::softmax_cells as SoftmaxFn;
    k.swiglu = x::act::swiglu as GluFn;
    let q = &mut k.quant;
    q[Q8_0 as usize] = Some(x::legacy::quantize_row_q8_0 as QuantFn);
    q[Q8_1 as usize] = Some(x::legacy::quantize_row_q8_1 as QuantFn);
    k
}

/// The best kernels for this CPU, detected once.
pub fn kernels() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if avx2_detected() {
                return avx2_table();
            }
        }
        scalar_table()
    })
}

/// The scalar reference kernels (any CPU).
pub fn scalar_kernels() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(scalar_table)
}
