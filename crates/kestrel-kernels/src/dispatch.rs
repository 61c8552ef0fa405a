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
pub(crate) type AttnDotRowsFn = unsafe fn(Lanes, usize, &[half::f16], &[half::f16], &mut [f32]);
/// `(lanes, dv, p, v, pos0, acc)`: value rows weighted into lane sums (`generic::attn::mix_f16_add`).
pub(crate) type AttnMixAddFn = unsafe fn(Lanes, usize, &[f32], &[half::f16], usize, &mut [f32]);
/// `(lanes, dv, acc, out)`: lane sums folded into outputs (`generic::attn::fold_lanes`).
pub(crate) type AttnFoldFn = unsafe fn(Lanes, usize, &[f32], &mut [f32]);
/// `(n, w, row stride, a, column stride, out)`: the dot products of `TILE_R` weight rows with
/// `TILE_C` activation columns, `out[c * TILE_R + r]`, each bit-identical to `vec_dot`.
pub(crate) type TileFn = unsafe fn(usize, &[u8], usize, &[u8], usize, &mut [f32; TILE_R * TILE_C]);
/// `(n, w, row stride, a)`: four weight rows times one activation column, each output
/// bit-identical to `vec_dot` (decode of short rows on tables without a panel for the type).
pub(crate) type VecDot4Fn = unsafe fn(usize, &[u8], usize, &[u8]) -> [f32; 4];
/// `(n, w, row stride, rows, a, column stride, cols, y, y stride, prompt columns)`: every
/// weight row times every activation column, `y[c * ys + r]`, each bit-identical to `vec_dot`,
/// except the first `prompt columns` ([`prompt_cols`]), which take the type's prompt
/// arithmetic; see `arch::x86_64::kq_panel` for the length contract.
pub(crate) type PanelFn =
    unsafe fn(usize, &[u8], usize, usize, &[u8], usize, usize, *mut f32, usize, usize);

/// `(n, w, rows, r0, r1, a, column stride, cols, y, y stride, prompt columns)`: rows `r0..r1`
/// of an interleaved matrix (`generic::repack`) times every activation column, as
/// [`PanelFn`] computes them from the row-major layout; see `arch::x86_64::kq_x8`.
pub(crate) type PanelX8Fn =
    unsafe fn(usize, &[u8], usize, usize, usize, &[u8], usize, usize, *mut f32, usize, usize);

/// How many of a prompt batch's columns take llama.cpp's batch (GEMM) arithmetic rather than
/// the decode (GEMV) one ([`crate::Arith::Prompt`]): for Q4_K all but the last `batch % 4`
/// once there are 4+ (what llama.cpp's repacked Q4_K GEMM covers); none for other types, whose
/// two orders coincide.
pub fn prompt_cols(ty: GgmlType, batch: usize) -> usize {
    match ty {
        GgmlType::Q4_K => prompt_head(batch),
        _ => 0,
    }
}

/// The leading columns of a `batch`-column prompt call that take the batch arithmetic in a
/// type that has two orders (a multiple of 4; [`crate::Arith::PromptHead`] gathers several
/// prompts' heads in front of their tails).
pub fn prompt_head(batch: usize) -> usize {
    if batch > 3 {
        batch - batch % 4
    } else {
        0
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
    /// The dot product of a prompt batch's columns where it differs from `vec_dot` (Q4_K,
    /// see [`crate::Arith`]); only used by tables without a panel for the type.
    vec_dot_prompt: [Option<VecDotFn>; N_IDS],
    quant: [Option<QuantFn>; N_IDS],
    /// Four-row decode dots, where a type has one.
    vec_dot4: [Option<VecDot4Fn>; N_IDS],
    /// Multi-row, multi-column kernels for prompt batches, where a type has one.
    tile: [Option<TileFn>; N_IDS],
    /// Whole-matrix kernels (decode and prompt batches), where a type has one.
    panel: [Option<PanelFn>; N_IDS],
    /// Whole-matrix kernels for the interleaved layout, where a type has one.
    panel_x8: [Option<PanelX8Fn>; N_IDS],
    /// The Q5_0 dot keeps the eight-lane order of the Q8_0 panel (`panel_x8[Q8_0]`), so prompt
    /// batches may expand Q5_0 rows to Q8_0 on the fly and take that panel (same bits).
    q5_0_as_q8_0: bool,
    attn_dot: AttnDotFn,
    attn_dot_rows: AttnDotRowsFn,
    attn_mix_add: AttnMixAddFn,
    attn_fold: AttnFoldFn,
    softmax: SoftmaxFn,
    swiglu: GluFn,
}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernels").field("isa", &self.isa).finish()
    }
}

impl Kernels {
    /// The instruction set the table was built for: "avx512-vnni" (AVX-512 F/BW/VL + VNNI),
    /// "avx-vnni", "avx2" or "scalar".
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

    /// `out[g * n + j] = q_g · rows[j]` ([`Kernels::dot_f16`]) for the `G = q.len() / d`
    /// queries of `d` values in `q` (query heads sharing one KV head) and the first
    /// `n = out.len() / G` rows of `d` values in `rows`.
    #[inline]
    pub fn dot_f16_rows(
        &self,
        lanes: Lanes,
        d: usize,
        q: &[half::f16],
        rows: &[half::f16],
        out: &mut [f32],
    ) {
        assert!(
            d > 0 && !q.is_empty() && q.len() % d == 0 && out.len() % (q.len() / d) == 0,
            "dot_f16_rows: queries and outputs do not tile"
        );
        assert!(
            rows.len() >= out.len() / (q.len() / d) * d,
            "dot_f16_rows: too few rows"
        );
        // SAFETY: supported by this CPU; lengths checked.
        unsafe { (self.attn_dot_rows)(lanes, d, q, rows, out) }
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

    /// `out[g * dv + d] = sum_j p[g * len + j] * v[j][d]` for the `G = out.len() / dv`
    /// queries (`len = p.len() / G` weights each), row `j`'s partial sums in lane
    /// `(pos0 + j) % lanes`; `v` holds at least `len` rows of `dv` values, `acc` at least
    /// `G * lanes * dv` floats of scratch.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn mix_f16(
        &self,
        lanes: Lanes,
        dv: usize,
        out: &mut [f32],
        p: &[f32],
        v: &[half::f16],
        pos0: usize,
        acc: &mut [f32],
    ) {
        assert!(
            dv > 0 && !out.is_empty() && out.len() % dv == 0,
            "mix_f16: outputs do not tile"
        );
        let g = out.len() / dv;
        assert!(
            !p.is_empty() && p.len() % g == 0,
            "mix_f16: weights do not tile"
        );
        assert!(v.len() >= p.len() / g * dv, "mix_f16: too few value rows");
        assert!(
            acc.len() >= g * lanes.count() * dv,
            "mix_f16: scratch too small"
        );
        let acc = &mut acc[..g * lanes.count() * dv];
        acc.fill(0.0);
        // SAFETY: supported by this CPU; sizes checked above.
        unsafe {
            (self.attn_mix_add)(lanes, dv, p, v, pos0, acc);
            (self.attn_fold)(lanes, dv, acc, out);
        }
    }

    /// [`Kernels::mix_f16`]'s lane sums added onto `acc` (`lanes * dv` floats per query,
    /// `acc[(g * lanes + l) * dv + d]`, `G = acc.len() / (lanes * dv)` queries, `len =
    /// p.len() / G` weights each), row `j` of `v` in lane `(pos0 + j) % lanes`: calls over
    /// consecutive runs of KV cells, in order, give one call's sums. [`Kernels::fold_lanes`]
    /// then makes the outputs.
    #[inline]
    pub fn mix_f16_add(
        &self,
        lanes: Lanes,
        dv: usize,
        p: &[f32],
        v: &[half::f16],
        pos0: usize,
        acc: &mut [f32],
    ) {
        let per = lanes.count() * dv;
        assert!(
            dv > 0 && !acc.is_empty() && acc.len() % per == 0,
            "mix_f16_add: lane sums do not tile"
        );
        let g = acc.len() / per;
        assert!(p.len() % g == 0, "mix_f16_add: weights do not tile");
        assert!(
            v.len() >= p.len() / g * dv,
            "mix_f16_add: too few value rows"
        );
        // SAFETY: supported by this CPU; sizes checked above.
        unsafe { (self.attn_mix_add)(lanes, dv, p, v, pos0, acc) }
    }

    /// Each query's lane sums (as [`Kernels::mix_f16_add`] lays them out) folded into its
    /// `dv` outputs, `G = out.len() / dv` queries, in llama.cpp's order for `lanes`.
    #[inline]
    pub fn fold_lanes(&self, lanes: Lanes, dv: usize, acc: &[f32], out: &mut [f32]) {
        assert!(
            dv > 0 && out.len() % dv == 0,
            "fold_lanes: outputs do not tile"
        );
        assert!(
            acc.len() >= out.len() * lanes.count(),
            "fold_lanes: too few lane sums"
        );
        // SAFETY: supported by this CPU; sizes checked above.
        unsafe { (self.attn_fold)(lanes, dv, acc, out) }
    }

    /// The four-row decode dot for `ty`, if this table has one. Calling it is sound on this
    /// CPU given `vec_dot`'s length requirements for each of the four rows.
    #[inline]
    pub(crate) fn vec_dot4_fn(&self, ty: GgmlType) -> Option<VecDot4Fn> {
        self.vec_dot4[ty as usize]
    }

    /// The tile kernel for `ty`, if this table has one. Calling it is sound on this CPU given
    /// the length requirements in `arch::x86_64::legacy_tile`.
    #[inline]
    pub(crate) fn tile_fn(&self, ty: GgmlType) -> Option<TileFn> {
        self.tile[ty as usize]
    }

    /// The whole-matrix kernel for `ty`, if this table has one. Calling it is sound on this CPU
    /// given the length requirements in `arch::x86_64::kq_panel`.
    #[inline]
    pub(crate) fn panel_fn(&self, ty: GgmlType) -> Option<PanelFn> {
        self.panel[ty as usize]
    }

    /// The interleaved-layout kernel for `ty`, if this table has one. Calling it is sound on
    /// this CPU given the length requirements in `arch::x86_64::kq_x8`.
    #[inline]
    pub(crate) fn panel_x8_fn(&self, ty: GgmlType) -> Option<PanelX8Fn> {
        self.panel_x8[ty as usize]
    }

    /// Whether prompt batches of Q5_0 may take the Q8_0 panel over rows expanded to Q8_0 (the
    /// Q5_0 dot's bits; see `generic::repack::q5_0_as_q8_0_x8`).
    #[inline]
    pub(crate) fn q5_0_as_q8_0(&self) -> bool {
        self.q5_0_as_q8_0
    }

    /// [`TILE_R`] x [`TILE_C`] dot products at once (`out[c * TILE_R + r]` = row `r` of `w` ·
    /// column `c` of `a`, rows `wrb` and columns `arb` bytes apart), bit-identical to
    /// [`Kernels::vec_dot`]; computed pair by pair where the type has no tile kernel.
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
                let dot = self.vec_dot_fn(ty);
                for c in 0..TILE_C {
                    for r in 0..TILE_R {
                        // SAFETY: as above; row r and column c are inside `w` and `a`.
                        out[c * TILE_R + r] = unsafe { dot(n, &w[r * wrb..], &a[c * arb..]) };
                    }
                }
            }
        }
    }

    /// The dot product of prompt-batch columns for `ty` (see [`crate::Arith`]). Calling it is
    /// sound on this CPU given the length requirements of [`VecDotFn`].
    #[inline]
    pub(crate) fn vec_dot_prompt_fn(&self, ty: GgmlType) -> VecDotFn {
        self.vec_dot_prompt[ty as usize].unwrap_or_else(|| self.vec_dot_fn(ty))
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
        vec_dot_prompt: {
            let mut p: [Option<VecDotFn>; N_IDS] = [None; N_IDS];
            p[Q4_K as usize] = Some(crate::generic::kquants::vec_dot_q4_k_prompt as VecDotFn);
            p
        },
        quant: q,
        vec_dot4: [None; N_IDS],
        tile: [None; N_IDS],
        panel: [None; N_IDS],
        panel_x8: {
            let mut p: [Option<PanelX8Fn>; N_IDS] = [None; N_IDS];
            p[Q4_K as usize] = Some(crate::generic::repack::panel_q4_k_x8 as PanelX8Fn);
            p[Q6_K as usize] = Some(crate::generic::repack::panel_q6_k_x8 as PanelX8Fn);
            p[Q4_0 as usize] = Some(crate::generic::repack::panel_q4_0_x8 as PanelX8Fn);
            p[Q8_0 as usize] = Some(crate::generic::repack::panel_q8_0_x8 as PanelX8Fn);
            p
        },
        // The scalar Q5_0 dot sums each block exactly (not in lanes).
        q5_0_as_q8_0: false,
        attn_dot: crate::generic::attn::dot_f16 as AttnDotFn,
        attn_dot_rows: crate::generic::attn::dot_f16_rows as AttnDotRowsFn,
        attn_mix_add: crate::generic::attn::mix_f16_add as AttnMixAddFn,
        attn_fold: crate::generic::attn::fold_lanes as AttnFoldFn,
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
    k.vec_dot4[Q5_0 as usize] = Some(x::legacy::vec_dot4_q5_0 as VecDot4Fn);
    vd[Q5_1 as usize] = Some(x::legacy::vec_dot_q5_1 as VecDotFn);
    vd[Q8_0 as usize] = Some(x::legacy::vec_dot_q8_0 as VecDotFn);
    x::kquants_wire(vd);
    x::panel_wire_avx2(vd, &mut k.panel);
    k.panel_x8[Q4_K as usize] = Some(x::kq_x8::avx2::panel_q4_k_x8 as PanelX8Fn);
    k.panel_x8[Q6_K as usize] = Some(x::kq_x8::avx2::panel_q6_k_x8 as PanelX8Fn);
    k.panel_x8[Q4_0 as usize] = Some(x::legacy_x8::avx2::panel_q4_0_x8 as PanelX8Fn);
    k.panel_x8[Q8_0 as usize] = Some(x::legacy_x8::avx2::panel_q8_0_x8 as PanelX8Fn);
    // `legacy::vec_dot_q5_0` and the Q8_0 panels share the eight-lane order.
    k.q5_0_as_q8_0 = true;
    x::tile_wire(&mut k.tile);
    k.attn_dot = x::attn::dot_f16 as AttnDotFn;
    k.attn_dot_rows = x::attn::dot_f16_rows as AttnDotRowsFn;
    k.attn_mix_add = x::attn::mix_f16_add as AttnMixAddFn;
    k.attn_fold = x::attn::fold_lanes_all as AttnFoldFn;
    k.softmax = x::attn::softmax_cells as SoftmaxFn;
    k.swiglu = x::act::swiglu as GluFn;
    let q = &mut k.quant;
    q[Q8_0 as usize] = Some(x::legacy::quantize_row_q8_0 as QuantFn);
    q[Q8_1 as usize] = Some(x::legacy::quantize_row_q8_1 as QuantFn);
    k
}

#[cfg(target_arch = "x86_64")]
fn avx512_vnni_detected() -> bool {
    avx2_detected()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
}

#[cfg(target_arch = "x86_64")]
fn avx_vnni_detected() -> bool {
    avx2_detected() && is_x86_feature_detected!("avxvnni")
}

/// The AVX2 table with AVX-512 VNNI panels. Only after `avx512_vnni_detected()`.
#[cfg(target_arch = "x86_64")]
fn avx512_vnni_table() -> Kernels {
    let mut k = avx2_table();
    k.isa = "avx512-vnni";
    crate::arch::x86_64::panel_wire_avx512(&mut k.vec_dot, &mut k.panel);
    k.panel_x8[GgmlType::Q4_K as usize] =
        Some(crate::arch::x86_64::kq_x16::panel_q4_k_x8 as PanelX8Fn);
    k.panel_x8[GgmlType::Q6_K as usize] =
        Some(crate::arch::x86_64::kq_x16::panel_q6_k_x8 as PanelX8Fn);
    k.panel_x8[GgmlType::Q4_0 as usize] =
        Some(crate::arch::x86_64::legacy_x16::panel_q4_0_x8 as PanelX8Fn);
    k.panel_x8[GgmlType::Q8_0 as usize] =
        Some(crate::arch::x86_64::legacy_x16::panel_q8_0_x8 as PanelX8Fn);
    k
}

/// The AVX2 table with AVX-VNNI panels. Only after `avx_vnni_detected()`.
#[cfg(target_arch = "x86_64")]
fn avx_vnni_table() -> Kernels {
    let mut k = avx2_table();
    k.isa = "avx-vnni";
    crate::arch::x86_64::panel_wire_avxvnni(&mut k.vec_dot, &mut k.panel);
    k.panel_x8[GgmlType::Q4_K as usize] =
        Some(crate::arch::x86_64::kq_x8::avxvnni::panel_q4_k_x8 as PanelX8Fn);
    k.panel_x8[GgmlType::Q6_K as usize] =
        Some(crate::arch::x86_64::kq_x8::avxvnni::panel_q6_k_x8 as PanelX8Fn);
    k.panel_x8[GgmlType::Q4_0 as usize] =
        Some(crate::arch::x86_64::legacy_x8::avxvnni::panel_q4_0_x8 as PanelX8Fn);
    k.panel_x8[GgmlType::Q8_0 as usize] =
        Some(crate::arch::x86_64::legacy_x8::avxvnni::panel_q8_0_x8 as PanelX8Fn);
    k
}

/// Every kernel table, best first, whether or not this CPU can run it.
pub const ISAS: [&str; 4] = ["avx512-vnni", "avx-vnni", "avx2", "scalar"];

/// The table for instruction set `isa` (one of [`ISAS`]), or None where this CPU lacks it.
pub fn kernels_for(isa: &str) -> Option<&'static Kernels> {
    #[cfg(target_arch = "x86_64")]
    {
        static AVX512: OnceLock<Kernels> = OnceLock::new();
        static AVXVNNI: OnceLock<Kernels> = OnceLock::new();
        static AVX2: OnceLock<Kernels> = OnceLock::new();
        match isa {
            "avx512-vnni" if avx512_vnni_detected() => {
                return Some(AVX512.get_or_init(avx512_vnni_table))
            }
            "avx-vnni" if avx_vnni_detected() => return Some(AVXVNNI.get_or_init(avx_vnni_table)),
            "avx2" if avx2_detected() => return Some(AVX2.get_or_init(avx2_table)),
            _ => {}
        }
    }
    (isa == "scalar").then(scalar_kernels)
}

/// The best kernels for this CPU, detected once. `KESTREL_ISA` (one of [`ISAS`]) picks a
/// lower table instead, to measure or test it; a name this CPU cannot run is ignored.
pub fn kernels() -> &'static Kernels {
    static K: OnceLock<&'static Kernels> = OnceLock::new();
    K.get_or_init(|| {
        if let Ok(want) = std::env::var("KESTREL_ISA") {
            if let Some(k) = kernels_for(want.trim()) {
                return k;
            }
        }
        ISAS.iter()
            .find_map(|isa| kernels_for(isa))
            .unwrap_or_else(scalar_kernels)
    })
}

/// The scalar reference kernels (any CPU).
pub fn scalar_kernels() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(scalar_table)
}
