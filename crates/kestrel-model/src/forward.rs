//! One forward pass of a [`Decoder`] over a micro-batch of tokens.

use crate::attend::{self, Attend};
use crate::decoder::{Activation, Decoder, Layer};
use crate::kv::KvCache;
use crate::observer::MatmulObserver;
use crate::session::{Scratch, Session};
use crate::weights::Linear;
use half::f16;
use kestrel_gguf::GgufFile;
use kestrel_kernels::ops::{self, RopeStyle};
use kestrel_kernels::{matmul, matmul_many, Arith, Kernels, Lanes, ThreadPool};

/// A raw pointer that threads of one pool run write through at disjoint offsets.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub(crate) *mut f32);
// SAFETY: only used inside `ThreadPool::run`, where every thread writes a disjoint range.
unsafe impl Sync for SharedMut {}
unsafe impl Send for SharedMut {}

impl SharedMut {
    /// SAFETY: the caller guarantees no other thread touches `off..off+len` meanwhile.
    #[inline]
    pub(crate) unsafe fn slice<'a>(self, off: usize, len: usize) -> &'a mut [f32] {
        std::slice::from_raw_parts_mut(self.0.add(off), len)
    }
}

/// View the first `n` f16 slots of an f32 scratch slice (2 f16 per f32, alignment 4 >= 2).
pub(crate) fn f16_scratch(x: &mut [f32], n: usize) -> &mut [f16] {
    assert!(2 * x.len() >= n);
    // SAFETY: f16 is plain 2-byte data with alignment 2, f32 storage is 4-aligned and holds
    // 2 * len f16 values; the borrow of `x` is carried over.
    unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr() as *mut f16, n) }
}

pub(crate) struct Ctx<'a> {
    pub g: &'a GgufFile,
    pub d: &'a Decoder,
    pub pool: &'a ThreadPool,
    pub k: &'a Kernels,
    /// Sees every matmul input (calibration tools); `None` in normal runs.
    pub obs: Option<&'a dyn MatmulObserver>,
    /// Every row attends in the one-token lane order (speculative verification: each row then
    /// computes what a one-token decode step would; see `verify.rs`).
    pub decode_lanes: bool,
    /// The matmuls' float order (decode steps, or a prompt batch: see `Arith`).
    pub arith: Arith,
}

impl<'a> Ctx<'a> {
    /// A pass of `m` on this process's kernel table with no observer, in the float order
    /// `arith`.
    pub(crate) fn new(m: &'a crate::Model, pool: &'a ThreadPool, arith: Arith) -> Ctx<'a> {
        Ctx {
            g: &m.gguf,
            d: &m.dec,
            pool,
            k: kestrel_kernels::kernels(),
            obs: None,
            decode_lanes: false,
            arith,
        }
    }
}

pub(crate) fn linear(c: &Ctx, l: &Linear, x: &[f32], n: usize, y: &mut [f32], q8: &mut Vec<u8>) {
    let w = l.w.view(c.g);
    if let Some(o) = c.obs {
        o.observe(l.name(), &x[..n * w.cols], n, w.cols);
    }
    if let Some(a) = &l.a {
        crate::lowrank::matmul_pair(c, &w, &a.view(c.g), x, n, y, q8);
    } else {
        matmul(
            c.pool,
            c.k,
            c.arith,
            &w,
            &x[..n * w.cols],
            n,
            &mut y[..n * w.rows],
            q8,
        );
    }
    if let Some(b) = &l.b {
        for row in y[..n * l.rows()].chunks_exact_mut(l.rows()) {
            ops::add_inplace(row, b);
        }
    }
}

/// Several linear layers of the same input (q/k/v, gate/up) in one matmul call, so the input
/// is quantized once and the threads meet once.
pub(crate) fn linear_many<const N: usize>(
    c: &Ctx,
    ls: [(&Linear, &mut [f32]); N],
    x: &[f32],
    n: usize,
    q8: &mut Vec<u8>,
) {
    // Low-rank pairs cannot share the fused call: run each layer alone.
    if ls.iter().any(|(l, _)| l.a.is_some()) {
        for (l, y) in ls {
            linear(c, l, x, n, y, q8);
        }
        return;
    }
    if let Some(o) = c.obs {
        for (l, _) in &ls {
            let cols = l.w.view(c.g).cols;
            o.observe(&l.w.name, &x[..n * cols], n, cols);
        }
    }
    let mut mats = ls.map(|(l, y)| {
        let w = l.w.view(c.g);
        let rows = w.rows;
        (w, &mut y[..n * rows], l.b.as_deref())
    });
    let cols = mats[0].0.cols;
    let mut pairs = mats.each_mut().map(|(w, y, _)| (*w, &mut **y));
    matmul_many(c.pool, c.k, c.arith, &mut pairs, &x[..n * cols], n, q8);
    for (w, y, b) in mats.iter_mut() {
        if let Some(b) = b {
            for row in y.chunks_exact_mut(w.rows) {
                ops::add_inplace(row, b);
            }
        }
    }
}

/// Below this many rows, per-row work runs on the calling thread (a pool wake-up costs more).
const PAR_ROWS_MIN: usize = 8;

/// Calls `f(i, row_i)` for the `n` rows of `width` floats in `x`, spread over the pool's
/// threads in contiguous ranges when there are enough rows. Each call sees only its own row,
/// so the result does not depend on the thread count.
fn for_rows(
    pool: &ThreadPool,
    x: &mut [f32],
    width: usize,
    n: usize,
    f: &(dyn Fn(usize, &mut [f32]) + Sync),
) {
    let x = &mut x[..n * width];
    if n < PAR_ROWS_MIN || pool.n_threads() == 1 {
        for (i, row) in x.chunks_exact_mut(width).enumerate() {
            f(i, row);
        }
        return;
    }
    let p = SharedMut(x.as_mut_ptr());
    pool.run(&|t, nt| {
        for i in n * t / nt..n * (t + 1) / nt {
            // SAFETY: row i lies inside `x` (i < n) and belongs to this thread's range only.
            f(i, unsafe { p.slice(i * width, width) });
        }
    });
}

pub(crate) fn norm_rows(
    pool: &ThreadPool,
    x: &[f32],
    w: &[f32],
    eps: f32,
    n: usize,
    out: &mut [f32],
) {
    let e = w.len();
    for_rows(pool, out, e, n, &|i, row| {
        ops::rms_norm(&x[i * e..(i + 1) * e], w, eps, row)
    });
}

pub(crate) fn norm_rows_inplace(pool: &ThreadPool, x: &mut [f32], w: &[f32], eps: f32, n: usize) {
    for_rows(pool, x, w.len(), n, &|_, row| {
        ops::rms_norm_inplace(row, w, eps)
    });
}

/// Which sequence, position and KV cache each row of a micro-batch belongs to.
pub(crate) enum Rows<'a, 'b> {
    /// Consecutive positions `pos0..` of one sequence (a prompt micro-batch, or one token).
    One { kv: &'a mut KvCache, pos0: usize },
    /// One row per sequence, each at its own position (continuous batching).
    PerSeq {
        seqs: &'a mut [&'b mut Session],
        pos: &'a [usize],
    },
    /// Several sequences' prompts (`Model::forward_prompts`): row i is position `at[i].1` of
    /// sequence `at[i].0`; `segs` says where each prompt's rows are.
    Prompts {
        seqs: &'a mut [&'b mut Session],
        at: &'a [(usize, usize)],
        segs: &'a [Segment],
    },
}

/// Where one prompt of a several-prompt pass sits: its batch-order rows (`head`, gathered in
/// front of the pass) and its decode-order rows (`tail`), positions `pos0..` in that order.
pub(crate) struct Segment {
    pub seq: usize,
    pub pos0: usize,
    pub head: std::ops::Range<usize>,
    pub tail: std::ops::Range<usize>,
}

impl Segment {
    pub(crate) fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    /// The pass's rows of this prompt, in position order.
    pub(crate) fn rows(&self) -> impl Iterator<Item = usize> {
        self.head.clone().chain(self.tail.clone())
    }
}

impl Rows<'_, '_> {
    pub(crate) fn pos(&self, i: usize) -> usize {
        match self {
            Rows::One { pos0, .. } => pos0 + i,
            Rows::PerSeq { pos, .. } => pos[i],
            Rows::Prompts { at, .. } => at[i].1,
        }
    }

    pub(crate) fn kv(&self, i: usize) -> &KvCache {
        match self {
            Rows::One { kv, .. } => kv,
            Rows::PerSeq { seqs, .. } => &seqs[i].kv,
            Rows::Prompts { seqs, at, .. } => &seqs[at[i].0].kv,
        }
    }

    fn kv_mut(&mut self, i: usize) -> &mut KvCache {
        match self {
            Rows::One { kv, .. } => kv,
            Rows::PerSeq { seqs, .. } => &mut seqs[i].kv,
            Rows::Prompts { seqs, at, .. } => &mut seqs[at[i].0].kv,
        }
    }

    /// llama.cpp's lane width for q·k and the value mix: its batched (tinyBLAS) order for a
    /// multi-token pass over one sequence, its single-token order otherwise, so that a row of
    /// a continuous batch computes what that sequence's own one-token step would. (A
    /// several-prompt pass takes each prompt's own: `attend::prompts`.)
    pub(crate) fn lanes(&self, n: usize) -> Lanes {
        match self {
            Rows::One { .. } if n >= 2 => Lanes::L8,
            _ => Lanes::L32,
        }
    }

    /// The largest context among the rows' caches (the score scratch per thread).
    pub(crate) fn max_ctx(&self) -> usize {
        match self {
            Rows::One { kv, .. } => kv.n_ctx,
            Rows::PerSeq { seqs, .. } | Rows::Prompts { seqs, .. } => {
                seqs.iter().map(|s| s.kv.n_ctx).max().unwrap_or(0)
            }
        }
    }
}

/// Embeddings of `tokens`, straight from the quantized table, into `sc.x`.
pub(crate) fn embed_rows(c: &Ctx, sc: &mut Scratch, tokens: &[u32]) {
    let d = c.d;
    let e = d.hp.n_embd;
    let emb = d.tok_embd.view(c.g);
    for (i, &t) in tokens.iter().enumerate() {
        emb.dequantize_row(t as usize, &mut sc.x[i * e..(i + 1) * e]);
        if d.embd_scale != 1.0 {
            ops::scale_inplace(&mut sc.x[i * e..(i + 1) * e], d.embd_scale);
        }
    }
}

/// Rotary tables for the `n` rows' positions, once per distinct base in the model.
pub(crate) fn rope_tables(c: &Ctx, sc: &mut Scratch, rows: &Rows, n: usize) {
    let d = c.d;
    let hp = &d.hp;
    for (base, table) in sc.rope.iter_mut() {
        for i in 0..n {
            ops::rope_cache(
                rows.pos(i) as f32,
                hp.n_rot,
                *base,
                hp.rope_freq_scale,
                d.rope_factors.as_deref(),
                &mut table[i * hp.n_rot..(i + 1) * hp.n_rot],
            );
        }
    }
}

/// Final norm and output head for rows `from..from + n_out` of `sc.x`, into `dst`.
pub(crate) fn output_head(c: &Ctx, sc: &mut Scratch, from: usize, n_out: usize, dst: &mut [f32]) {
    let d = c.d;
    let hp = &d.hp;
    let e = hp.n_embd;
    norm_rows(
        c.pool,
        &sc.x[from * e..],
        &d.output_norm,
        hp.norm_eps,
        n_out,
        &mut sc.h,
    );
    let w = d.output.view(c.g);
    if let Some(o) = c.obs {
        o.observe(&d.output.name, &sc.h[..n_out * e], n_out, e);
    }
    let dst = &mut dst[..n_out * hp.n_vocab];
    matmul(
        c.pool,
        c.k,
        c.arith,
        &w,
        &sc.h[..n_out * e],
        n_out,
        dst,
        &mut sc.q8,
    );
    if let Some(cap) = d.final_softcap {
        for z in dst.iter_mut() {
            *z = cap * (*z / cap).tanh();
        }
    }
}

/// Where a pass over some of the model's layers starts.
#[derive(Clone, Copy)]
pub enum StageInput<'a> {
    /// Token ids: the pass starts with the embedding.
    Tokens(&'a [u32]),
    /// The residual stream entering the first layer of the range, `n_embd` values per token
    /// (what [`StageOutput::Hidden`] gave the stage before).
    Hidden(&'a [f32]),
}

impl StageInput<'_> {
    pub fn len(&self, n_embd: usize) -> usize {
        match self {
            StageInput::Tokens(t) => t.len(),
            StageInput::Hidden(h) => h.len() / n_embd.max(1),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            StageInput::Tokens(t) => t.is_empty(),
            StageInput::Hidden(h) => h.is_empty(),
        }
    }

    /// Rows `a..b`.
    pub(crate) fn rows(&self, a: usize, b: usize, n_embd: usize) -> StageInput<'_> {
        match self {
            StageInput::Tokens(t) => StageInput::Tokens(&t[a..b]),
            StageInput::Hidden(h) => StageInput::Hidden(&h[a * n_embd..b * n_embd]),
        }
    }
}

/// What a pass over some of the model's layers ends with.
pub enum StageOutput<'a> {
    /// The final norm and output head for the tokens at indices `from..` (read them with
    /// `Session::logits`).
    Logits { from: usize },
    /// The residual stream leaving the last layer of the range, appended to the vector.
    Hidden(&'a mut Vec<f32>),
}

/// Run one micro-batch (at positions `s.n_past..`) through `layers`. With logits, those of the
/// rows at batch indices `logit_from..` go to `s.logits` starting at row `logit_row0`.
pub(crate) fn forward_ubatch(
    c: &Ctx,
    s: &mut Session,
    input: StageInput,
    layers: std::ops::Range<usize>,
    out: &mut StageOutput,
    logit_row0: usize,
    logit_from: usize,
) {
    let e = c.d.hp.n_embd;
    let n = input.len(e);
    let sc = &mut s.s;
    let mut rows = Rows::One {
        kv: &mut s.kv,
        pos0: s.n_past,
    };
    match input {
        StageInput::Tokens(tokens) => embed_rows(c, sc, tokens),
        StageInput::Hidden(h) => sc.x[..n * e].copy_from_slice(h),
    }
    rope_tables(c, sc, &rows, n);
    for il in layers {
        let layer = &c.d.layers[il];
        attention_block(c, sc, &mut rows, il, layer, n);
        ffn_block(c, sc, layer, n);
    }
    match out {
        StageOutput::Hidden(dst) => dst.extend_from_slice(&sc.x[..n * e]),
        StageOutput::Logits { .. } => {
            // Output head for the requested rows only.
            let n_out = n - logit_from;
            if n_out > 0 {
                let v = c.d.hp.n_vocab;
                output_head(c, sc, logit_from, n_out, &mut s.logits[logit_row0 * v..]);
            }
        }
    }
    s.n_past += n;
}

/// Attention for `n` rows: shared q/k/v/o projections, each row's k and v stored in its own
/// cache at its own position, and scaled dot-product attention per (row, head).
pub(crate) fn attention_block(
    c: &Ctx,
    sc: &mut Scratch,
    rows: &mut Rows,
    il: usize,
    layer: &Layer,
    n: usize,
) {
    let d = c.d;
    let hp = &d.hp;
    let e = hp.n_embd;
    let (hd, hdv) = (hp.head_dim, hp.head_dim_v);

    norm_rows(c.pool, &sc.x, &layer.attn_norm, hp.norm_eps, n, &mut sc.h);
    linear_many(
        c,
        [
            (&layer.wq, &mut sc.q),
            (&layer.wk, &mut sc.k),
            (&layer.wv, &mut sc.v),
        ],
        &sc.h,
        n,
        &mut sc.q8,
    );

    if let Some(w) = &layer.q_norm {
        norm_rows_inplace(c.pool, &mut sc.q, w, hp.norm_eps, n * hp.n_head);
    }
    if let Some(w) = &layer.k_norm {
        norm_rows_inplace(c.pool, &mut sc.k, w, hp.norm_eps, n * hp.n_head_kv);
    }

    let table = &sc
        .rope
        .iter()
        .find(|(b, _)| *b == layer.rope_base)
        .expect("rope table for every layer base")
        .1;
    let style: RopeStyle = d.rope_style;
    for i in 0..n {
        let cs = &table[i * hp.n_rot..(i + 1) * hp.n_rot];
        for h in 0..hp.n_head {
            let o = (i * hp.n_head + h) * hd;
            ops::rope_apply(&mut sc.q[o..o + hd], cs, hp.n_rot, style);
        }
        for h in 0..hp.n_head_kv {
            let o = (i * hp.n_head_kv + h) * hd;
            ops::rope_apply(&mut sc.k[o..o + hd], cs, hp.n_rot, style);
        }
        let p = rows.pos(i);
        rows.kv_mut(i).store(
            il,
            p,
            &sc.k[i * hp.n_embd_k()..(i + 1) * hp.n_embd_k()],
            &sc.v[i * hp.n_embd_v()..(i + 1) * hp.n_embd_v()],
        );
    }

    // Scaled dot-product attention over each row's cache (see `attend`).
    let lanes = if c.decode_lanes {
        Lanes::L32
    } else {
        rows.lanes(n)
    };
    let (q_scale, s_scale) = if d.scale_q {
        (d.attn_scale, 1.0)
    } else {
        (1.0, d.attn_scale)
    };
    let q = std::mem::take(&mut sc.q);
    let a = Attend {
        k: c.k,
        il,
        n_head: hp.n_head,
        group: hp.n_head / hp.n_head_kv,
        hd,
        hdv,
        lanes,
        q: &q,
        q_scale,
        s_scale,
        window: layer.window,
    };
    if let Rows::Prompts { seqs, segs, .. } = rows {
        let bufs = (&mut sc.seg_q, &mut sc.seg_out);
        attend::prompts(c.pool, &mut sc.attn, &mut sc.att, bufs, seqs, segs, &a);
    } else {
        let how = if attend::use_blocked(rows, n) {
            attend::blocked
        } else {
            attend::per_row
        };
        how(c.pool, &mut sc.attn, &mut sc.att, rows, &a, n);
    }
    sc.q = q;

    linear(c, &layer.wo, &sc.att, n, &mut sc.o, &mut sc.q8);
    if let Some(w) = &layer.post_attn_norm {
        norm_rows_inplace(c.pool, &mut sc.o, w, hp.norm_eps, n);
    }
    ops::add_inplace(&mut sc.x[..n * e], &sc.o[..n * e]);
}

pub(crate) fn ffn_block(c: &Ctx, sc: &mut Scratch, layer: &Layer, n: usize) {
    let hp = &c.d.hp;
    let e = hp.n_embd;
    let f = layer.gate.rows();
    norm_rows(c.pool, &sc.x, &layer.ffn_norm, hp.norm_eps, n, &mut sc.h);
    linear_many(
        c,
        [(&layer.gate, &mut sc.gate), (&layer.up, &mut sc.up)],
        &sc.h,
        n,
        &mut sc.q8,
    );
    // Per row: llama.cpp's vector chunks (SiLU) restart at each token.
    let up = &sc.up;
    let act = c.d.activation;
    let k = c.k;
    for_rows(c.pool, &mut sc.gate, f, n, &|i, g| {
        let u = &up[i * f..(i + 1) * f];
        match act {
            Activation::SwiGlu => k.swiglu(g, u),
            Activation::GeGlu => ops::geglu_inplace(g, u),
        }
    });
    linear(c, &layer.down, &sc.gate, n, &mut sc.o, &mut sc.q8);
    if let Some(w) = &layer.post_ffn_norm {
        norm_rows_inplace(c.pool, &mut sc.o, w, hp.norm_eps, n);
    }
    ops::add_inplace(&mut sc.x[..n * e], &sc.o[..n * e]);
}
